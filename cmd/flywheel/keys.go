package main

import (
	"context"
	"fmt"
	"io"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/store"
)

const keysUsage = `usage: flywheel keys create --scope admin|sdk|viewer [--name NAME]
       flywheel keys list
       flywheel keys revoke PREFIX|KEY`

// runKeys manages API keys. create prints the new key alone on the last
// line of stdout (only its hash is stored); list shows live keys by prefix;
// revoke ends a key, which then stops working within the servers' one-minute
// key cache.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{keysUsage}
	}
	switch args[0] {
	case "create":
		return keysCreate(ctx, args[1:], getenv, stdout, stderr)
	case "list":
		if len(args) != 1 {
			return usageError{keysUsage}
		}
		return withKeyStore(ctx, loadConfig(getenv), stderr, func(db *store.DB) error {
			keys, err := db.ListKeys(ctx)
			if err != nil {
				return err
			}
			for _, k := range keys {
				fmt.Fprintf(stdout, "%-14s %-6s %-24s %s\n", k.Prefix, k.Scope, k.Name, k.CreatedAt.Format("2006-01-02 15:04:05Z"))
			}
			return nil
		})
	case "revoke":
		if len(args) != 2 || args[1] == "" {
			return usageError{keysUsage}
		}
		return withKeyStore(ctx, loadConfig(getenv), stderr, func(db *store.DB) error {
			k, err := db.RevokeKey(ctx, args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked %s key %q (%s); servers stop accepting it within a minute\n", k.Scope, k.Name, k.Prefix)
			return nil
		})
	}
	return usageError{keysUsage}
}

func keysCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys create", stderr)
	scope := fs.String("scope", "", "admin (everything), sdk (config, assign, events) or viewer (read experiments, metrics, results, history)")
	name := fs.String("name", "", "a name for the key, shown in audit logs (default: <scope>-key)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if !flywheel.Scope(*scope).Valid() {
		return usageError{"--scope must be admin, sdk or viewer"}
	}
	if *name == "" {
		*name = *scope + "-key"
	}
	return withKeyStore(ctx, loadConfig(getenv), stderr, func(db *store.DB) error {
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
	})
}

// withKeyStore opens flywheel's database (migrated) for fn.
func withKeyStore(ctx context.Context, cfg config, stderr io.Writer, fn func(*store.DB) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	url, stop, err := openDatabase(ctx, cfg, cfg.logger(stderr))
	if err != nil {
		return err
	}
	defer stop()
	db, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}
