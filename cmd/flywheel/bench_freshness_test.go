package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

// TestBenchFreshness runs `flywheel bench freshness` at a tiny scale, every
// scenario: each must end with complete results (every unit sent counted,
// nothing pending) and report its load, its lag samples and the
// aggregator's steps, and the aggregates must equal a recomputation from
// raw events. It never checks how fast anything is.
func TestBenchFreshness(t *testing.T) {
	// Cycles every 200ms, so that each scenario completes in well under a
	// second after its last event.
	getenv := env("DATABASE_URL", pgtest.NewDatabase(t), "FLYWHEEL_AGGREGATE_EVERY", "200ms")
	serverLog := filepath.Join(t.TempDir(), "server.log")
	args := []string{"bench", "freshness", "--units", "400", "--burst-units", "150", "--base-units", "1000", "--base-events", "4000",
		"--rate", "4000", "--duration", "2s", "--timeout", "20s", "--server-log", serverLog, "--json"}
	rep, errs := runBenchJSON[freshnessReport](t, args, getenv)
	if rep.Machine.CPUs == 0 || rep.Command != "flywheel bench freshness "+strings.Join(args[2:], " ") || rep.AggregateEvery != 0.2 {
		t.Errorf("header: machine %+v, command %q, aggregate every %vs", rep.Machine, rep.Command, rep.AggregateEvery)
	}
	var names []string
	for _, sc := range rep.Scenarios {
		names = append(names, sc.title())
	}
	if want := []string{"fresh300k", "burst", "burst1m", "sustained 4000/s"}; !slices.Equal(names, want) {
		t.Fatalf("scenarios = %v, want %v", names, want)
	}
	// Each scenario starts from the units the one before left.
	for i, stored := range []int64{0, 400, 1000, 1150} {
		if sc := rep.Scenarios[i]; sc.StoredUnits != stored {
			t.Errorf("%s: stored units %d, want %d", sc.title(), sc.StoredUnits, stored)
		}
	}
	for i, sc := range rep.Scenarios {
		name := sc.title()
		s, l := sc.Send, sc.Lag
		if !sc.Complete || sc.CompleteSeconds < 0 || sc.CompleteSeconds > 20 || sc.ResultsUnits != sc.ExpectedUnits ||
			sc.ExpectedUnits != sc.StoredUnits+sc.NewUnits || sc.NewUnits == 0 || !sc.FromAggregates {
			t.Errorf("%s: complete %v after %vs, results %d units, expected %d = %d + %d, from aggregates %v; want complete results from the aggregates",
				name, sc.Complete, sc.CompleteSeconds, sc.ResultsUnits, sc.ExpectedUnits, sc.StoredUnits, sc.NewUnits, sc.FromAggregates)
		}
		if s.Failed != 0 || s.Batches == 0 || s.Events == 0 || s.Seconds <= 0 || s.Rate <= 0 || s.PostP50Ms <= 0 || s.PostP99Ms < s.PostP50Ms {
			t.Errorf("%s: send = %+v, want every batch accepted and timed", name, s)
		}
		if l.Samples == 0 || len(sc.Samples) < l.Samples || l.P50 < 0 || l.P99 < l.P50 || l.Max < l.P99 || l.ResultsP50Ms <= 0 || l.Errors != 0 {
			t.Errorf("%s: lag = %+v over %d samples, want ordered quantiles of answered requests", name, l, len(sc.Samples))
		}
		for j := 1; j < len(sc.Samples); j++ {
			if sc.Samples[j].T < sc.Samples[j-1].T {
				t.Errorf("%s: samples out of order at %d: %+v", name, j, sc.Samples[j-1:j+1])
				break
			}
		}
		if n := len(sc.Samples); n > 0 {
			last := sc.Samples[n-1]
			if last.Pending != 0 || last.Units != sc.ExpectedUnits {
				t.Errorf("%s: last sample %+v, want the complete answer", name, last)
			}
			// The last answer, the complete one, arrived CompleteSeconds
			// after the last acknowledged event, which ended the load.
			if got, want := s.Seconds+sc.CompleteSeconds, last.T+last.Ms/1000; got < want-0.05 || got > want+0.05 {
				t.Errorf("%s: load %.3fs + complete %.3fs = %.3fs after the start, but the complete answer arrived at %.3fs",
					name, s.Seconds, sc.CompleteSeconds, got, want)
			}
		}
		a := sc.Aggregator
		steps := map[string]uint64{}
		for _, st := range a.Steps {
			steps[st.Name] = st.Count
		}
		// Cycles can fill at most the scenario's time (a cycle that began
		// just before it counts whole, hence the margin).
		if a.Busy <= 0 || a.Busy > 1.2 {
			t.Errorf("%s: aggregator in cycles %.3f of the time, want a share in (0, 1.2]", name, a.Busy)
		}
		if a.Cycles < 1 || a.CycleMeanMs <= 0 || a.PairsPerCycle <= 0 || steps["queue"] == 0 || steps["units"] == 0 || steps["track owners"] == 0 {
			t.Errorf("%s: aggregator = %+v, want this scenario's cycles with their queue, units and track owners steps", name, a)
		}
		// The tracks step, the definitions' folds, runs when a cycle staged
		// events of units it did not recompute: always under the sustained
		// load's tracks of stored units; in the campaigns one cycle at this
		// size may take a unit's exposure and its tracks together.
		if sc.Name == "sustained" && steps["tracks"] == 0 {
			t.Errorf("%s: aggregator = %+v, want the definitions' folds of the stored units' tracks (the tracks step)", name, a)
		}
		if db := sc.Database; db.WALBytes <= 0 || db.FullPageImages < 0 || !db.CheckpointsKnown || db.Checkpoints == nil {
			t.Errorf("%s: database figures %+v, want the WAL it wrote and the checkpoints (none or more)", name, db)
		}
		if sc.Figure < 0 || sc.Target == "" {
			t.Errorf("%s: figure %v, target %q", name, sc.Figure, sc.Target)
		}
		if i < 3 {
			c := sc.Campaign
			if c == nil || int64(c.Units) != sc.NewUnits || c.Exposures != c.Units || c.Conversions == 0 || c.PreExposure == 0 ||
				c.Events != c.Exposures+2*c.Conversions+c.PreExposure || s.Events != int64(c.Events) {
				t.Errorf("%s: campaign %+v, %d events accepted; want every event of every unit", name, c, s.Events)
			}
			if sc.Figure != sc.CompleteSeconds {
				t.Errorf("%s: figure %v, want the time to complete results %v", name, sc.Figure, sc.CompleteSeconds)
			}
		}
	}
	if c := rep.Scenarios[0].Campaign; c != nil && (c.Events < 560 || c.Events > 640) {
		t.Errorf("fresh300k sent %d events for 400 units, want about 1.5 per unit", c.Events)
	}
	if sc := rep.Scenarios[3]; sc.Rate != 4000 || sc.Send.Events != 8000 || sc.Figure != sc.Lag.P99 {
		t.Errorf("sustained: rate %d, %d events accepted, figure %v; want 4000/s for 2s and the lag p99 %v", sc.Rate, sc.Send.Events, sc.Figure, sc.Lag.P99)
	}
	if len(rep.Databases) != 2 {
		t.Fatalf("databases = %+v, want two", rep.Databases)
	}
	for i, d := range rep.Databases {
		if !d.Verified || d.VerifyError != "" {
			t.Errorf("database of %v: aggregates differ from a recomputation: %s", d.Scenarios, d.VerifyError)
		}
		// Each scenario reports the cycles that ran while it did: together
		// no more than the database saw in all.
		cycles := 0.0
		for _, sc := range rep.Scenarios[2*i : 2*i+2] {
			cycles += sc.Aggregator.Cycles
		}
		if cycles > d.Aggregator.Cycles {
			t.Errorf("database of %v: its scenarios report %v cycles, more than its %v in all", d.Scenarios, cycles, d.Aggregator.Cycles)
		}
	}
	if d := rep.Databases[1]; d.BaseUnits != 1000 || d.Load == nil || d.Load.Exposures != 1000 || d.Load.Events != 4000 || d.Build == nil || d.Build.BuildSeconds <= 0 {
		t.Errorf("second database = %+v, want 1000 units and 4000 events loaded, then built", d)
	}
	if !strings.Contains(errs, "burst1m: complete") {
		t.Errorf("progress on stderr lacks the scenarios:\n%s", errs)
	}
	checkServerLog(t, serverLog)

	// The report in text form, from the same figures.
	var text bytes.Buffer
	rep.printHeader(&text)
	for _, sc := range rep.Scenarios {
		sc.print(&text)
	}
	rep.printSummary(&text)
	for _, want := range []string{"command:  flywheel bench freshness --units 400", "machine:  ", "note:     smaller than the issue's sizes",
		"fresh300k: 400 new units", "complete     ", "lag curve", "step queue", "step tracks", "trend        mean lag by third of the run",
		"complete <= 120 s after the last acknowledged event:", "lag p99 <= 5 s over the run", "summary (targets of issue 13):",
		"aggregates = recomputation after burst1m, sustained 4000/s", "result: "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}

	// A sustained run whose aggregator never rested is flagged, whatever
	// its trend; one with gaps between cycles is not.
	flagged := 0
	for _, sc := range rep.Scenarios {
		if sc.Rate == 0 {
			continue
		}
		flagged++
		for _, busy := range []float64{0.5, 0.99} {
			c := *sc
			c.Aggregator.Busy = busy
			var out bytes.Buffer
			c.print(&out)
			if got := strings.Contains(out.String(), "CAUTION      the aggregator ran back to back"); got != (busy >= busyLimit) {
				t.Errorf("sustained run with the aggregator in cycles %.0f%% of the time: caution %v, want %v:\n%s", 100*busy, got, !got, out.String())
			}
		}
	}
	if flagged == 0 {
		t.Error("no sustained run in the report to check the caution on")
	}

	wantUsageErrors(t, env(),
		[]string{"bench", "freshness", "--scenario", "nope"},
		[]string{"bench", "freshness", "--units", "0"},
		[]string{"bench", "freshness", "--units", "100", "--events", "50"},
		[]string{"bench", "freshness", "--rate", "20000,x"},
		[]string{"bench", "freshness", "--duration", "0s"},
		[]string{"bench", "freshness", "extra"},
	)
}

