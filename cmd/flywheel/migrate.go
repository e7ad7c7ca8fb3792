package main

import (
	"context"
	"fmt"
	"io"

	"github.com/flywheel-oss/flywheel/migrations"
)

// runMigrate applies pending migrations, or with "status" lists them.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 || (len(args) == 1 && args[0] != "status") {
		return usageError{"usage: flywheel migrate [status]"}
	}
	cfg := loadConfig(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.logger(stderr)
	url, stop, err := locateDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	if len(args) == 0 {
		if err := migrations.Up(ctx, url); err != nil {
			return err
		}
	}
	list, err := migrations.List(ctx, url)
	if err != nil {
		return err
	}
	for _, m := range list {
		state := "pending"
		if m.Applied {
			state = "applied"
		}
		fmt.Fprintf(stdout, "%04d  %-8s  %s\n", m.Version, state, m.Name)
	}
	return nil
}
