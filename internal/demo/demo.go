// Package demo fills a running flywheel server with demo experiments
// through its public /v1 API only, as any client could: metrics and
// experiments by POST, data as events (exposures carrying each unit's
// variant, tracks, identify links) by POST /v1/events, then it reads the
// results. It writes nothing to a database.
//
// The scenarios (definitions.go): hillstrom-email, Kevin Hillstrom's real
// e-mail test (data/README.md); shop, a synthetic e-commerce journey for
// checkout-button and free-shipping with customers on several devices;
// srm-demo, a running experiment with a deliberate sample ratio mismatch.
// Every event has a fixed id and time, so running the demo again stores
// nothing twice.
//
// It imports the vocabulary and assign (to assign units as the server
// does), never the server's packages.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// Options configure Run.
type Options struct {
	// URL is the server's base URL, such as http://127.0.0.1:8080.
	URL string
	// Key is an admin API key.
	Key string
	// Only names the scenarios to seed (ScenarioNames); empty seeds all.
	Only []string
	// Out receives the progress, a line at a time; nil discards it.
	Out io.Writer
	// Wait bounds how long Run waits, after the last event is
	// acknowledged, for the results to count every event (0: two
	// minutes; negative: Run does not wait).
	Wait time.Duration
}

// Report is what Run did.
type Report struct {
	// Experiments are the keys of the experiments seeded, in order.
	Experiments []string
	// Expected holds, per experiment and variant, the analysed units (and
	// for the shop and srm-demo, conversions and revenue) the demo's own
	// events make, as the results should count them.
	Expected map[string]map[string]ArmTally
	// Events counts what the server answered: stored now, or already.
	Events, Accepted, Duplicates int
	// Seeded is the time from the start to the last acknowledged event;
	// Complete the time from then until the results counted every event
	// (when Run waited, and Pending is 0).
	Seeded, Complete time.Duration
	// Pending is the acknowledged events not yet in the results when Run
	// stopped waiting (at least 1 while units were missing): 0 means
	// complete; -1 when Run did not wait.
	Pending int64
}

// Run seeds the server at o.URL and, unless told not to, waits until its
// results count every event. It is safe to run again: what exists is said
// and kept, and every event the server already has is a duplicate.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	p := &printer{w: out}
	selected, err := selectScenarios(o.Only)
	if err != nil {
		return nil, err
	}
	c, err := newClient(o.URL, o.Key)
	if err != nil {
		return nil, err
	}
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	p.printf("seeding %s through its /v1 API", c.base)
	s := &seeder{c: c, p: p}
	rep, err := s.run(ctx, selected, start, o.Wait)
	if err != nil {
		return rep, c.explain(err)
	}
	return rep, nil
}

// selectScenarios returns the scenarios named by only (all when empty).
func selectScenarios(only []string) ([]scenario, error) {
	if len(only) == 0 {
		return scenarios, nil
	}
	var out []scenario
	for _, sc := range scenarios {
		if slices.Contains(only, sc.name) {
			out = append(out, sc)
		}
	}
	for _, name := range only {
		if !slices.ContainsFunc(scenarios, func(sc scenario) bool { return sc.name == name }) {
			return nil, fmt.Errorf("unknown demo scenario %q: want one of %s", name, strings.Join(ScenarioNames(), ", "))
		}
	}
	return out, nil
}

// seeder is one run of the demo.
type seeder struct {
	c *client
	p *printer
	// created is set when the run created a metric or an experiment: the
	// server builds its aggregates at its next aggregation cycle.
	created bool
}

// ready is an experiment the demo sends events for.
type ready struct {
	key     string
	created time.Time
}

