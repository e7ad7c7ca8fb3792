package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/demo"
)

const demoUsage = `usage: flywheel demo [--addr 127.0.0.1:8080] [--only SCENARIO,...]
       flywheel demo --url URL --key ADMIN_KEY [--only SCENARIO,...]`

// runDemo seeds the demo experiments (internal/demo) through the public
// API. With --url it seeds that running server and returns. Without, it
// starts a server exactly as serve does (the embedded default when
// DATABASE_URL is unset), seeds it, prints its URL and an admin key, and
// keeps serving until ctx ends. ready, when not nil, receives the base URL
// and the key once the demo is seeded (tests).
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(base, key string)) error {
	cfg := loadConfig(getenv)
	// The demo's own progress goes to stdout; the server logs only what
	// needs attention unless asked otherwise.
	if getenv("FLYWHEEL_LOG_LEVEL") == "" {
		cfg.LogLevel = "warn"
	}
	if getenv("FLYWHEEL_LOG_FORMAT") == "" {
		cfg.LogFormat = "text"
	}
	fs := newFlagSet("demo", stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address of the server the demo starts (env FLYWHEEL_ADDR)")
	url := fs.String("url", "", "seed the flywheel server running at this URL instead of starting one")
	key := fs.String("key", "", "an admin API key of the server at --url")
	only := fs.String("only", "", "seed only these scenarios, comma-separated: "+strings.Join(demo.ScenarioNames(), ", "))
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error() + "\n" + demoUsage}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q\n%s", fs.Arg(0), demoUsage)}
	}
	addrSet := false
	fs.Visit(func(f *flag.Flag) { addrSet = addrSet || f.Name == "addr" })
	opts := demo.Options{URL: *url, Key: *key, Out: stdout}
	if *only != "" {
		opts.Only = strings.Split(*only, ",")
	}
	switch {
	case *url != "" && addrSet:
		return usageError{"--addr starts a server and --url seeds a running one: give one of them\n" + demoUsage}
	case *url != "" && *key == "":
		return usageError{"--url needs --key ADMIN_KEY, an admin key of that server (flywheel keys create --scope admin prints one)\n" + demoUsage}
	case *url == "" && *key != "":
		return usageError{"--key goes with --url; without --url the demo starts its own server and makes its own key\n" + demoUsage}
	case *url != "":
		_, err := demo.Run(ctx, opts)
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	err := serveApp(ctx, cfg, cfg.logger(stderr), func(ctx context.Context, addr string, fw *app.App) error {
		secret, named := cfg.InitAdminKey, "FLYWHEEL_INIT_ADMIN_KEY"
		if secret == "" {
			var err error
			if secret, err = flywheel.NewKeySecret(flywheel.ScopeAdmin); err != nil {
				return err
			}
			if err := fw.DB.EnsureKey(ctx, "demo", flywheel.ScopeAdmin, secret); err != nil {
				return fmt.Errorf("create the demo's admin key: %w", err)
			}
			named = ""
		}
		base := "http://" + dialable(addr)
		fmt.Fprintf(stdout, "flywheel is serving at %s\n", base)
		opts.URL, opts.Key = base, secret
		rep, err := demo.Run(ctx, opts)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(stdout, "\nThe demo is ready at %s/: sign in there with the admin key, or use the API.\n", base)
		if named != "" {
			fmt.Fprintf(stdout, "Admin key: the one in %[1]s:\nKEY=$%[1]s\n", named)
		} else {
			fmt.Fprintf(stdout, "Admin key (shown once; flywheel keys revoke ends it):\nKEY=%s\n", secret)
		}
		if len(rep.Experiments) > 0 {
			fmt.Fprintf(stdout, "  curl -s -H \"Authorization: Bearer $KEY\" %s/v1/experiments/%s/results\n", base, rep.Experiments[0])
		}
		fmt.Fprintln(stdout, "flywheel keeps serving until interrupted (Ctrl-C).")
		if ready != nil {
			ready(base, secret)
		}
		return nil
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: is flywheel already serving there? Seed it with flywheel demo --url http://%s --key ADMIN_KEY, or start the demo elsewhere with --addr", err, cfg.Addr)
	}
	return err
}

// dialable turns a listen address into one to connect to: an unspecified
// host (0.0.0.0, ::, or none) becomes the loopback address.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
