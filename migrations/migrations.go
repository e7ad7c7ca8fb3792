// Package migrations holds flywheel's SQL schema as goose migrations
// (NNNN_name.sql), embedded in the binary so that `flywheel serve` and
// `flywheel migrate` need no files beside them. It imports only goose and the
// pgx database/sql driver.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// Status is one migration and whether it has been applied.
type Status struct {
	Version int64
	Name    string
	Applied bool
}

func provider(db *sql.DB) (*goose.Provider, error) {
	// The session lock lets several flywheel processes start at once.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

func open(url string) (*sql.DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("migrations: open: %w", err)
	}
	return db, nil
}

// NewerSchemaError reports a database migrated by a newer flywheel: its
// schema version is above every migration this binary holds, so this
// binary's queries may not fit it. Up, List and Pending return it, and
// flywheel refuses to start.
type NewerSchemaError struct {
	Database int64 // the database's schema version
	Known    int64 // the newest migration this binary holds
}

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("database schema is at version %d, newer than this flywheel knows (%d): "+
		"run a newer flywheel, or point DATABASE_URL (FLYWHEEL_DATA_DIR for the embedded database) at another database",
		e.Database, e.Known)
}

// checkNotNewer returns a *NewerSchemaError when the database's schema
// version is above the newest embedded migration. (goose alone would apply
// nothing and report nothing pending.)
func checkNotNewer(ctx context.Context, p *goose.Provider) error {
	current, known, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("migrations: version: %w", err)
	}
	if current > known {
		return &NewerSchemaError{Database: current, Known: known}
	}
	return nil
}

// Up applies every pending migration to the database at url. It is safe to
// call from several processes at once: goose takes a session lock. It
// fails with a *NewerSchemaError, changing nothing, when the database's
// schema is newer than this binary's migrations.
func Up(ctx context.Context, url string) error {
	return withProvider(url, func(p *goose.Provider) error {
		if err := checkNotNewer(ctx, p); err != nil {
			return err
		}
		if _, err := p.Up(ctx); err != nil {
			return fmt.Errorf("migrations: up: %w", err)
		}
		return nil
	})
}

// withProvider runs fn with a goose provider on the database at url.
func withProvider(url string, fn func(*goose.Provider) error) error {
	db, err := open(url)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return err
	}
	return fn(p)
}

// List reports every known migration and whether it is applied, or a
// *NewerSchemaError.
func List(ctx context.Context, url string) ([]Status, error) {
	var out []Status
	err := withProvider(url, func(p *goose.Provider) error {
		if err := checkNotNewer(ctx, p); err != nil {
			return err
		}
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrations: status: %w", err)
		}
		out = make([]Status, 0, len(st))
		for _, s := range st {
			out = append(out, Status{
				Version: s.Source.Version,
				Name:    s.Source.Path,
				Applied: s.State == goose.StateApplied,
			})
		}
		return nil
	})
	return out, err
}

// Pending reports whether any migration is not yet applied.
func Pending(ctx context.Context, url string) (bool, error) {
	st, err := List(ctx, url)
	if err != nil {
		return false, err
	}
	for _, s := range st {
		if !s.Applied {
			return true, nil
		}
	}
	return false, nil
}
