package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

// TestBenchResults runs `flywheel bench results` with tiny sizes: every
// phase must report its figures, and the aggregates must equal the
// recomputation from raw events after the build and after the keep-up
// phase. It never checks how fast anything is.
func TestBenchResults(t *testing.T) {
	getenv := env("DATABASE_URL", pgtest.NewDatabase(t))
	args := []string{"bench", "results", "--units", "2000", "--events", "20000", "--requests", "5", "--recomputes", "1",
		"--duration", "2s", "--rate", "2000", "--json"}
	rep, _ := runBenchJSON[resultsReport](t, args, getenv)
	if rep.Load.Exposures != 2000 || rep.Load.Events != 20000 || rep.BuildSeconds <= 0 {
		t.Errorf("load = %+v, build %vs; want 2000 exposures, 20000 events and a build", rep.Load, rep.BuildSeconds)
	}
	r := rep.Read
	if r.Requests != 5 || r.ResultsUnits != 2000 || r.ResultsP50Ms <= 0 || r.StoreP50Ms <= 0 || len(r.RecomputeMs) != 1 || r.RecomputeP50Ms <= 0 || r.Ratio <= 0 {
		t.Errorf("read = %+v, want every figure over 2000 units", r)
	}
	if len(r.Timeseries) != 2 || r.Timeseries[0].P50Ms <= 0 || r.Timeseries[0].RecomputeMs <= 0 {
		t.Errorf("timeseries = %+v, want both metrics timed", r.Timeseries)
	}
	k := rep.KeepUp
	if k.Events == 0 || k.Events%resultsBatch != 0 || k.Failed != 0 || k.Rate <= 0 || k.Samples == 0 || !k.Drained || k.Cycles == 0 {
		t.Errorf("keep-up = %+v, want accepted batches, lag samples, cycles and a drained queue", k)
	}
	if !rep.Pass.Verified || !k.Verified || r.VerifyError != "" || k.VerifyError != "" {
		t.Errorf("verification failed: %q %q", r.VerifyError, k.VerifyError)
	}
	if len(k.Steps) == 0 || k.Steps[0].Name != "queue" || k.Steps[0].Count == 0 {
		t.Errorf("aggregation steps = %+v, want the queue step first, timed", k.Steps)
	}

	// The report in text form, from the same figures.
	var text bytes.Buffer
	rep.print(&text)
	for _, want := range []string{"GET results (HTTP)", "store.RecomputeResultInput", "initial aggregates", "lag over",
		"results p50 <= 200 ms", "timeseries p50 <= 300 ms", "aggregates and timeseries = recomputation (after build, after keep-up)  PASS", "note:", "result: "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}

	wantUsageErrors(t, env(),
		[]string{"bench", "results", "--units", "0"},
		[]string{"bench", "results", "--requests", "0"},
		[]string{"bench", "results", "--duration", "0s"},
		[]string{"bench", "results", "extra"},
	)
}

// TestResultsJudgeKeepUp: keeping up means the offered load was at least
// the target and all of it was accepted, whatever the wall-clock tail.
func TestResultsJudgeKeepUp(t *testing.T) {
	for _, c := range []struct {
		name   string
		rate   int
		events int64
		failed int
		want   bool
	}{
		{"all accepted", 20000, 1_200_000, 0, true},
		{"a batch short", 20000, 1_199_500, 0, true}, // within the pacing granularity (0.1%)
		{"a tenth short", 20000, 1_080_000, 0, false},
		{"a failed batch", 20000, 1_200_000, 1, false},
		{"offered below the target", 10000, 600_000, 0, false},
	} {
		r := resultsReport{Options: resultsOptions{Rate: c.rate, Duration: time.Minute}}
		r.KeepUp.Events, r.KeepUp.Failed = c.events, c.failed
		if r.judge(); r.Pass.Rate != c.want {
			t.Errorf("%s: Pass.Rate = %v, want %v", c.name, r.Pass.Rate, c.want)
		}
	}
}
