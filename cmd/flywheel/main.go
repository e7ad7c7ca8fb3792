// Command flywheel runs the Flywheel experimentation service and its
// administrative commands. main only calls run; run is the one place where
// concrete types are wired together, so tests can drive it end to end.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGOGC is the garbage collector's target when GOGC is not set. The
// ingestion path allocates for every event: in bench ingest, 400 took
// flywheel's own CPU per event from 6.4 to 5.3 µs against Go's default of
// 100 (BENCHMARKS.md). The memory it trades is bounded by the ingestion
// queue (FLYWHEEL_INGEST_QUEUE).
const defaultGOGC = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flywheel:", err)
		os.Exit(exitCode(err))
	}
}

const usage = `flywheel: an experimentation (A/B testing) platform

Usage:
  flywheel serve [--addr 127.0.0.1:8080]   run the HTTP service (applies migrations first)
  flywheel migrate [status]                apply migrations, or list them
  flywheel keys create --scope admin|sdk|viewer [--name NAME]
                                           create an API key; the key is the last line of stdout
  flywheel keys list                       list live keys by prefix
  flywheel keys revoke PREFIX|KEY          revoke a key
  flywheel demo [--addr 127.0.0.1:8080] [--only SCENARIO,...]
                                           start a server (as serve does; or use the flywheel
                                           already serving there), fill it with demo experiments
                                           through the API, print its URL and an admin key
  flywheel demo --url URL --key ADMIN_KEY  fill a running server with the demo experiments
  flywheel assign --experiment KEY --in LIST.csv --out ANSWER.csv [--record-exposures [--sent-at T]]
                  [--url URL] [--key ADMIN_KEY]
                                           assign a unit list (campaign) through a running server,
                                           with a progress bar and a summary per variant
  flywheel bench assign [--connections 64] [--duration 10s] [--rounds 3] [--json]
                                           load-test POST /v1/assign against a bare gin handler
  flywheel bench ingest [--connections 4] [--duration 10s] [--rounds 3] [--json]
                                           load-test POST /v1/events against a bare COPY
  flywheel bench results [--units 1000000] [--events 10000000] [--rate 20000] [--json]
                                           results from aggregates vs a recomputation, and
                                           aggregation keeping up with ingestion
  flywheel bench freshness [--scenario all|fresh300k|burst|burst1m|sustained] [--units 300000]
                           [--burst-units 63000] [--rate 20000,50000] [--duration 3m] [--json]
                                           how soon results count acknowledged events (issue 13)
  flywheel bench stream [--streams 1000] [--compare 100] [--changes 10] [--json]
                                           how soon a config change reaches open SDK streams,
                                           and the server's memory per idle stream
  flywheel bench assignments [--units 1000000] [--sample 20000] [--skip-events]
                                           a campaign list through POST /v1/experiments/{key}/assignments
                                           (assign only, exposures recorded, retry) vs per-unit calls
  flywheel version

Database: DATABASE_URL, or unset for the embedded default (a private
PostgreSQL cluster in FLYWHEEL_DATA_DIR, default ./.flywheel/pgdata).
See README.md for every setting.
`

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	if _, ok := err.(usageError); ok {
		return 2
	}
	return 1
}

// run is flywheel with its environment passed in.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr, nil)
	case "migrate":
		return runMigrate(ctx, args[1:], getenv, stdout, stderr)
	case "keys":
		return runKeys(ctx, args[1:], getenv, stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], getenv, stdout, stderr, nil)
	case "bench":
		return runBench(ctx, args[1:], getenv, stdout, stderr)
	case "assign":
		return runAssign(ctx, args[1:], getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "flywheel", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}