func (s *seeder) run(ctx context.Context, selected []scenario, start time.Time, wait time.Duration) (*Report, error) {
	rep := &Report{Expected: map[string]map[string]ArmTally{}}
	var hillstrom []HillstromRow
	var plans []plan
	for _, sc := range selected {
		for _, key := range sc.metrics {
			if err := s.ensureMetric(ctx, key); err != nil {
				return rep, err
			}
		}
		exps, ok, err := s.ensureExperiments(ctx, sc)
		if err != nil {
			return rep, err
		}
		if !ok {
			continue
		}
		if sc.name == "hillstrom-email" {
			if hillstrom, err = Hillstrom(); err != nil {
				return rep, err
			}
		}
		plans = append(plans, plan{sc: sc, exps: exps})
		for _, e := range exps {
			rep.Experiments = append(rep.Experiments, e.key)
		}
	}
	if len(plans) == 0 {
		s.p.printf("nothing to seed")
		return rep, nil
	}
	snap, err := s.config(ctx, rep.Experiments)
	if err != nil {
		return rep, err
	}
	if s.created {
		s.awaitAggregation(ctx)
	}

	var events []event
	for _, pl := range plans {
		evs, expect := pl.events(snap, hillstrom)
		s.p.printf("%s: %s events", pl.sc.name, count(len(evs)))
		events = append(events, evs...)
		for exp, arms := range expect {
			rep.Expected[exp] = arms
		}
	}
	sendStart := time.Now()
	totals, err := s.c.send(ctx, events, s.p.progress("events", len(events), sendStart))
	rep.Events, rep.Accepted, rep.Duplicates = totals.Sent, totals.Accepted, totals.Duplicates
	if err != nil {
		return rep, fmt.Errorf("send events: %w", err)
	}
	rep.Seeded = time.Since(start)
	s.p.printf("sent %s events in %.1f s (seeded in %.1f s): %s new, %s already stored", count(totals.Sent),
		time.Since(sendStart).Seconds(), rep.Seeded.Seconds(), count(totals.Accepted), count(totals.Duplicates))
	if totals.Dropped > 0 {
		s.p.printf("%s events were dropped by the server: their units opted out", count(totals.Dropped))
	}

	if wait < 0 {
		rep.Pending = -1
		return rep, nil
	}
	if wait == 0 {
		wait = 2 * time.Minute
	}
	done := time.Now()
	pending, missing, err := s.waitComplete(ctx, rep, wait)
	rep.Pending = pending
	if missing > 0 {
		rep.Pending = max(pending, 1)
	}
	if err != nil {
		return rep, err
	}
	if rep.Pending == 0 {
		rep.Complete = time.Since(done)
		s.p.printf("results complete %.1f s after the last event (%.1f s in all)", rep.Complete.Seconds(), time.Since(start).Seconds())
	} else {
		s.p.printf("results not complete after %s: %s events and %s units still to count", wait, count(int(pending)), count(int(missing)))
	}
	return rep, s.summarize(ctx, rep)
}

// plan is a scenario whose experiments are ready for events.
type plan struct {
	sc   scenario
	exps []ready
}

// anchor is the time the scenario's data ends at: the creation time of its
// oldest experiment, which the server keeps, so that every run of the demo
// makes the same events at the same times with the same ids.
func (pl plan) anchor() time.Time {
	a := pl.exps[0].created
	for _, e := range pl.exps[1:] {
		if e.created.Before(a) {
			a = e.created
		}
	}
	return a.UTC().Truncate(time.Millisecond)
}

// events makes the scenario's events and what its arms should hold.
func (pl plan) events(snap *assign.Snapshot, hillstrom []HillstromRow) ([]event, map[string]map[string]ArmTally) {
	expect := map[string]map[string]ArmTally{}
	switch pl.sc.name {
	case "hillstrom-email":
		arms := map[string]ArmTally{}
		for _, r := range hillstrom {
			t := arms[r.Arm()]
			t.Units++
			if r.Conversion {
				t.Conversions++
			}
			t.Revenue += r.Spend
			arms[r.Arm()] = t
		}
		expect["hillstrom-email"] = arms
		return hillstromEvents(hillstrom, pl.anchor()), expect
	case "shop":
		exps := map[string]bool{}
		for _, e := range pl.exps {
			exps[e.key] = true
		}
		evs, tallies := shopEvents(snap, exps, pl.anchor())
		for exp, arms := range tallies {
			expect[exp] = derefTallies(arms)
		}
		return evs, expect
	case "srm-demo":
		evs, arms := srmEvents(snap, pl.anchor())
		expect["srm-demo"] = derefTallies(arms)
		return evs, expect
	}
	panic("demo: no events for scenario " + pl.sc.name)
}

func derefTallies(in map[string]*ArmTally) map[string]ArmTally {
	out := make(map[string]ArmTally, len(in))
	for k, v := range in {
		out[k] = *v
	}
	return out
}

// ensureMetric creates a metric, or says that it exists (and how it
// differs from the demo's, if it does: the demo then uses it as it is).
func (s *seeder) ensureMetric(ctx context.Context, key string) error {
	def := metricDefs[key]
	var have flywheel.Metric
	// Created first, read only when the key is taken: on a new server the
	// demo asks nothing that the server answers with an error (and logs).
	_, err := s.c.do(ctx, http.MethodPost, "/v1/metrics", def, &have)
	switch {
	case err == nil:
		s.p.printf("metric %s: created", key)
		s.created = true
		return nil
	case !isConflict(err):
		return fmt.Errorf("create metric %s: %w", key, err)
	}
	// The key is taken? (Else the conflict, which the error says.)
	if found, ferr := s.find(ctx, "/v1/metrics/"+url.PathEscape(key), &have); ferr != nil || !found {
		return fmt.Errorf("create metric %s: %w", key, err)
	}
	var diffs []string
	if string(have.Type) != def["type"] {
		diffs = append(diffs, fmt.Sprintf("type %s, not %s", have.Type, def["type"]))
	}
	if have.Event != def["event"] {
		diffs = append(diffs, fmt.Sprintf("event %q, not %q", have.Event, def["event"]))
	}
	if have.WindowHours != def["window_hours"] {
		diffs = append(diffs, fmt.Sprintf("window %d h, not %d h", have.WindowHours, def["window_hours"]))
	}
	if len(diffs) > 0 {
		s.p.printf("metric %s: already exists with another definition (%s); the demo uses it as it is", key, strings.Join(diffs, ", "))
	} else {
		s.p.printf("metric %s: already exists", key)
	}
	return nil
}

