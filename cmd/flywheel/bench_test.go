package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

// TestBenchAssign runs the benchmark with tiny settings. It checks that the
// command works end to end and reports both figures, never how fast
// anything is.
func TestBenchAssign(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	getenv := env("DATABASE_URL", dbURL)
	tiny := []string{"bench", "assign", "--rounds", "1", "--connections", "2", "--duration", "300ms", "--warmup", "50ms", "--experiments", "3"}

	var out, errs bytes.Buffer
	if err := run(context.Background(), tiny, getenv, &out, &errs); err != nil {
		t.Fatalf("bench assign: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errs.String())
	}
	for _, want := range []string{"1  bare ", "1  flywheel ", "requests/s  bare", "p99         bare", "ratio", "result: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "failed requests") || strings.Contains(out.String(), "first failure") {
		t.Errorf("bench reports failed requests:\n%s", out.String())
	}

	out.Reset()
	if err := run(context.Background(), append(tiny, "--json"), getenv, &out, io.Discard); err != nil {
		t.Fatalf("bench assign --json: %v", err)
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bench --json output is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Target != "bare" || rep.Runs[1].Target != "flywheel" {
		t.Fatalf("bench --json runs = %+v, want bare then flywheel", rep.Runs)
	}
	s := rep.Summary
	if s.BareRPS <= 0 || s.FlywheelRPS <= 0 || s.RPSRatio <= 0 || s.BareP99Ms <= 0 || s.FlywheelP99Ms <= 0 || s.P99Ratio <= 0 || s.Failures != 0 {
		t.Errorf("bench --json summary = %+v, want both figures of both targets and no failures", s)
	}
	if rep.Response.FlywheelBytes == 0 || rep.Response.FlywheelBytes != rep.Response.BareBytes {
		t.Errorf("response sizes = %+v, want flywheel's and bare's equal", rep.Response)
	}

	// The bench used scratch databases on the server and dropped them.
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname LIKE 'flywheel_bench_%'").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d flywheel_bench_ databases left on the server, want 0", left)
	}
	var exps int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM experiments").Scan(&exps); err != nil {
		t.Fatal(err)
	}
	if exps != 0 {
		t.Errorf("DATABASE_URL's database holds %d experiments, want 0 (the bench uses a scratch database)", exps)
	}
}

func TestBenchUsage(t *testing.T) {
	wantUsageErrors(t, env(),
		[]string{"bench"},
		[]string{"bench", "serve"},
		[]string{"bench", "assign", "--connections", "0"},
		[]string{"bench", "assign", "--duration", "-1s"},
		[]string{"bench", "assign", "--rounds", "0"},
		[]string{"bench", "assign", "extra"},
	)
}

