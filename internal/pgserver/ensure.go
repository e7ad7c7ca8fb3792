package pgserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EnsureDatabase connects to the server named by url, through its "postgres"
// maintenance database (template1 if that is missing), and creates url's
// database if it does not exist. Concurrent calls for the same name all
// succeed. It works on any server, so flywheel also uses it for DATABASE_URL.
// Errors never contain the url, which may hold a password.
func EnsureDatabase(ctx context.Context, url string) error {
	if err := ensureDatabase(ctx, url); err != nil {
		return fmt.Errorf("pgserver: ensure database: %w", err)
	}
	return nil
}

func ensureDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return errors.New("cannot parse database URL") // pgx's message may quote the url
	}
	name := cfg.Database
	if name == "" {
		return errors.New("database URL names no database")
	}
	conn, err := connectMaintenance(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !isDuplicateDatabase(err) {
		return fmt.Errorf("create %q: %w", name, err)
	}
	return nil
}

// connectMaintenance connects to the same server as cfg, to "postgres" or,
// where that database does not exist, template1.
func connectMaintenance(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	var err error
	for _, db := range []string{"postgres", "template1"} {
		c := cfg.Copy()
		c.Database = db
		var conn *pgx.Conn
		conn, err = pgx.ConnectConfig(ctx, c)
		if err == nil {
			return conn, nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
			break
		}
	}
	return nil, fmt.Errorf("connect: %w", err)
}

// isDuplicateDatabase reports whether CREATE DATABASE lost a race: 42P04
// duplicate_database, or 23505 on pg_database's name index when both
// creators got past the existence check.
func isDuplicateDatabase(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "42P04" || (pgErr.Code == "23505" && pgErr.ConstraintName == "pg_database_datname_index")
}