// find reads path into out; found is false when the server answers 404.
func (s *seeder) find(ctx context.Context, path string, out any) (found bool, err error) {
	_, err = s.c.do(ctx, http.MethodGet, path, nil, out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// ensureExperiments creates and starts the scenario's experiments, or
// says that they exist. ok is false when one of them cannot take the
// demo's events (archived, stopped, or another experiment of that key):
// the scenario is then left alone.
func (s *seeder) ensureExperiments(ctx context.Context, sc scenario) (exps []ready, ok bool, err error) {
	for _, key := range sc.experiments {
		def := experimentDefs[key]
		var e flywheel.Experiment
		path := "/v1/experiments/" + url.PathEscape(key)
		// Created first, read when that is a conflict (as ensureMetric).
		existed := false
		_, err := s.c.do(ctx, http.MethodPost, "/v1/experiments", def, &e)
		if isConflict(err) { // the key is taken? (else a limit, which the error says)
			if found, ferr := s.find(ctx, path, &e); ferr == nil && found {
				existed, err = true, nil
			}
		}
		if err != nil {
			return nil, false, fmt.Errorf("create experiment %s: %w", key, err)
		}
		s.created = s.created || !existed
		if why := incompatible(&e, def); why != "" {
			s.p.printf("experiment %s: already exists, but %s; scenario %s left alone", key, why, sc.name)
			return nil, false, nil
		}
		switch e.Status {
		case flywheel.StatusDraft:
			if _, err := s.c.do(ctx, http.MethodPost, path+"/start", nil, &e); err != nil {
				return nil, false, fmt.Errorf("start experiment %s: %w", key, err)
			}
			if existed {
				s.p.printf("experiment %s: already exists as a draft; started", key)
			} else {
				s.p.printf("experiment %s: created and started", key)
			}
		case flywheel.StatusRunning:
			s.p.printf("experiment %s: already exists and is running; its events are sent again (those stored already count once)", key)
		default:
			s.p.printf("experiment %s: already exists and is %s, so it takes no new units; scenario %s left alone", key, e.Status, sc.name)
			return nil, false, nil
		}
		exps = append(exps, ready{key: key, created: e.CreatedAt})
	}
	return exps, true, nil
}

// incompatible says why an existing experiment cannot take the demo's
// events ("" when it can): another unit type or other variants.
func incompatible(e *flywheel.Experiment, def map[string]any) string {
	if e.UnitType != def["unit_type"] {
		return fmt.Sprintf("on %s ids, not %s", e.UnitType, def["unit_type"])
	}
	var want, have []string
	for _, v := range def["variants"].([]map[string]any) {
		want = append(want, v["key"].(string))
	}
	for _, v := range e.Variants {
		have = append(have, v.Key)
	}
	if !slices.Equal(want, have) {
		return fmt.Sprintf("its variants are %s, not %s", strings.Join(have, ", "), strings.Join(want, ", "))
	}
	return ""
}

func isConflict(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict
}

// config waits until the server's configuration (GET /v1/sdk/config) has
// every experiment running, and compiles it: the demo assigns units with
// the server's own assign package, as an SDK does. A server that learns of
// changes made through another server polls for them (every 2 s by
// default), hence the wait.
func (s *seeder) config(ctx context.Context, keys []string) (*assign.Snapshot, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cfg assign.Config
		if _, err := s.c.do(ctx, http.MethodGet, "/v1/sdk/config", nil, &cfg); err != nil {
			return nil, fmt.Errorf("read the configuration: %w", err)
		}
		snap, err := assign.Compile(cfg)
		if err != nil {
			return nil, fmt.Errorf("compile the configuration: %w", err)
		}
		missing := ""
		for _, k := range keys {
			if c, ok := snap.Lookup(k); !ok || !c.Running() {
				missing = k
				break
			}
		}
		if missing == "" {
			return snap, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("experiment %s is not running in the server's configuration after 30 s", missing)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
