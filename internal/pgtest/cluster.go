package pgtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/flywheel-oss/flywheel/internal/pgserver"
)

// Cluster is a private PostgreSQL cluster of one test, which the test may
// stop and start again: a database restart. Unlike the package's shared
// cluster it is durable (fsync and synchronous commit on), and it keeps
// one data folder and one port, so that its URLs and everything committed
// survive Stop and Start. It does not need Main.
type Cluster struct {
	opts pgserver.Options
	url  func(database string) string

	mu sync.Mutex
	c  *pgserver.Cluster // nil while stopped
}

// NewCluster starts a cluster for the calling test, an empty one with only
// PostgreSQL's own databases; tb.Cleanup stops it and removes its folder.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	// MkdirTemp makes it 0700; as root the server runs as the postgres
	// user, which must traverse it.
	dir, err := os.MkdirTemp("", "flywheel-cluster-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	port, err := pgserver.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{opts: pgserver.Options{
		Dir:       filepath.Join(dir, "pgdata"),
		Port:      port,
		Settings:  map[string]string{"shared_buffers": "32MB", "max_connections": "50"},
		InitCache: initCache(),
	}}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// URL returns the URL of database on the cluster, the same whether it runs
// or not.
func (c *Cluster) URL(database string) string { return c.url(database) }

// Stop shuts the server down as `pg_ctl stop -m fast` does: sessions are
// ended, committed data is kept. Stopping a stopped cluster does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	err := c.c.Stop()
	c.c = nil
	return err
}

// Start starts the server again on its folder and port and waits until it
// accepts connections (after crash recovery, if it needs one).
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return errors.New("pgtest: cluster already running")
	}
	pc, err := pgserver.Start(ctx, c.opts)
	if err != nil {
		return err
	}
	c.c = pc
	if c.url == nil {
		c.url = pc.URL // depends on the port alone
	}
	return nil
}
