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
	// of each checkpoint that completed before its end, by the server's
	// clock (pg_control_checkpoint; none where the role may not read it,
	// then CheckpointsKnown is false).
	Checkpoints      []float64 `json:"checkpoints_started_seconds"`
	CheckpointsKnown bool      `json:"checkpoints_known"`
}

// String is the report's line: "WAL 4.12 GB, 812345 full-page images;
// checkpoints started 152 s in".
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
	switch {
	case !d.CheckpointsKnown:
		b.WriteString("; checkpoints unknown (pg_control_checkpoint not readable)")
	case len(d.Checkpoints) == 0:
		b.WriteString("; no checkpoint")
	default:
		at := make([]string, len(d.Checkpoints))
		for i, s := range d.Checkpoints {
			if at[i] = fmt.Sprintf("%.0f s in", s); s < 0 { // running when the scenario started
				at[i] = fmt.Sprintf("%.0f s before", -s)
			}
		}
		fmt.Fprintf(&b, "; checkpoints started %s", strings.Join(at, ", "))
	}
	return b.String()
}

// dbWatch follows the database during a scenario: its WAL position and
// page images at the start, and the checkpoints that complete meanwhile
// (their start times, read every second).
type dbWatch struct {
	start    time.Time
	wal, fpi int64
	known    bool
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	last     time.Time   // the latest checkpoint's start seen
	started  []time.Time // checkpoints that started after start, in order
	pool     *pgxpool.Pool
	interval time.Duration
}

func watchDB(ctx context.Context, pool *pgxpool.Pool) *dbWatch {
	w := &dbWatch{start: time.Now(), pool: pool, stop: make(chan struct{}), done: make(chan struct{}), interval: time.Second}
	w.wal, w.fpi = walLSN(ctx, pool), walFPI(ctx, pool)
	w.last, w.known = lastCheckpoint(ctx, pool)
	go func() {
		defer close(w.done)
		if !w.known {
			return
		}
		t := time.NewTicker(w.interval)
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

// check records the latest checkpoint if it is new.
func (w *dbWatch) check(ctx context.Context) {
	at, ok := lastCheckpoint(ctx, w.pool)
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok && at.After(w.last) {
		w.last = at
		w.started = append(w.started, at)
	}
}

// end stops the watch and returns its figures.
func (w *dbWatch) end(ctx context.Context) dbFigures {
	close(w.stop)
	<-w.done
	d := dbFigures{WALBytes: -1, FullPageImages: -1, CheckpointsKnown: w.known, Checkpoints: []float64{}}
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
	var n int64
	if err := pool.QueryRow(ctx, `SELECT wal_fpi FROM pg_stat_wal`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// lastCheckpoint is the start of the server's latest completed checkpoint,
// and whether the role may read it.
func lastCheckpoint(ctx context.Context, pool *pgxpool.Pool) (time.Time, bool) {
	var at time.Time
	if err := pool.QueryRow(ctx, `SELECT checkpoint_time FROM pg_control_checkpoint()`).Scan(&at); err != nil {
		return time.Time{}, false
	}
	return at, true
}
