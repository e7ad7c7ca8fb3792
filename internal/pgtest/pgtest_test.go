package pgtest_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func dbName(tb testing.TB, dbURL string) string {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// checkFresh checks that the database is migrated (goose has recorded at
// least one version) and holds no table named marker.
func checkFresh(tb testing.TB, conn *pgx.Conn) {
	tb.Helper()
	ctx := context.Background()
	var version int64
	if err := conn.QueryRow(ctx, "SELECT max(version_id) FROM goose_db_version").Scan(&version); err != nil {
		tb.Fatalf("goose version: %v", err)
	}
	if version < 1 {
		tb.Errorf("goose version = %d, want >= 1 (migrated)", version)
	}
	var marked bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('public.pgtest_marker') IS NOT NULL").Scan(&marked); err != nil {
		tb.Fatal(err)
	}
	if marked {
		tb.Error("database already holds pgtest_marker, want fresh")
	}
}

func TestURLAndNewDatabase(t *testing.T) {
	ctx := context.Background()
	shared := pgtest.URL(t)
	if again := pgtest.URL(t); again != shared {
		t.Errorf("URL() = %q, then %q; want the same", shared, again)
	}
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	names := map[string]bool{}
	for _, u := range []string{shared, a, b} {
		name := dbName(t, u)
		if !strings.HasPrefix(name, "flywheel_test_") {
			t.Errorf("database %q, want prefix flywheel_test_", name)
		}
		if names[name] {
			t.Errorf("database %q returned twice", name)
		}
		names[name] = true

		conn := pgtest.Connect(t, u)
		checkFresh(t, conn)
		var current string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&current); err != nil {
			t.Fatal(err)
		}
		if current != name {
			t.Errorf("current_database() = %q, want %q", current, name)
		}
	}

	// Writing to one leaves the others untouched.
	if _, err := pgtest.Connect(t, a).Exec(ctx, "CREATE TABLE pgtest_marker (id int)"); err != nil {
		t.Fatal(err)
	}
	checkFresh(t, pgtest.Connect(t, b))
	checkFresh(t, pgtest.Connect(t, shared))
	checkFresh(t, pgtest.Connect(t, pgtest.NewDatabase(t)))
}

func TestNewDatabaseDroppedAtCleanup(t *testing.T) {
	ctx := context.Background()
	var name string
	t.Run("uses", func(t *testing.T) {
		u := pgtest.NewDatabase(t)
		name = dbName(t, u)
		pgtest.Connect(t, u) // left open: the drop must end it
	})
	var exists bool
	err := pgtest.Connect(t, pgtest.URL(t)).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %q still exists after its test's cleanup", name)
	}
}

func TestNewDatabaseParallel(t *testing.T) {
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			conn := pgtest.Connect(t, pgtest.NewDatabase(t))
			checkFresh(t, conn)
			if _, err := conn.Exec(context.Background(), "CREATE TABLE pgtest_marker (id int)"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNewEmptyDatabase: no migration applied, no extension, dropped at
// cleanup.
func TestNewEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	var name string
	t.Run("uses", func(t *testing.T) {
		u := pgtest.NewEmptyDatabase(t)
		name = dbName(t, u)
		var tables, extensions int
		err := pgtest.Connect(t, u).QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),
			(SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')`).Scan(&tables, &extensions)
		if err != nil {
			t.Fatal(err)
		}
		if tables != 0 || extensions != 0 {
			t.Errorf("%d tables, %d extensions; want an empty database", tables, extensions)
		}
	})
	var exists bool
	if err := pgtest.Connect(t, pgtest.URL(t)).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %q still exists after its test's cleanup", name)
	}
}

// TestClusterRestart: a stopped cluster refuses connections; started
// again, it answers on the same URL with what was committed.
func TestClusterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := pgtest.NewCluster(t)
	url := c.URL("postgres")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a session outlived Stop")
	}
	if c2, err := pgx.Connect(ctx, url); err == nil {
		c2.Close(ctx)
		t.Fatal("connected to a stopped cluster")
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v, want nil", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := c.Start(ctx); err == nil {
		t.Error("Start of a running cluster = nil, want an error")
	}
	if c.URL("postgres") != url {
		t.Errorf("URL after restart = %s, want %s", c.URL("postgres"), url)
	}
	var n int
	if err := pgtest.Connect(t, url).QueryRow(ctx, "SELECT n FROM kept").Scan(&n); err != nil || n != 42 {
		t.Errorf("after restart: %d, %v; want the committed 42", n, err)
	}
}