// TestBenchIngest runs `flywheel bench ingest` with tiny settings: it must
// report all three targets with every batch accepted (postEvents fails a
// batch unless every event is accepted), and the events must be stored.
func TestBenchIngest(t *testing.T) {
	// Cycles every 100ms, so that the short run has some to report.
	getenv := env("DATABASE_URL", pgtest.NewDatabase(t), "FLYWHEEL_AGGREGATE_EVERY", "100ms")
	var out, errs bytes.Buffer
	args := []string{"bench", "ingest", "--rounds", "1", "--connections", "2", "--batch", "50", "--duration", "300ms", "--warmup", "50ms", "--json"}
	if err := run(context.Background(), args, getenv, &out, &errs); err != nil {
		t.Fatalf("bench ingest: %v\nstderr:\n%s", err, errs.String())
	}
	var rep struct {
		Runs       []ingestRun
		Summary    ingestSummary
		Aggregator *ingestAggregator
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Runs) != 3 {
		t.Fatalf("runs = %+v, want copy, flywheel-v7, flywheel-v4", rep.Runs)
	}
	for _, r := range rep.Runs {
		if r.Failed != 0 || r.Batches == 0 || r.Events != int64(r.Batches)*50 {
			t.Errorf("run %+v: want batches of 50 events, none failed", r)
		}
		if r.WALPerEvent < 50 { // an event row alone is more
			t.Errorf("run %s: %.0f bytes of WAL per event, want the server's WAL over the run's events", r.Target, r.WALPerEvent)
		}
		if runtime.GOOS == "linux" && (r.CPUPerEvent <= 0 || r.CPUBusy <= 0 || r.CPUBusy > 1) {
			t.Errorf("run %s: %.1f µs of CPU per event, %.2f busy; want the machine's busy time from /proc/stat", r.Target, r.CPUPerEvent, r.CPUBusy)
		}
	}
	if r := rep.Runs[1]; len(r.Waits) == 0 {
		t.Errorf("run %+v: no samples of pg_stat_activity", r)
	}
	if rep.Summary.Ceiling != "bench_keyed_events" {
		t.Errorf("ceiling table %q, want bench_keyed_events (keyed by event id, the default)", rep.Summary.Ceiling)
	}
	if rep.Summary.Copy <= 0 || rep.Summary.V7 <= 0 || rep.Summary.Ratio <= 0 {
		t.Errorf("summary = %+v, want every figure", rep.Summary)
	}
	if a := rep.Aggregator; a == nil || a.Cycles == 0 || len(a.Steps) == 0 || a.Errors != 0 {
		t.Errorf("aggregator = %+v, want its cycles and steps scraped from /metrics, no failed cycle", a)
	}
	wantUsageErrors(t, env(), []string{"bench", "ingest", "--batch", "0"}, []string{"bench", "ingest", "--connections", "0"}, []string{"bench", "ingest", "x"}, []string{"bench", "ingest", "--ceiling", "heap"},
		[]string{"bench", "ingest", "--targets", "copy,kafka"}, []string{"bench", "ingest", "--targets", "copy,copy"}, []string{"bench", "ingest", "--targets", ","})

	// --targets runs only those, in that order.
	out.Reset()
	args = []string{"bench", "ingest", "--rounds", "1", "--connections", "2", "--batch", "50", "--duration", "200ms", "--warmup", "0s", "--json", "--targets", "flywheel-v4,copy"}
	if err := run(context.Background(), args, getenv, &out, &errs); err != nil {
		t.Fatalf("bench ingest --targets: %v\nstderr:\n%s", err, errs.String())
	}
	rep.Runs = nil
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Target != "flywheel-v4" || rep.Runs[1].Target != "copy" {
		t.Errorf("--targets flywheel-v4,copy ran %+v", rep.Runs)
	}

	// storage, named only: the rows and the ids, with the ratio to copy.
	out.Reset()
	args = []string{"bench", "ingest", "--rounds", "1", "--connections", "2", "--batch", "50", "--duration", "200ms", "--warmup", "0s", "--json", "--targets", "copy,storage"}
	if err := run(context.Background(), args, getenv, &out, &errs); err != nil {
		t.Fatalf("bench ingest --targets copy,storage: %v\nstderr:\n%s", err, errs.String())
	}
	rep.Runs, rep.Summary = nil, ingestSummary{}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Runs) != 2 || rep.Runs[1].Target != "storage" || rep.Runs[1].Failed != 0 || rep.Runs[1].FirstFail != "" || rep.Runs[1].Events == 0 || rep.Summary.Storage <= 0 {
		t.Errorf("--targets copy,storage ran %+v, summary %+v", rep.Runs, rep.Summary)
	}
	// (A storage run whose ids were not all stored counts as failed: the
	// bench compares event_ids before and after it.)
}

// TestBenchStream runs `flywheel bench stream` with a few streams: the
// server subprocess (this test binary, see TestMain) serves them, every
// change reaches every stream, the memory figures come from its /metrics,
// and its graceful shutdown ends every open stream.
func TestBenchStream(t *testing.T) {
	getenv := env("DATABASE_URL", pgtest.NewDatabase(t))
	var out, errs bytes.Buffer
	args := []string{"bench", "stream", "--streams", "6", "--compare", "2", "--changes", "3", "--json"}
	if err := run(context.Background(), args, getenv, &out, &errs); err != nil {
		t.Fatalf("bench stream: %v\nstderr:\n%s", err, errs.String())
	}
	var rep streamReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Phases) != 2 || rep.Phases[0].Streams != 2 || rep.Phases[1].Streams != 6 {
		t.Fatalf("phases = %+v, want 2 then 6 streams", rep.Phases)
	}
	for _, p := range rep.Phases {
		if p.Missed != 0 || p.Samples != 3*p.Streams || p.P99ms <= 0 || p.Maxms < p.P99ms {
			t.Errorf("phase %+v: want every change on every stream", p)
		}
		if p.GoroutinesPerStream <= 0 {
			t.Errorf("phase %+v: no goroutines per stream from the server's /metrics", p)
		}
	}
	if !rep.AllEnded || rep.Load == "" || rep.FDLimit == 0 {
		t.Errorf("report %+v: want every stream ended by the shutdown, the load and the fd limit", rep)
	}
	wantUsageErrors(t, env(), []string{"bench", "stream", "--streams", "0"}, []string{"bench", "stream", "--compare", "7", "--streams", "6"},
		[]string{"bench", "stream", "--changes", "0"}, []string{"bench", "stream", "x"})
}
