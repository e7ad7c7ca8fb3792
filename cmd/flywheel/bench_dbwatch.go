package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// dbFigures are what the database did during a scenario: the WAL it
// wrote, and the checkpoints that ran. After a checkpoint starts, the
// first change to each page writes the page's whole image to the WAL,
// which slows every writer, the aggregator most, for a while: a rise of
// the lag then is that, not a trend.
type dbFigures struct {
	WALBytes int64 `json:"wal_bytes"` // -1: unknown
	// FullPageImages are the page images in the WAL (pg_stat_wal, which
	// backends update about once a second; -1: unknown).
	FullPageImages int64 `json:"wal_full_page_images"`
	// Checkpoints are the seconds from the scenario's start to the start
	// of each checkpoint that started during it, seen within a second or
	// two (the checkpointer's counts, which it reports as it writes);
	// RunningAtStart says one was running when the scenario started.
	// CheckpointsKnown is false where the counts could not be read.
	Checkpoints      []float64 `json:"checkpoints_started_seconds"`
	RunningAtStart   bool      `json:"checkpoint_running_at_start"`
	CheckpointsKnown bool      `json:"checkpoints_known"`
}

// String is the report's line: "WAL 4.12 GB, 812345 full-page images;
// a checkpoint running at the start; checkpoints started 152 s in".
func (d dbFigures) String() string {
	var b strings.Builder
	if d.WALBytes >= 0 {
		fmt.Fprintf(&b, "WAL %.2f GB", float64(d.WALBytes)/1e9)
	} else {
		b.WriteString("WAL unknown")
	}
	if d.FullPageImages >= 0 {
		fmt.Fprintf(&b, ", %d full-page images", d.FullPageImages)
	}
	if !d.CheckpointsKnown {
		b.WriteString("; checkpoints unknown")
		return b.String()
	}
	if d.RunningAtStart {
		b.WriteString("; a checkpoint running at the start")
	}
	if len(d.Checkpoints) == 0 {
		b.WriteString("; no checkpoint started")
		return b.String()
	}
	at := make([]string, len(d.Checkpoints))
	for i, s := range d.Checkpoints {
		at[i] = fmt.Sprintf("%.0f s", s)
	}
	fmt.Fprintf(&b, "; checkpoints started %s in", strings.Join(at, ", "))
	return b.String()
}

// dbWatch follows the database during a scenario: its WAL position and
// page images at the start, and the checkpoints that start meanwhile (the
// checkpointer's counts, read every dbWatchEvery).
type dbWatch struct {
	start    time.Time
	wal, fpi int64
	running  bool
	known    bool
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	sql      string      // checkpointsSQL
	count    int64       // checkpoints started, as last read
	started  []time.Time // when each new one was first seen
	pool     *pgxpool.Pool
}

// dbWatchEvery is how often a watch reads the checkpointer's counts.
const dbWatchEvery = time.Second

func watchDB(ctx context.Context, pool *pgxpool.Pool) *dbWatch {
	w := &dbWatch{start: time.Now(), pool: pool, stop: make(chan struct{}), done: make(chan struct{})}
	w.wal, w.fpi = walLSN(ctx, pool), walFPI(ctx, pool)
	w.sql = checkpointsSQL(ctx, pool)
	w.count, w.known = checkpoints(ctx, pool, w.sql)
	w.running = checkpointRunning(ctx, pool)
	go func() {
		defer close(w.done)
		if !w.known {
			return
		}
		t := time.NewTicker(dbWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				w.check(ctx)
			}
		}
	}()
	return w
}

// check records the checkpoints started since the last reading.
func (w *dbWatch) check(ctx context.Context) {
	n, ok := checkpoints(ctx, w.pool, w.sql)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for ; ok && w.count < n; w.count++ {
		w.started = append(w.started, now)
	}
}

// end stops the watch and returns its figures.
func (w *dbWatch) end(ctx context.Context) dbFigures {
	close(w.stop)
	<-w.done
	d := dbFigures{WALBytes: -1, FullPageImages: -1, CheckpointsKnown: w.known, RunningAtStart: w.running, Checkpoints: []float64{}}
	if w.known {
		w.check(ctx)
	}
	if wal := walLSN(ctx, w.pool); wal >= 0 && w.wal >= 0 {
		d.WALBytes = wal - w.wal
	}
	if fpi := walFPI(ctx, w.pool); fpi >= 0 && w.fpi >= 0 {
		d.FullPageImages = fpi - w.fpi
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.started {
		d.Checkpoints = append(d.Checkpoints, at.Sub(w.start).Seconds())
	}
	return d
}

// walFPI is the page images the server's WAL holds since its statistics
// were reset, or -1.
func walFPI(ctx context.Context, pool *pgxpool.Pool) int64 {
	return queryInt64(ctx, pool, `SELECT wal_fpi FROM pg_stat_wal`)
}

// checkpointsSQL is the query of the number of checkpoints the server has
// started (timed and requested): pg_stat_checkpointer from PostgreSQL 17,
// pg_stat_bgwriter before. The checkpointer counts one as it starts
// writing.
func checkpointsSQL(ctx context.Context, pool *pgxpool.Pool) string {
	var v int
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&v); err == nil && v >= 170000 {
		return `SELECT num_timed + num_requested FROM pg_stat_checkpointer`
	}
	return `SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter`
}

// checkpoints runs checkpointsSQL, and says whether it could.
func checkpoints(ctx context.Context, pool *pgxpool.Pool, sql string) (int64, bool) {
	n := queryInt64(ctx, pool, sql)
	return n, n >= 0
}

// checkpointRunning says whether the checkpointer is at work (anything but
// waiting in its main loop).
func checkpointRunning(ctx context.Context, pool *pgxpool.Pool) bool {
	var wait *string
	err := pool.QueryRow(ctx, `SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'checkpointer'`).Scan(&wait)
	return err == nil && wait != nil && *wait != "CheckpointerMain"
}
