package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/flywheel-oss/flywheel/internal/pgserver"
	"github.com/flywheel-oss/flywheel/migrations"
)

// embeddedDatabase is the database name flywheel uses in its private cluster.
const embeddedDatabase = "flywheel"

// openDatabase returns the URL of flywheel's database, migrated, and a
// function that releases what it started. With DATABASE_URL it creates the
// database if missing; without, it starts (or joins) the embedded cluster.
func openDatabase(ctx context.Context, cfg config, log *slog.Logger) (string, func(), error) {
	url, stop, err := locateDatabase(ctx, cfg, log)
	if err != nil {
		return "", nil, err
	}
	if err := migrations.Up(ctx, url); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

func locateDatabase(ctx context.Context, cfg config, log *slog.Logger) (string, func(), error) {
	if cfg.DatabaseURL != "" {
		if err := pgserver.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return "", nil, err
		}
		return cfg.DatabaseURL, func() {}, nil
	}
	dir := cfg.DataDir
	if dir == "" {
		var err error
		if dir, err = pgserver.DefaultDir(); err != nil {
			return "", nil, err
		}
	}
	cluster, err := pgserver.Start(ctx, pgserver.Options{Dir: dir, Logger: log})
	if errors.Is(err, pgserver.ErrDirInUse) {
		// Another flywheel (say, serve) runs the cluster: use it.
		cluster, err = pgserver.Attach(dir)
	}
	if err != nil {
		return "", nil, fmt.Errorf("embedded database in %s: %w (set DATABASE_URL to use another server)", dir, err)
	}
	url := cluster.URL(embeddedDatabase)
	stop := func() {
		if err := cluster.Stop(); err != nil {
			log.Error("stop embedded database", "err", err)
		}
	}
	if err := pgserver.EnsureDatabase(ctx, url); err != nil {
		stop()
		return "", nil, err
	}
	attrs := []any{"data_dir", cluster.Dir(), "url", url}
	if on, ok := cluster.HugePages(); ok {
		attrs = append(attrs, "huge_pages", on)
	}
	log.Info("embedded database", attrs...)
	return url, stop, nil
}
