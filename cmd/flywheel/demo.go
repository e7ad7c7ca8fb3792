package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/demo"
	"github.com/flywheel-oss/flywheel/store"
)

const demoUsage = `usage: flywheel demo [--addr 127.0.0.1:8080] [--only SCENARIO,...]
       flywheel demo --url URL --key ADMIN_KEY [--only SCENARIO,...]`

// runDemo seeds the demo experiments (internal/demo) through the public
// API. With --url it seeds that running server and returns. Without, it
// starts a server exactly as serve does (the embedded default when
// DATABASE_URL is unset), seeds it, prints its URL and an admin key, and
// keeps serving until ctx ends; if flywheel already serves on the address
// (`flywheel serve` in another terminal, on the same database), it seeds
// that server instead and returns. ready, when not nil, receives the base
// URL and the key once the demo is seeded (tests).
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(base, key string)) error {
	start := time.Now()
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
			if err := fw.DB.EnsureKey(ctx, demoKeyName, flywheel.ScopeAdmin, secret); err != nil {
				return fmt.Errorf("create the demo's admin key: %w", err)
			}
			named = ""
		}
		base := "http://" + dialable(addr)
		fmt.Fprintf(stdout, "flywheel is serving at %s (started in %.1f s)\n", base, time.Since(start).Seconds())
		opts.URL, opts.Key = base, secret
		if err := seedAndTell(ctx, opts, named, stdout); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "flywheel keeps serving until interrupted (Ctrl-C).")
		if ready != nil {
			ready(base, secret)
		}
		return nil
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return demoRunningServer(ctx, cfg, opts, err, stdout, stderr, ready)
	}
	return err
}

// demoKeyName names the admin keys the demo creates.
const demoKeyName = "demo"

// demoRunningServer seeds the flywheel already serving on cfg.Addr (say,
// `flywheel serve` in another terminal) when it uses the same database:
// the demo creates an admin key there, as `flywheel keys create` does,
// and seeds the server through its API with it. listenErr is the failure
// to listen, returned when no flywheel answers there.
func demoRunningServer(ctx context.Context, cfg config, opts demo.Options, listenErr error, stdout, stderr io.Writer, ready func(base, key string)) error {
	base := "http://" + dialable(cfg.Addr)
	hint := fmt.Errorf("%w: something else uses that address; start the demo elsewhere with --addr, or seed a flywheel server with --url URL --key ADMIN_KEY", listenErr)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return hint
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return hint
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return hint
	}
	fmt.Fprintf(stdout, "flywheel is already serving at %s: the demo seeds it\n", base)
	secret, named := cfg.InitAdminKey, "FLYWHEEL_INIT_ADMIN_KEY"
	if secret == "" {
		if secret, err = flywheel.NewKeySecret(flywheel.ScopeAdmin); err != nil {
			return err
		}
		err := withKeyStore(ctx, cfg, stderr, func(db *store.DB) error {
			return db.EnsureKey(ctx, demoKeyName, flywheel.ScopeAdmin, secret)
		})
		if err != nil {
			return fmt.Errorf("create the demo's admin key: %w", err)
		}
		named = ""
	}
	opts.URL, opts.Key = base, secret
	if err := seedAndTell(ctx, opts, named, stdout); err != nil {
		if errors.Is(err, demo.ErrUnknownKey) {
			return fmt.Errorf("%w\n(the flywheel at %s uses another database than this command's DATABASE_URL or FLYWHEEL_DATA_DIR: seed it with --url %s --key ADMIN_KEY)", err, base, base)
		}
		return err
	}
	if ready != nil {
		ready(base, secret)
	}
	return nil
}

// seedAndTell runs the demo and says where to look and with which key
// (the secret itself, or the variable named holds it).
func seedAndTell(ctx context.Context, opts demo.Options, named string, stdout io.Writer) error {
	rep, err := demo.Run(ctx, opts)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(stdout, "\nThe demo is ready at %s/: sign in there with the admin key, or use the API.\n", opts.URL)
	if named != "" {
		fmt.Fprintf(stdout, "Admin key: the one in %[1]s:\nKEY=$%[1]s\n", named)
	} else {
		fmt.Fprintf(stdout, "Admin key (shown once; flywheel keys revoke ends it):\nKEY=%s\n", opts.Key)
	}
	if len(rep.Experiments) > 0 {
		fmt.Fprintf(stdout, "  curl -s -H \"Authorization: Bearer $KEY\" %s/v1/experiments/%s/results\n", opts.URL, rep.Experiments[0])
	}
	return nil
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