// checkServerLog: --server-log holds flywheel's log at debug level as JSON
// lines, each aggregation cycle with its steps, between the bench's
// progress lines.
func checkServerLog(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cycles, folds int
	var progress []string
	for line := range strings.Lines(string(b)) {
		var rec struct {
			Msg   string           `json:"msg"`
			Time  time.Time        `json:"time"`
			Steps map[string]int64 `json:"steps"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time.IsZero() {
			t.Fatalf("server log line %q: %v, want a JSON record with its time", line, err)
		}
		switch {
		case rec.Msg == "aggregation cycle":
			cycles++
			if rec.Steps["tracks"] > 0 {
				folds++
			}
		case strings.HasPrefix(rec.Msg, "bench: "):
			progress = append(progress, rec.Msg)
		}
	}
	if cycles == 0 || folds == 0 || !slices.ContainsFunc(progress, func(m string) bool { return strings.Contains(m, "burst1m: complete") }) {
		t.Errorf("server log has %d aggregation cycles (%d with the tracks step) and progress %q; want cycles with their steps, and the progress", cycles, folds, progress)
	}
}

// TestLagTrend: the lag grows when the aggregator falls behind, not when it
// ramps up at the start or saws up and down with its cycles.
func TestLagTrend(t *testing.T) {
	series := func(f func(t float64) float64) []lagSample {
		var s []lagSample
		for i := range 240 { // 60 s every 250 ms
			at := float64(i) / 4
			s = append(s, lagSample{T: at, Lag: f(at)})
		}
		return s
	}
	for _, c := range []struct {
		name    string
		lag     func(t float64) float64
		growing bool
	}{
		{"flat", func(float64) float64 { return 1 }, false},
		{"cycles of 8 s", func(t float64) float64 { return math.Mod(t, 8) }, false},
		// The first 12 s, no answer is behind yet: the first cycle is long.
		{"a slow start, then cycles of 8 s", func(t float64) float64 { return math.Mod(t, 8) * float64(btoi(t >= 12)) }, false},
		{"falling behind 10% of the time", func(t float64) float64 { return 0.1*t + math.Mod(t, 2) }, true},
		{"falling behind from the middle", func(t float64) float64 { return max(1, t-30) }, true},
	} {
		l := lagOf(series(c.lag), 60)
		if l.Growing != c.growing || l.Samples != 240 || l.Max < l.P99 || l.P99 < l.P50 {
			t.Errorf("%s: %+v, want growing %v", c.name, l, c.growing)
		}
	}
	if l := lagOf([]lagSample{{T: 0, Lag: 0.5}}, 0); l.Samples != 1 || l.Growing || l.FirstThird != 0.5 {
		t.Errorf("one sample at 0: %+v", l)
	}
}

// TestBenchFreshnessServers runs `bench freshness --servers 2` at a tiny
// scale: the clients send through both servers, the first leads
// aggregation and runs every cycle while the second defers to it, both
// answer results, and the results are complete and equal to a
// recomputation.
func TestBenchFreshnessServers(t *testing.T) {
	getenv := env("DATABASE_URL", pgtest.NewDatabase(t), "FLYWHEEL_AGGREGATE_EVERY", "200ms")
	args := []string{"bench", "freshness", "--scenario", "burst,sustained", "--servers", "2", "--units", "300", "--burst-units", "150",
		"--base-units", "500", "--base-events", "2000", "--rate", "4000", "--duration", "2s", "--timeout", "20s", "--json"}
	rep, errs := runBenchJSON[freshnessReport](t, args, getenv)
	if rep.Options.Servers != 2 || len(rep.Scenarios) != 2 || len(rep.Databases) != 2 {
		t.Fatalf("servers %d, %d scenarios, %d databases; want 2 servers, the burst and one sustained run on two databases",
			rep.Options.Servers, len(rep.Scenarios), len(rep.Databases))
	}
	for _, sc := range rep.Scenarios {
		if !sc.Complete || sc.ResultsUnits != sc.ExpectedUnits || sc.Send.Failed != 0 || sc.Send.Events == 0 {
			t.Errorf("%s: complete %v, results %d units of %d, send %+v; want every event accepted and counted", sc.title(), sc.Complete, sc.ResultsUnits, sc.ExpectedUnits, sc.Send)
		}
		// (The burst is short: the second server's ticks that defer may
		// all fall outside it, so they are counted over each database.)
		sv := sc.Aggregator.Servers
		if len(sv) != 2 || sv[0].Cycles < 1 || sv[0].Cycles != sc.Aggregator.Cycles || sv[1].Cycles != 0 {
			t.Errorf("%s: cycles by server %+v of %v; want every cycle run by the first server", sc.title(), sv, sc.Aggregator.Cycles)
		}
		// Four clients a server: under the sustained load (a batch from
		// each client) each accepted half the events. (The burst is one
		// batch.)
		if sc.Rate > 0 && len(sv) == 2 && (sv[0].Events+sv[1].Events != float64(sc.Send.Events) || sv[0].Events < float64(sc.Send.Events)/4 || sv[1].Events < float64(sc.Send.Events)/4) {
			t.Errorf("%s: events accepted by server %v and %v of %d sent; want both servers to take their share", sc.title(), sv[0].Events, sv[1].Events, sc.Send.Events)
		}
	}
	// Results are read from both servers in turn: the follower answers
	// too, from the same tables.
	var answered [2]int
	for _, smp := range rep.Scenarios[1].Samples {
		answered[smp.Server]++
	}
	if answered[0] == 0 || answered[1] == 0 {
		t.Errorf("results answers by server %v, want both servers polled", answered)
	}
	for _, d := range rep.Databases {
		if sv := d.Aggregator.Servers; !d.Verified || len(sv) != 2 || sv[1].Cycles != 0 || sv[1].Deferred < 1 {
			t.Errorf("database of %v: verified %v (%s), servers %+v; want the aggregates verified, the second server deferring to the first",
				d.Scenarios, d.Verified, d.VerifyError, sv)
		}
	}
	if !strings.Contains(errs, "2 servers on the database") {
		t.Errorf("progress lacks the servers:\n%s", errs)
	}
	var text bytes.Buffer
	rep.printHeader(&text)
	rep.Scenarios[1].print(&text)
	for _, want := range []string{"servers:  2 flywheel servers on one database", "servers      by server: events accepted "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
	wantUsageErrors(t, env(), []string{"bench", "freshness", "--servers", "0"}, []string{"bench", "freshness", "--servers", "5"})
}
