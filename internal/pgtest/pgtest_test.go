package pgtest_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(tb testing.TB, dbURL string) *pgx.Conn {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(ctx) })
	return conn
}

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

		conn := connect(t, u)
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
	if _, err := connect(t, a).Exec(ctx, "CREATE TABLE pgtest_marker (id int)"); err != nil {
		t.Fatal(err)
	}
	checkFresh(t, connect(t, b))
	checkFresh(t, connect(t, shared))
	checkFresh(t, connect(t, pgtest.NewDatabase(t)))
}

func TestNewDatabaseDroppedAtCleanup(t *testing.T) {
	ctx := context.Background()
	var name string
	t.Run("uses", func(t *testing.T) {
		u := pgtest.NewDatabase(t)
		name = dbName(t, u)
		connect(t, u) // left open: the drop must end it
	})
	var exists bool
	err := connect(t, pgtest.URL(t)).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
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
			conn := connect(t, pgtest.NewDatabase(t))
			checkFresh(t, conn)
			if _, err := conn.Exec(context.Background(), "CREATE TABLE pgtest_marker (id int)"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
