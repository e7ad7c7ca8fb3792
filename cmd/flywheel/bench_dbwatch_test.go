package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

// TestWatchDB: a checkpoint that starts during a watch is reported, with
// its start's offset from the watch's, and so is the WAL written meanwhile.
func TestWatchDB(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := watchDB(ctx, pool)
	w.mu.Lock()
	before := w.count
	w.mu.Unlock()
	if _, err := pool.Exec(ctx, `CREATE TABLE w AS SELECT g AS n, repeat('x', 100) AS s FROM generate_series(1, 20000) g; CHECKPOINT`); err != nil {
		t.Fatal(err)
	}
	// The checkpointer reports an immediate checkpoint's count as it ends,
	// which may be just after CHECKPOINT has returned.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n, _ := checkpoints(ctx, pool, w.sql); n > before {
			break
		}
	}
	d := w.end(ctx)
	took := time.Since(w.start).Seconds()
	if !d.CheckpointsKnown || len(d.Checkpoints) == 0 {
		t.Fatalf("figures %+v: want the checkpoint", d)
	}
	// Other tests' checkpoints may come too (the cluster is shared), each
	// within the watch.
	for _, s := range d.Checkpoints {
		if s < 0 || s > took {
			t.Errorf("a checkpoint %.2fs after the watch's start, which lasted %.2fs", s, took)
		}
	}
	if d.WALBytes < 2_000_000 || d.FullPageImages < 0 {
		t.Errorf("WAL %d bytes, %d page images; want the table's 2 MB or more", d.WALBytes, d.FullPageImages)
	}
}

func TestDBFiguresString(t *testing.T) {
	for _, c := range []struct {
		d    dbFigures
		want string
	}{
		{dbFigures{WALBytes: 4_120_000_000, FullPageImages: 812345, CheckpointsKnown: true, Checkpoints: []float64{152.3}},
			"WAL 4.12 GB, 812345 full-page images; checkpoints started 152 s in"},
		{dbFigures{WALBytes: 1e7, FullPageImages: 0, CheckpointsKnown: true, RunningAtStart: true, Checkpoints: []float64{12.4, 140}},
			"WAL 0.01 GB, 0 full-page images; a checkpoint running at the start; checkpoints started 12 s, 140 s in"},
		{dbFigures{WALBytes: 0, FullPageImages: 3, CheckpointsKnown: true, RunningAtStart: true},
			"WAL 0.00 GB, 3 full-page images; a checkpoint running at the start; no checkpoint started"},
		{dbFigures{WALBytes: 0, FullPageImages: 3, CheckpointsKnown: true}, "WAL 0.00 GB, 3 full-page images; no checkpoint started"},
		{dbFigures{WALBytes: -1, FullPageImages: -1}, "WAL unknown; checkpoints unknown"},
	} {
		if got := c.d.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.d, got, c.want)
		}
	}
}
