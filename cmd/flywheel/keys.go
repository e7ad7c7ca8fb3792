package main

import (
	"context"
	"fmt"
	"io"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/store"
)

// runKeys creates API keys: `keys create --scope admin|sdk [--name N]`. The
// key is printed alone on the last line of stdout; only its hash is stored.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usageError{"usage: flywheel keys create --scope admin|sdk [--name NAME]"}
	}
	fs := newFlagSet("keys create", stderr)
	scope := fs.String("scope", "", "admin (everything) or sdk (config, assign, events)")
	name := fs.String("name", "", "a name for the key, shown in audit logs (default: <scope>-key)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if !flywheel.Scope(*scope).Valid() {
		return usageError{"--scope must be admin or sdk"}
	}
	if *name == "" {
		*name = *scope + "-key"
	}
	cfg := loadConfig(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.logger(stderr)
	url, stop, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	db, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	secret, err := flywheel.NewKeySecret(flywheel.Scope(*scope))
	if err != nil {
		return err
	}
	k, err := db.CreateKey(ctx, *name, flywheel.Scope(*scope), secret)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s key %q (id %d); it is shown only once:\n%s\n", k.Scope, k.Name, k.ID, secret)
	return nil
}
