// Package pgtest is the real-PostgreSQL test harness. A test package calls
// Main from TestMain, then URL for its shared database or NewDatabase for an
// empty one of its own. Databases are fresh and migrated with the project's
// migrations (NewEmptyDatabase: not migrated). Tests that use it never
// skip: without a server they fail. Fault tests that stop the database
// take a private cluster of their own (NewCluster).
//
// The server is FLYWHEEL_TEST_DATABASE_URL when set (a postgres:// URL of any
// database on the server; it needs CREATEDB and PostgreSQL 13 or later), else
// a private cluster (internal/pgserver, Fast) in a temporary folder, one per
// test binary. Database names are flywheel_test_<package>_<random>; Main drops
// them, so a test binary that dies early may leave some on a shared server.
//
// It is imported only by tests.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/pgserver"
	"github.com/flywheel-oss/flywheel/migrations"
)

const setupTimeout = 2 * time.Minute

// harness is the test binary's server and databases. It is package state
// because it must outlive any one test: URL shares one database across the
// package's tests and Main tears it down after the last.
type harness struct {
	pkgMu  sync.Mutex // serializes URL's first call
	pkgURL string     // URL's database, once created

	mu       sync.Mutex        // guards the rest
	main     bool              // Main is running
	server   *url.URL          // a URL on the server; its database is replaced
	cluster  *pgserver.Cluster // nil when FLYWHEEL_TEST_DATABASE_URL is used
	tmpDir   string            // the private cluster's parent folder
	err      error             // a failed server start, reported to every caller
	template string            // migrated database that URL and NewDatabase clone
	owned    []string          // databases Main drops
}

var h harness

// Main runs the package's tests and then cleans up: it drops the databases
// made for the package and stops a private cluster. Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	h.mu.Lock()
	h.main = true
	h.mu.Unlock()
	code := m.Run()
	if err := h.teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: cleanup: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// URL returns the URL of this test package's database. The first call
// creates it, migrated; later calls, from any test, return the same one.
// Tests sharing it must not assume it is empty.
func URL(tb testing.TB) string {
	tb.Helper()
	h.pkgMu.Lock()
	defer h.pkgMu.Unlock()
	if h.pkgURL == "" {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		name, err := h.clone(ctx)
		if err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
		h.mu.Lock()
		h.owned = append(h.owned, name)
		h.mu.Unlock()
		h.pkgURL = h.databaseURL(name)
	}
	return h.pkgURL
}

// NewDatabase returns the URL of a new, empty, migrated database for the
// calling test alone, dropped (with any open sessions) in tb.Cleanup.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	name, err := h.clone(ctx)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := h.drop(ctx, name); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return h.databaseURL(name)
}

// NewEmptyDatabase returns the URL of a new database for the calling test
// alone, with no migration applied (made from template0: no table, no
// extension), dropped in tb.Cleanup. Tests of the migrations use it.
func NewEmptyDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	h.mu.Lock()
	err := h.startLocked()
	h.mu.Unlock()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	name := h.newName("_empty")
	if err := h.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := h.drop(ctx, name); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return h.databaseURL(name)
}

// clone creates a database from the migrated template: cloning is faster
// than migrating each database.
func (h *harness) clone(ctx context.Context) (string, error) {
	template, err := h.migratedTemplate(ctx)
	if err != nil {
		return "", err
	}
	name := h.newName("")
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	if err := h.exec(ctx, create); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return name, nil
}

// migratedTemplate returns the name of a database holding the migrated schema
// and nothing else, creating it on first use. No session may stay connected
// to it, or cloning fails.
func (h *harness) migratedTemplate(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.startLocked(); err != nil {
		return "", err
	}
	if h.template != "" {
		return h.template, nil
	}
	name := h.newName("_tpl")
	if err := h.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create template database: %w", err)
	}
	h.owned = append(h.owned, name)
	if err := migrations.Up(ctx, h.databaseURL(name)); err != nil {
		return "", err
	}
	h.template = name
	return name, nil
}

// startLocked connects the harness to its server once; a failure is kept and
// returned to every later caller rather than retried.
func (h *harness) startLocked() error {
	if h.server != nil || h.err != nil {
		return h.err
	}
	if !h.main {
		h.err = errors.New("call pgtest.Main from the package's TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }")
		return h.err
	}
	if s := os.Getenv("FLYWHEEL_TEST_DATABASE_URL"); s != "" {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			h.err = errors.New("FLYWHEEL_TEST_DATABASE_URL must be a postgres:// URL")
			return h.err
		}
		h.server = u
		return nil
	}
	h.err = h.startCluster()
	return h.err
}

func (h *harness) startCluster() error {
	dir, err := os.MkdirTemp("", "flywheel-pgtest-")
	if err != nil {
		return err
	}
	// MkdirTemp makes it 0700; as root the server runs as the postgres user,
	// which must traverse it.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := pgserver.Start(ctx, pgserver.Options{
		Dir:       filepath.Join(dir, "pgdata"),
		Fast:      true,
		Settings:  map[string]string{"shared_buffers": "32MB", "max_connections": "100"},
		InitCache: initCache(),
	})
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	h.tmpDir, h.cluster = dir, c
	u, err := url.Parse(c.URL("postgres"))
	if err != nil {
		return err
	}
	h.server = u
	return nil
}

// initCache is where pgserver keeps a pristine initdb result shared by test
// runs, or "" (always run initdb) when there is no user cache folder.
func initCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "flywheel", "pgtest")
}

// teardown drops the package's databases and stops a private cluster.
func (h *harness) teardown() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.server != nil && len(h.owned) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		for _, name := range h.owned {
			errs = append(errs, h.drop(ctx, name))
		}
		cancel()
	}
	if h.cluster != nil {
		errs = append(errs, h.cluster.Stop())
		errs = append(errs, os.RemoveAll(h.tmpDir))
	}
	return errors.Join(errs...)
}

// databaseURL is the server URL with its database replaced by name.
func (h *harness) databaseURL(name string) string {
	u := *h.server
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}

func (h *harness) drop(ctx context.Context, name string) error {
	if err := h.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// exec runs one statement on the server's "postgres" maintenance database.
func (h *harness) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, h.databaseURL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// newName returns flywheel_test_<package>_<random><suffix>. The package part
// comes from the test binary's name (store.test), the random part keeps
// concurrent runs on a shared server apart.
func (h *harness) newName(suffix string) string {
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	var b strings.Builder
	for _, r := range strings.ToLower(pkg) {
		if b.Len() == 20 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("flywheel_test_%s_%08x%s", b.String(), rand.Uint32(), suffix)
}

// Connect opens one connection to url for the test, closed when it ends.
func Connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(ctx) })
	return conn
}
