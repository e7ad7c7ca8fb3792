package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/store"
)

// The sizes and targets of issue 13: how soon results count what was
// acknowledged, on this machine with client and server together.
const (
	freshUnits           = 300_000 // new units on a fresh database,
	freshEventsPerUnit   = 1.5     // 450,000 events,
	freshTarget          = 120.0   // complete within 120 s of the last acknowledged event
	burstUnits           = 63_000  // a burst of new units,
	burstEventsPerUnit   = 130.0 / 63
	burstTarget          = 15.0 // into a running experiment whose aggregates exist: 15 s,
	burst1mTarget        = 30.0 // on top of 1,000,000 units: 30 s
	freshBaseUnits       = 1_000_000
	sustainedRate        = 20_000 // events/s with lag p99 at most 5 s,
	sustainedLagTarget   = 5.0
	sustainedHighRate    = 50_000 // and the lag bounded, not growing, at 50,000 events/s
	freshnessSenders     = 8      // concurrent clients,
	freshnessBatch       = 1000   // each with one batch of 1,000 events in flight
	freshnessPoll        = 250 * time.Millisecond
	campaignPreShare     = 0.05 // units with a revenue event before exposure
	freshnessProgressGap = 10 * time.Second
)

const benchFreshnessUsage = `usage: flywheel bench freshness [--scenario all|fresh300k|burst|burst1m|sustained[,...]]
                                [--units 300000] [--events 1.5 x units] [--burst-units 63000] [--burst-events 130/63 x burst units]
                                [--base-units 1000000] [--base-events 10 x base units] [--rate 20000,50000] [--duration 3m]
                                [--servers 1] [--timeout 30m] [--verify=true] [--server-log FILE] [--cpuprofile PREFIX] [--json]`

// freshnessScenarios are the scenarios in the order they run: the first
// two share a database, the last two another.
var freshnessScenarios = []string{"fresh300k", "burst", "burst1m", "sustained"}

// freshnessOptions are the flags of `bench freshness`.
type freshnessOptions struct {
	Scenarios   []string      `json:"scenarios"`
	Units       int           `json:"units"`
	Events      int           `json:"events"`
	BurstUnits  int           `json:"burst_units"`
	BurstEvents int           `json:"burst_events"`
	BaseUnits   int           `json:"base_units"`
	BaseEvents  int           `json:"base_events"`
	Rates       []int         `json:"rates"`
	Duration    time.Duration `json:"duration_ns"`
	Servers     int           `json:"servers"`
	Timeout     time.Duration `json:"timeout_ns"`
	Verify      bool          `json:"verify"`
	ServerLog   string        `json:"server_log,omitempty"`
	CPUProfile  string        `json:"-"`
	JSON        bool          `json:"-"`
}

func (o freshnessOptions) wants(s string) bool { return slices.Contains(o.Scenarios, s) }

// sustainedLength is the default length of a sustained run. Near its
// limit the aggregator's cycles grow to 10-20 s, and whether the lag grows
// is judged by the run's thirds: a minute holds too few cycles to tell a
// start-up backlog from a lag that keeps growing (on one host, at 50,000
// events/s on 1,000,000 units, a 1-minute run was judged bounded and a
// 3-minute one growing; BENCHMARKS.md, "One minute is too short").
const sustainedLength = 3 * time.Minute

// busyLimit is the aggregator's share of time in cycles from which a
// sustained run's report cautions that the rate is at its limit. Keeping
// up leaves gaps between cycles: a cycle takes what arrived during the one
// before, so with room to spare the cycles shrink to the interval's.
const busyLimit = 0.95

// issueSize says whether the options are at least the issue's sizes.
func (o freshnessOptions) issueSize() bool {
	return o.Units >= freshUnits && o.BurstUnits >= burstUnits && o.BaseUnits >= freshBaseUnits &&
		slices.Contains(o.Rates, sustainedRate) && slices.Contains(o.Rates, sustainedHighRate) && o.Duration >= sustainedLength
}

// freshnessReport is the whole result; --json prints it as is. Times are in
// seconds or milliseconds as their names say.
type freshnessReport struct {
	Command        string               `json:"command"`
	Date           string               `json:"date"`
	Machine        benchMachine         `json:"machine"`
	Options        freshnessOptions     `json:"options"`
	AggregateEvery float64              `json:"aggregate_every_seconds"`
	UnitIDs        string               `json:"unit_ids"`
	Databases      []*freshnessDatabase `json:"databases"`
	Scenarios      []*freshnessScenario `json:"scenarios"`
	Pass           bool                 `json:"pass"`
}

// freshnessDatabase is one scratch database and what was done to it
// before and after its scenarios.
type freshnessDatabase struct {
	Database  string      `json:"database"`
	Scenarios []string    `json:"scenarios"`
	BaseUnits int         `json:"base_units"` // bulk-loaded by COPY before the first scenario
	Load      *benchLoad  `json:"load,omitempty"`
	Build     *benchBuild `json:"build,omitempty"`
	// The aggregator's cycles from flywheel's start on the database to
	// the end of its last scenario, within and between scenarios.
	Aggregator aggFigures `json:"aggregator"`
	// After the last scenario: the aggregates against a recomputation
	// from raw events (store.VerifyAggregates), unless --verify=false.
	Verified      bool    `json:"verified"`
	VerifyError   string  `json:"verify_error,omitempty"`
	VerifySeconds float64 `json:"verify_seconds"`
}

// freshnessScenario is the outcome of one scenario.
type freshnessScenario struct {
	Name          string         `json:"name"` // fresh300k, burst, burst1m, sustained
	What          string         `json:"what"`
	Target        string         `json:"target"`
	StoredUnits   int64          `json:"stored_units"` // units in results before it
	NewUnits      int64          `json:"new_units"`
	Campaign      *campaignShape `json:"campaign,omitempty"`
	Rate          int            `json:"requested_events_per_second,omitempty"`
	Send          sendFigures    `json:"send"`
	ExpectedUnits int64          `json:"expected_units"` // stored + new
	// Complete: a results answer, requested after the last acknowledged
	// event, said pending_events 0 and units = ExpectedUnits;
	// CompleteSeconds is from the last acknowledged event to that answer.
	Complete        bool        `json:"complete"`
	CompleteSeconds float64     `json:"complete_seconds"`
	ResultsUnits    int64       `json:"results_units"` // of the last answer
	FromAggregates  bool        `json:"from_aggregates"`
	Lag             lagFigures  `json:"lag"`
	Aggregator      aggFigures  `json:"aggregator"`
	Database        dbFigures   `json:"database"`
	Figure          float64     `json:"figure_seconds"` // what the target judges; -1 when never complete
	Pass            bool        `json:"pass"`
	Samples         []lagSample `json:"samples"`
}

type sendFigures struct {
	Events       int64   `json:"events_accepted"`
	Batches      int     `json:"batches"`
	Failed       int     `json:"failed_batches"`
	FirstFailure string  `json:"first_failure,omitempty"`
	Seconds      float64 `json:"seconds"`
	Rate         float64 `json:"events_per_second"`
	PostP50Ms    float64 `json:"post_p50_ms"`
	PostP99Ms    float64 `json:"post_p99_ms"`
}

// lagFigures summarise lag_seconds of the results answers: for a campaign
// from its first event until complete, for a sustained load over the load.
type lagFigures struct {
	Samples     int     `json:"samples"`
	P50         float64 `json:"p50_seconds"`
	P99         float64 `json:"p99_seconds"`
	Max         float64 `json:"max_seconds"`
	PendingMax  int64   `json:"pending_events_max"`
	FirstThird  float64 `json:"first_third_mean_seconds"`
	MiddleThird float64 `json:"middle_third_mean_seconds"`
	LastThird   float64 `json:"last_third_mean_seconds"`
	// Growing: the last third's mean exceeds the middle third's by more
	// than max(1 s, a quarter of it). (The first third holds the ramp from no
	// lag at the start, so it is not compared.)
	Growing      bool    `json:"growing"`
	ResultsP50Ms float64 `json:"results_p50_ms"`
	ResultsP99Ms float64 `json:"results_p99_ms"`
	Errors       int     `json:"failed_results_requests"`
}

// aggFigures are the aggregator's cycles during a scenario (the
// difference of its Prometheus figures before and after).
type aggFigures struct {
	Cycles        float64 `json:"cycles"`
	CycleMeanMs   float64 `json:"cycle_mean_ms"`
	PairsPerCycle float64 `json:"pairs_per_cycle"`
	// Busy is the share of the time between the two figures that the
	// aggregator spent in cycles. Near 1 under a steady load it ran back to
	// back: at its limit, whatever the lag's trend says over a short run.
	Busy  float64     `json:"busy_share,omitempty"`
	Steps []benchStep `json:"steps"`
	// Servers are each server's figures, in the order they started,
	// when --servers is more than 1.
	Servers []serverFigures `json:"servers,omitempty"`
}

// lagSample is one results answer.
type lagSample struct {
	T       float64 `json:"t"` // seconds since the first event was sent
	Lag     float64 `json:"lag_seconds"`
	Pending int64   `json:"pending_events"`
	Units   int64   `json:"units"`
	Ms      float64 `json:"took_ms"`
	Server  int     `json:"server,omitempty"` // which of several servers answered (0: the first)
}

// runBenchFreshness runs `flywheel bench freshness`: how soon GET
// .../results counts events acknowledged by POST /v1/events, for the
// scenarios of issue 13, with flywheel and the clients in this process.
func runBenchFreshness(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o := freshnessOptions{}
	var scenario, rates string
	fs := newFlagSet("bench freshness", stderr)
	fs.StringVar(&scenario, "scenario", "all", "all, or a comma-separated list of fresh300k, burst, burst1m, sustained")
	fs.IntVar(&o.Units, "units", freshUnits, "fresh300k: new units sent to a fresh database (1-10,000,000); burst alone: the units COPYed under it")
	fs.IntVar(&o.Events, "events", 0, "fresh300k: their events (0 = 1.5 per unit, the issue's 450,000 for 300,000)")
	fs.IntVar(&o.BurstUnits, "burst-units", burstUnits, "burst, burst1m: new units in the burst (1-10,000,000)")
	fs.IntVar(&o.BurstEvents, "burst-events", 0, "burst, burst1m: their events (0 = 130/63 per unit, the issue's ~130,000 for 63,000)")
	fs.IntVar(&o.BaseUnits, "base-units", freshBaseUnits, "burst1m, sustained: units bulk-loaded by COPY first (1-50,000,000)")
	fs.IntVar(&o.BaseEvents, "base-events", 0, "burst1m, sustained: their track events, as bench results loads them (0 = 10 per unit, bench results' 10,000,000 for 1,000,000)")
	fs.StringVar(&rates, "rate", fmt.Sprintf("%d,%d", sustainedRate, sustainedHighRate), "sustained: events/s, one run per rate, in order")
	fs.DurationVar(&o.Duration, "duration", sustainedLength, "sustained: length of each run")
	fs.IntVar(&o.Servers, "servers", 1, "flywheel servers on the one database (1-4), the clients spread over them evenly, results read from each in turn")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "how long to wait for complete results after the last acknowledged event")
	fs.BoolVar(&o.Verify, "verify", true, "after each database's scenarios, check the aggregates against a recomputation from raw events")
	fs.StringVar(&o.ServerLog, "server-log", "", "write flywheel's log to FILE at debug level, as JSON lines (each aggregation cycle's steps), with the bench's progress, instead of its warnings to stderr")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of this process (flywheel and the clients) over each sustained run, load and wait, to PREFIX-sustained-r<rate>.pprof")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON document instead of the report")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q\n%s", fs.Arg(0), benchFreshnessUsage)}
	}
	var bad []string
	for s := range strings.SplitSeq(scenario, ",") {
		switch {
		case s == "all":
			o.Scenarios = append(o.Scenarios, freshnessScenarios...)
		case slices.Contains(freshnessScenarios, s):
			o.Scenarios = append(o.Scenarios, s)
		default:
			bad = append(bad, fmt.Sprintf("unknown scenario %q", s))
		}
	}
	// In the order they run, once each.
	o.Scenarios = slices.DeleteFunc(slices.Clone(freshnessScenarios), func(s string) bool { return !slices.Contains(o.Scenarios, s) })
	for r := range strings.SplitSeq(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 || n > 1_000_000 {
			bad = append(bad, "--rate must be events/s from 1 to 1,000,000, separated by commas")
			break
		}
		o.Rates = append(o.Rates, n)
	}
	if o.Events == 0 {
		o.Events = int(math.Round(freshEventsPerUnit * float64(o.Units)))
	}
	if o.BaseEvents == 0 {
		o.BaseEvents = issueEvents / issueUnits * o.BaseUnits
	}
	if o.BurstEvents == 0 {
		o.BurstEvents = int(math.Round(burstEventsPerUnit * float64(o.BurstUnits)))
	}
	switch {
	case o.Units < 1 || o.Units > 10_000_000 || o.BurstUnits < 1 || o.BurstUnits > 10_000_000:
		bad = append(bad, "--units and --burst-units must be 1 to 10,000,000")
	case o.Events < o.Units || o.Events > 4*o.Units || o.BurstEvents < o.BurstUnits || o.BurstEvents > 4*o.BurstUnits:
		bad = append(bad, "--events must be 1 to 4 per unit of --units, --burst-events 1 to 4 per unit of --burst-units")
	case o.BaseUnits < 1 || o.BaseUnits > 50_000_000 || o.BaseEvents < 0 || o.BaseEvents > 1_000_000_000:
		bad = append(bad, "--base-units must be 1 to 50,000,000 and --base-events 1 to 1,000,000,000")
	case len(o.Rates) > 10:
		bad = append(bad, "at most 10 rates")
	case o.Duration <= 0 || o.Duration > time.Hour || o.Timeout <= 0 || o.Timeout > 2*time.Hour:
		bad = append(bad, "--duration must be in (0, 1h] and --timeout in (0, 2h]")
	case o.Servers < 1 || o.Servers > 4:
		bad = append(bad, "--servers must be 1 to 4")
	}
	if len(bad) > 0 {
		return usageError{strings.Join(bad, "; ") + "\n" + benchFreshnessUsage}
	}
	cfg := loadConfig(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	var serverLog *slog.Logger
	if o.ServerLog != "" {
		f, err := os.Create(o.ServerLog)
		if err != nil {
			return err
		}
		defer f.Close()
		serverLog = slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
		progress = func(format string, a ...any) {
			msg := fmt.Sprintf(format, a...)
			fmt.Fprintf(stderr, "bench: %s\n", msg)
			serverLog.Info("bench: " + msg)
		}
	}
	rep := &freshnessReport{Command: strings.Join(append([]string{"flywheel", "bench", "freshness"}, args...), " "),
		Date: time.Now().UTC().Format(time.RFC3339), Machine: currentMachine(), Options: o,
		AggregateEvery: cfg.AggregateEvery.Seconds(), UnitIDs: "raw"}
	if cfg.IDHMACKey != "" {
		rep.UnitIDs = "pseudonymised (FLYWHEEL_ID_HMAC_KEY)"
	}
	out := io.Discard
	if !o.JSON {
		out = stdout
		rep.printHeader(out)
	}

	// The first database: a fresh one for fresh300k, then the burst on top
	// of its units; for the burst alone, --units units COPYed in.
	if o.wants("fresh300k") || o.wants("burst") {
		base, baseEvents := 0, 0
		if !o.wants("fresh300k") {
			base, baseEvents = o.Units, o.Events-o.Units
		}
		err := withFreshnessDB(ctx, cfg, stderr, progress, serverLog, rep, base, baseEvents, func(f *freshnessDB) error {
			if o.wants("fresh300k") {
				sc := &freshnessScenario{Name: "fresh300k", Target: fmt.Sprintf("complete <= %.0f s after the last acknowledged event", freshTarget),
					What: fmt.Sprintf("%d new units of one running experiment, on a fresh database", o.Units)}
				if err := f.campaign(ctx, sc, o.Units, o.Events, freshTarget, o.Timeout); err != nil {
					return err
				}
				rep.add(out, sc)
			}
			if o.wants("burst") {
				sc := &freshnessScenario{Name: "burst", Target: fmt.Sprintf("complete <= %.0f s after the last acknowledged event", burstTarget),
					What: fmt.Sprintf("a burst of %d new units into the running experiment of %d units, whose aggregates exist", o.BurstUnits, f.units)}
				if err := f.campaign(ctx, sc, o.BurstUnits, o.BurstEvents, burstTarget, o.Timeout); err != nil {
					return err
				}
				rep.add(out, sc)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// The second: --base-units units COPYed in and their aggregates built,
	// then the burst, then the sustained loads on top.
	if o.wants("burst1m") || o.wants("sustained") {
		baseEvents := o.BaseEvents
		err := withFreshnessDB(ctx, cfg, stderr, progress, serverLog, rep, o.BaseUnits, baseEvents, func(f *freshnessDB) error {
			if o.wants("burst1m") {
				sc := &freshnessScenario{Name: "burst1m", Target: fmt.Sprintf("complete <= %.0f s after the last acknowledged event", burst1mTarget),
					What: fmt.Sprintf("the same burst of %d new units on top of %d bulk-loaded units", o.BurstUnits, f.units)}
				if err := f.campaign(ctx, sc, o.BurstUnits, o.BurstEvents, burst1mTarget, o.Timeout); err != nil {
					return err
				}
				rep.add(out, sc)
			}
			if o.wants("sustained") {
				for _, rate := range o.Rates {
					target := "lag bounded, not growing (mean of the run's last third <= middle third's + max(1 s, a quarter of it)), all offered events accepted"
					if rate <= sustainedRate {
						target = fmt.Sprintf("lag p99 <= %.0f s over the run, all offered events accepted", sustainedLagTarget)
					}
					sc := &freshnessScenario{Name: "sustained", Rate: rate, Target: target,
						What: fmt.Sprintf("%d events/s for %v, mixed exposures of new units and tracks of the %d stored ones", rate, o.Duration, f.units)}
					stopProfile, err := startProfile(o.CPUProfile, "sustained", rate)
					if err != nil {
						return err
					}
					err = f.sustained(ctx, sc, rate, o.Duration, o.Timeout)
					stopProfile()
					if err != nil {
						return err
					}
					rep.add(out, sc)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	rep.Pass = len(rep.Scenarios) > 0
	for _, sc := range rep.Scenarios {
		rep.Pass = rep.Pass && sc.Pass
	}
	for _, d := range rep.Databases {
		rep.Pass = rep.Pass && (d.Verified || !o.Verify)
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.printSummary(out)
	return nil
}

// freshnessDB is a scratch database with flywheel running on it, its
// background aggregator on: one server, or several (--servers).
type freshnessDB struct {
	env      *benchEnv
	a        *app.App // the first server's
	url      string
	servers  []freshnessServer // the first is a, url
	load     *http.Client      // the senders'
	poll     *http.Client      // the results poller's
	units    int64             // analysed units in results now
	next     int               // unit ids c-0 .. c-<next-1> are taken
	progress func(string, ...any)
}

// freshnessServer is one flywheel server of a freshnessDB, with the
// registry its aggregator's figures are read from.
type freshnessServer struct {
	a   *app.App
	url string
	reg *prometheus.Registry
}

// regs returns the servers' registries.
func (f *freshnessDB) regs() []*prometheus.Registry {
	regs := make([]*prometheus.Registry, len(f.servers))
	for i, s := range f.servers {
		regs[i] = s.reg
	}
	return regs
}

// withFreshnessDB gets a scratch database, loads base units (and their
// baseEvents track events) by COPY and builds their aggregates when base >
// 0, else defines the experiment and builds its empty aggregates; then
// starts flywheel with its aggregator on, runs fn, verifies the
// aggregates and removes everything.
func withFreshnessDB(ctx context.Context, cfg config, stderr io.Writer, progress func(string, ...any), serverLog *slog.Logger, rep *freshnessReport,
	base, baseEvents int, fn func(*freshnessDB) error) error {
	env := &benchEnv{progress: progress, serverLog: serverLog}
	defer env.close()
	appCfg, err := openAppEnv(ctx, cfg, env, stderr)
	if err != nil {
		return err
	}
	d := &freshnessDatabase{Database: env.dbDesc, BaseUnits: base}
	rep.Databases = append(rep.Databases, d)
	if base > 0 {
		// As bench results: the rows COPYed in bypass the aggregation
		// queue, so they are loaded with the aggregator off and taken in by
		// one build.
		off := appCfg
		off.AggregateEvery = -1
		a, url, stop, err := startApp(ctx, off)
		if err != nil {
			return err
		}
		err = defineResultsExperiment(ctx, env, url)
		if err == nil {
			var l benchLoad
			l, err = loadResultsData(ctx, env, a, cfg.IDHMACKey, base, baseEvents)
			d.Load = &l
		}
		if err == nil {
			var b benchBuild
			b, err = buildAggregates(ctx, env, a)
			d.Build = &b
		}
		stop()
		if err != nil {
			return err
		}
	}
	appCfg.Registry = prometheus.NewRegistry() // read by aggregatorFigures
	a, url, stop, err := startApp(ctx, appCfg)
	if err != nil {
		return err
	}
	defer stop()
	f := &freshnessDB{env: env, a: a, url: url, servers: []freshnessServer{{a, url, appCfg.Registry}}, progress: progress, next: base,
		load: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: freshnessSenders + 1}}, poll: &http.Client{}}
	if base == 0 {
		if err := defineResultsExperiment(ctx, env, url); err != nil {
			return err
		}
		// What the background aggregator does within a cycle of the
		// experiment's creation: build its (empty) aggregates, so that
		// results read them from the first event.
		if err := a.Aggregate(ctx); err != nil {
			return err
		}
	}
	// The other servers start once the experiment exists, and load it
	// with the rest of their configuration (a server started before
	// would learn of it by NOTIFY, and reject its exposures until then).
	// The first leads aggregation, from a cycle it runs before they
	// start, and the others defer to it (store.DB.AggregationLed).
	if rep.Options.Servers > 1 {
		if err := a.Aggregate(ctx); err != nil {
			return err
		}
	}
	for range rep.Options.Servers - 1 {
		c := appCfg
		c.Registry = prometheus.NewRegistry()
		a, url, stop, err := startApp(ctx, c)
		if err != nil {
			return err
		}
		defer stop()
		f.servers = append(f.servers, freshnessServer{a, url, c.Registry})
	}
	if n := len(f.servers); n > 1 {
		progress("%d servers on the database; the clients spread over them", n)
	}
	_, doc, err := getResults(ctx, f.poll, url, env.adminKey)
	if err != nil {
		return err
	}
	if doc.PendingEvents != 0 || doc.Units != int64(base) {
		return fmt.Errorf("bench: before the first scenario results say %d units, %d pending events; want %d, 0", doc.Units, doc.PendingEvents, base)
	}
	f.units = doc.Units
	startScenarios := len(rep.Scenarios)
	if err := fn(f); err != nil {
		return err
	}
	d.Aggregator = aggSnapshot(f.regs()...).since(aggState{})
	for _, sc := range rep.Scenarios[startScenarios:] {
		d.Scenarios = append(d.Scenarios, sc.title())
	}
	if rep.Options.Verify {
		progress("verifying the aggregates against a recomputation from raw events")
		t0 := time.Now()
		// Fold in whatever a scenario that timed out left queued.
		if err := a.Aggregate(ctx); err != nil {
			return err
		}
		e, metrics, err := benchExperiment(ctx, a)
		if err != nil {
			return err
		}
		if err := a.DB.VerifyAggregates(ctx, e, metrics, analysis.Query{Now: time.Now().UTC(), Overrides: []string{}}); err != nil {
			d.VerifyError = err.Error()
		} else {
			d.Verified = true
		}
		d.VerifySeconds = time.Since(t0).Seconds()
	}
	return nil
}

// campaign sends n new units and their events (a campaignShape for
// events in all) as fast as the server takes them, and measures how soon
// results are complete after the last acknowledged event.
func (f *freshnessDB) campaign(ctx context.Context, sc *freshnessScenario, n, events int, target float64, timeout time.Duration) error {
	c := newCampaign(f.next, n, events)
	f.next += n
	sc.StoredUnits, sc.NewUnits, sc.Campaign = f.units, int64(n), &c.shape
	sc.ExpectedUnits = f.units + int64(n)
	f.progress("%s: sending %d new units, %d events (%d clients x %d-event batches)", sc.Name, n, c.shape.Events, freshnessSenders, freshnessBatch)
	before, db := aggSnapshot(f.regs()...), watchDB(ctx, f.a.DB.Pool())
	load, p := f.run(ctx, sc, loadShape{Senders: freshnessSenders, Batch: freshnessBatch}, func(int) ([]byte, int) { return c.next(freshnessBatch) },
		func() int64 { return sc.ExpectedUnits }, timeout)
	f.finish(ctx, sc, load, p, before, db)
	sc.Lag = lagOf(sc.Samples, math.Inf(1))
	sc.Figure = sc.CompleteSeconds
	if !sc.Complete {
		sc.Figure = -1
	}
	sc.Pass = sc.Complete && sc.Send.Failed == 0 && sc.Send.Events == int64(c.shape.Events) && sc.CompleteSeconds <= target
	return ctx.Err()
}

// sustained sends bench results' keep-up mix (4% exposures of new units,
// the rest purchases and revenue of stored units) at rate events/s for d,
// sampling the results' lag every 250 ms, then waits for them to be
// complete.
func (f *freshnessDB) sustained(ctx context.Context, sc *freshnessScenario, rate int, d, timeout time.Duration) error {
	sc.StoredUnits = f.units
	f.progress("%s: %d events/s for %v (%d clients x %d-event batches)", sc.Name, rate, d, freshnessSenders, freshnessBatch)
	rngs := make([]*rand.Rand, freshnessSenders)
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
	}
	var newUnits atomic.Int64
	stored := f.next
	before, db := aggSnapshot(f.regs()...), watchDB(ctx, f.a.DB.Pool())
	load, p := f.run(ctx, sc, loadShape{Senders: freshnessSenders, Batch: freshnessBatch, Rate: rate, Duration: d},
		func(w int) ([]byte, int) {
			return keepUpBatch(rngs[w], stored, freshnessBatch, &newUnits), freshnessBatch
		},
		func() int64 {
			sc.NewUnits = newUnits.Load()
			sc.ExpectedUnits = f.units + sc.NewUnits
			return sc.ExpectedUnits
		}, timeout)
	f.next += int(newUnits.Load())
	f.finish(ctx, sc, load, p, before, db)
	// The schedule spans d, even when its last batch was answered before.
	sc.Send.Rate = float64(sc.Send.Events) / max(sc.Send.Seconds, d.Seconds())
	sc.Lag = lagOf(sc.Samples, sc.Send.Seconds)
	sc.Figure = sc.Lag.P99
	offered := float64(rate) * d.Seconds()
	sc.Pass = sc.Complete && sc.Send.Failed == 0 && float64(sc.Send.Events) >= 0.999*offered
	if rate <= sustainedRate {
		sc.Pass = sc.Pass && sc.Lag.P99 <= sustainedLagTarget
	} else {
		sc.Figure = sc.Lag.LastThird
		sc.Pass = sc.Pass && !sc.Lag.Growing
	}
	return ctx.Err()
}

// run sends a load while a poller reads results every 250 ms, then waits
// until the poller sees complete results (expect() units, read once the
// load is over, and no pending event) or gives up timeout after the last
// acknowledged event.
func (f *freshnessDB) run(ctx context.Context, sc *freshnessScenario, s loadShape, next func(int) ([]byte, int), expect func() int64, timeout time.Duration) (*loadStats, *resultsPoller) {
	start := time.Now()
	bases := make([]string, len(f.servers))
	for i, srv := range f.servers {
		bases[i] = srv.url
	}
	p := startPoller(ctx, f.poll, bases, f.env.adminKey, start, timeout)
	var load *loadStats
	var handed atomic.Int64 // events handed to the clients
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		urls := make([]string, len(f.servers))
		for i, srv := range f.servers {
			urls[i] = srv.url + "/v1/events"
		}
		load = sendLoad(ctx, f.load, urls, f.env.sdkKey, s, func(w int) ([]byte, int) {
			b, n := next(w)
			handed.Add(int64(n))
			return b, n
		})
	}()
	tick := time.NewTicker(freshnessProgressGap)
	defer tick.Stop()
	for {
		select {
		case <-sent:
			last := load.LastAck
			if last.IsZero() {
				last = time.Now()
			}
			f.progress("%s: %d events accepted in %.1fs (%.0f/s), %d failed batches; waiting for complete results",
				sc.Name, load.Accepted.Load(), load.Seconds, float64(load.Accepted.Load())/load.Seconds, load.Failed)
			p.acked <- ackInfo{at: last, units: expect()}
			sent = nil
		case <-p.done: // complete, timed out, or ctx ended
			if sent != nil {
				<-sent
			}
			return load, p
		case <-tick.C:
			phase := fmt.Sprintf("sending (%d events sent)", handed.Load())
			if sent == nil {
				phase = "waiting for complete results"
			}
			if s, ok := p.last(); ok {
				f.progress("%s: %s, %.0fs: results lag %.1fs, %d pending events, %d units", sc.Name, phase, time.Since(start).Seconds(), s.Lag, s.Pending, s.Units)
			} else {
				f.progress("%s: %s, %.0fs: no results answer yet", sc.Name, phase, time.Since(start).Seconds())
			}
		}
	}
}

// finish fills in what the load sent, what the poller saw and what the
// aggregator and the database did.
func (f *freshnessDB) finish(ctx context.Context, sc *freshnessScenario, load *loadStats, p *resultsPoller, before aggState, db *dbWatch) {
	sc.Send = sendFigures{Events: load.Accepted.Load(), Batches: load.Batches, Failed: load.Failed, FirstFailure: load.FirstFailure,
		Seconds: load.Seconds, PostP50Ms: ms(quantile(load.Posts, 0.50)), PostP99Ms: ms(quantile(load.Posts, 0.99))}
	if load.Seconds > 0 {
		sc.Send.Rate = float64(sc.Send.Events) / load.Seconds
	}
	sc.Samples = p.samples
	if !p.complete.IsZero() {
		sc.Complete = true
		sc.CompleteSeconds = max(0, p.complete.Sub(p.ack.at).Seconds())
	}
	if n := len(p.samples); n > 0 {
		sc.ResultsUnits = p.samples[n-1].Units
	}
	// The cycle that completed the results may still be running (its
	// definitions' folds come after the results count everything), or
	// not have recorded its figures yet: wait until it has.
	for _, srv := range f.servers {
		srv.a.CycleRecorded()
	}
	sc.Aggregator = aggSnapshot(f.regs()...).since(before)
	sc.Database = db.end(ctx)
	if sc.Complete {
		f.units = sc.ResultsUnits
		f.progress("%s: complete %.1fs after the last acknowledged event", sc.Name, sc.CompleteSeconds)
	} else {
		f.progress("%s: NOT complete %v after the last acknowledged event (results: %d units of %d)", sc.Name, p.timeout, sc.ResultsUnits, sc.ExpectedUnits)
	}
	var defs int
	if err := f.a.DB.Pool().QueryRow(ctx, `SELECT count(*) FROM agg_defs WHERE experiment = $1`, resultsExperiment).Scan(&defs); err == nil {
		sc.FromAggregates = defs == 3 // the units and both metrics
	}
}

// ackInfo tells the poller the load is over: the last acknowledged event
// and the units complete results must count.
type ackInfo struct {
	at    time.Time
	units int64
}

// resultsPoller reads results every 250 ms from the start of a load and
// records each answer; once told the load is over (acked), it stops at the
// first complete answer requested after the last acknowledged event, or
// timeout after it.
type resultsPoller struct {
	start   time.Time
	timeout time.Duration
	acked   chan ackInfo
	done    chan struct{}

	mu       sync.Mutex
	samples  []lagSample
	took     []time.Duration
	errors   int
	ack      ackInfo
	complete time.Time // when the first complete answer arrived; zero if none
}

func startPoller(ctx context.Context, client *http.Client, bases []string, key string, start time.Time, timeout time.Duration) *resultsPoller {
	p := &resultsPoller{start: start, timeout: timeout, acked: make(chan ackInfo, 1), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		acked := false
		for n := 0; ctx.Err() == nil; n++ {
			t0 := time.Now()
			server := n % len(bases)
			d, doc, err := getResults(ctx, client, bases[server], key)
			p.mu.Lock()
			if err != nil {
				p.errors++
			} else {
				p.samples = append(p.samples, lagSample{T: t0.Sub(start).Seconds(), Lag: doc.LagSeconds, Pending: doc.PendingEvents, Units: doc.Units, Ms: ms(d), Server: server})
				p.took = append(p.took, d)
			}
			p.mu.Unlock()
			if acked && err == nil && !t0.Before(p.ack.at) && doc.PendingEvents == 0 && doc.Units == p.ack.units {
				p.complete = t0.Add(d)
				return
			}
			if acked && time.Since(p.ack.at) > timeout {
				return
			}
			wait := time.NewTimer(time.Until(t0.Add(freshnessPoll)))
			select {
			case <-ctx.Done():
			case p.ack = <-p.acked:
				acked = true
			case <-wait.C:
			}
			wait.Stop()
		}
	}()
	return p
}

// last returns the latest answer.
func (p *resultsPoller) last() (lagSample, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.samples) == 0 {
		return lagSample{}, false
	}
	return p.samples[len(p.samples)-1], true
}

// lagOf summarises the samples up to until seconds (all of them for +Inf);
// the thirds are of that span.
func lagOf(samples []lagSample, until float64) lagFigures {
	var l lagFigures
	var lags []float64
	var took []time.Duration
	end := 0.0
	for _, s := range samples {
		if s.T > until {
			break
		}
		lags = append(lags, s.Lag)
		took = append(took, time.Duration(s.Ms*float64(time.Millisecond)))
		l.PendingMax = max(l.PendingMax, s.Pending)
		end = s.T
	}
	if math.IsInf(until, 1) {
		until = end
	}
	var thirds [3][]float64
	for _, s := range samples[:len(lags)] {
		i := 0
		if until > 0 {
			i = min(2, int(3*s.T/until))
		}
		thirds[i] = append(thirds[i], s.Lag)
	}
	l.FirstThird, l.MiddleThird, l.LastThird = mean(thirds[0]), mean(thirds[1]), mean(thirds[2])
	l.Growing = l.LastThird > l.MiddleThird+max(1, l.MiddleThird/4)
	l.Samples = len(lags)
	slices.Sort(lags)
	if n := len(lags); n > 0 {
		l.P50, l.P99, l.Max = lags[(n-1)/2], lags[min(n-1, int(math.Ceil(0.99*float64(n)))-1)], lags[n-1]
	}
	l.ResultsP50Ms, l.ResultsP99Ms = ms(quantile(took, 0.50)), ms(quantile(took, 0.99))
	return l
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// aggState is the aggregator's cumulative figures at one moment, summed
// over the servers whose registries it was read from.
type aggState struct {
	at                     time.Time
	cycles, seconds, pairs float64
	steps                  []benchStep
	servers                []serverFigures // each server's, when there are several
}

// serverFigures are what one of several servers did: the events it
// accepted, the aggregation cycles it ran, and its background ticks that
// deferred to another server leading aggregation, or found the
// aggregation lock held (a cycle of the leader's running past the
// takeover time, store.DB.AggregationLed).
type serverFigures struct {
	Events   float64 `json:"events_accepted"`
	Cycles   float64 `json:"cycles"`
	Deferred float64 `json:"deferred"`
	Skipped  float64 `json:"skipped"`
}

func aggSnapshot(regs ...*prometheus.Registry) aggState {
	s := aggState{at: time.Now()}
	for _, reg := range regs {
		mfs, _ := reg.Gather() // on an error, what it could gather
		cycles, seconds, pairs, steps := aggregatorFiguresOf(mfs)
		s.cycles, s.seconds, s.pairs = s.cycles+cycles, s.seconds+seconds, s.pairs+pairs
		for _, st := range steps {
			if i := slices.IndexFunc(s.steps, func(b benchStep) bool { return b.Name == st.Name }); i >= 0 {
				s.steps[i].Count += st.Count
				s.steps[i].TotalMs += st.TotalMs
			} else {
				s.steps = append(s.steps, st)
			}
		}
		if len(regs) > 1 {
			s.servers = append(s.servers, serverFigures{Events: counterSumOf(mfs, "flywheel_events_total", "outcome", "accepted"),
				Cycles: cycles, Deferred: counterSumOf(mfs, "flywheel_aggregate_cycles_total", "outcome", "deferred"),
				Skipped: counterSumOf(mfs, "flywheel_aggregate_cycles_total", "outcome", "skipped")})
		}
	}
	slices.SortFunc(s.steps, func(a, b benchStep) int {
		return slices.Index(store.StepNames, a.Name) - slices.Index(store.StepNames, b.Name)
	})
	return s
}

// since returns what the aggregator did between before and s.
func (s aggState) since(before aggState) aggFigures {
	var a aggFigures
	a.Cycles = s.cycles - before.cycles
	if a.Cycles > 0 {
		a.CycleMeanMs = 1000 * (s.seconds - before.seconds) / a.Cycles
		a.PairsPerCycle = (s.pairs - before.pairs) / a.Cycles
	}
	if !before.at.IsZero() {
		if wall := s.at.Sub(before.at).Seconds(); wall > 0 {
			a.Busy = (s.seconds - before.seconds) / wall
		}
	}
	for i, sv := range s.servers {
		if i < len(before.servers) {
			b := before.servers[i]
			sv.Events, sv.Cycles, sv.Deferred, sv.Skipped = sv.Events-b.Events, sv.Cycles-b.Cycles, sv.Deferred-b.Deferred, sv.Skipped-b.Skipped
		}
		a.Servers = append(a.Servers, sv)
	}
	for _, st := range s.steps {
		for _, b := range before.steps {
			if b.Name == st.Name {
				st.Count -= b.Count
				st.TotalMs -= b.TotalMs
			}
		}
		if st.Count == 0 {
			continue
		}
		st.MeanMs = st.TotalMs / float64(st.Count)
		a.Steps = append(a.Steps, st)
	}
	return a
}

// campaignShape is what an e-mail campaign replay sends.
type campaignShape struct {
	Units       int `json:"units"`
	Exposures   int `json:"exposures"`
	Conversions int `json:"conversions"`          // units with a purchase and a revenue event after exposure
	PreExposure int `json:"pre_exposure_revenue"` // units with a revenue event 1 to 20 h before exposure
	Events      int `json:"events"`
}

// campaign generates an e-mail campaign replay: units c-<from> to
// c-<from+n-1>, each exposed once (variant and platform attribute by hash,
// as copyExposures draws them); a share of them convert, with a purchase
// and a revenue event (the value) a second after exposure; a share have
// one revenue event 1 to 20 h before it (CUPED's pre-period). The shares
// make about events in all: 5% pre-exposure, the rest conversions. Events
// go out unit by unit, each with a UUIDv7 and its timestamp.
type campaign struct {
	from, n      int
	pre, convert uint64 // shares, out of 1<<16
	shape        campaignShape

	mu   sync.Mutex
	unit int // next unit, from 0
	step int // next of its events
}

func newCampaign(from, n, events int) *campaign {
	perUnit := float64(events)/float64(n) - 1
	pre := min(campaignPreShare, perUnit)
	conv := min(1, max(0, (perUnit-pre)/2))
	c := &campaign{from: from, n: n, pre: uint64(math.Round(pre * (1 << 16))), convert: uint64(math.Round(conv * (1 << 16)))}
	c.shape.Units, c.shape.Exposures = n, n
	for i := range n {
		p, cv := c.kinds(i)
		c.shape.PreExposure += btoi(p)
		c.shape.Conversions += btoi(cv)
	}
	c.shape.Events = c.shape.Exposures + c.shape.PreExposure + 2*c.shape.Conversions
	return c
}

// kinds says whether unit i has a pre-exposure event and converts.
func (c *campaign) kinds(i int) (pre, convert bool) {
	h := mix(uint64(c.from + i))
	return h&0xffff < c.pre, (h>>16)&0xffff < c.convert
}

// next returns the body of the next batch of at most size events and their
// number; nil when every event has been handed out.
func (c *campaign) next(size int) ([]byte, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unit >= c.n {
		return nil, 0
	}
	now := time.Now().UTC()
	b := make([]byte, 0, 260*size)
	b = append(b, `{"events":[`...)
	k := 0
	for ; k < size && c.unit < c.n; k++ {
		pre, conv := c.kinds(c.unit)
		u := c.from + c.unit
		h := mix(uint64(u))
		// The unit's events in order: [pre-exposure revenue], exposure,
		// [purchase, revenue].
		kinds := [4]bool{pre, true, conv, conv}
		for !kinds[c.step] {
			c.step++
		}
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = append(b, uuid.Must(uuid.NewV7()).String()...)
		b = append(b, `","unit_type":"customer","unit_id":"c-`...)
		b = strconv.AppendInt(b, int64(u), 10)
		ts := now
		switch c.step {
		case 0:
			ts = now.Add(-time.Hour - time.Duration((h>>32)%(19*3600))*time.Second)
			b = appendRevenue(b, h)
		case 1:
			ts = now.Add(-time.Second)
			b = append(b, `","type":"exposure","experiment":"`+resultsExperiment+`","variant":"`...)
			b = append(b, benchVariants[h>>63]...)
			b = append(b, `","attributes":{"platform":"`...)
			b = append(b, benchPlatforms[(h>>40)%3]...)
			b = append(b, `"}`...)
		case 2:
			b = append(b, `","type":"track","event":"purchase"`...)
		case 3:
			b = appendRevenue(b, mix(h))
		}
		b = append(b, `,"timestamp":"`...)
		b = ts.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
		// Move on to the unit's next event, or the next unit.
		for c.step++; c.step < 4 && !kinds[c.step]; c.step++ {
		}
		if c.step == 4 {
			c.unit, c.step = c.unit+1, 0
		}
	}
	return append(b, "]}"...), k
}

// appendRevenue appends the middle of a revenue event with a value drawn
// from h (exponential, mean 40).
func appendRevenue(b []byte, h uint64) []byte {
	u := (float64(h>>11) + 0.5) / (1 << 53)
	b = append(b, `","type":"track","event":"revenue","value":`...)
	return strconv.AppendFloat(b, math.Round(-math.Log(u)*4000)/100, 'f', -1, 64)
}

// add records a finished scenario and prints it.
func (r *freshnessReport) add(w io.Writer, sc *freshnessScenario) {
	r.Scenarios = append(r.Scenarios, sc)
	sc.print(w)
}

func (r *freshnessReport) printHeader(w io.Writer) {
	m, o := r.Machine, r.Options
	fmt.Fprintf(w, "flywheel bench freshness: how soon results count acknowledged events (issue 13)\n")
	fmt.Fprintf(w, "command:  %s\n", r.Command)
	fmt.Fprintf(w, "date:     %s\n", r.Date)
	fmt.Fprintf(w, "machine:  %d CPUs (%s), GOMAXPROCS %d, %s %s; flywheel and the clients in this process\n", m.CPUs, m.CPUModel, m.GOMAXPROCS, m.Go, m.OS)
	fmt.Fprintf(w, "load:     POST /v1/events, %d concurrent clients, batches of %d events, UUIDv7 ids; aggregator every %gs\n", freshnessSenders, freshnessBatch, r.AggregateEvery)
	if o.Servers > 1 {
		fmt.Fprintf(w, "servers:  %d flywheel servers on one database, in this process; the clients spread over them evenly, results read from each in turn\n", o.Servers)
	}
	fmt.Fprintf(w, "data:     experiment %s (customer, 2 variants), metrics purchase (conversion, 168 h) and revenue (mean, CUPED 336 h, cap 500); unit ids %s\n", resultsExperiment, r.UnitIDs)
	fmt.Fprintf(w, "complete: GET .../results (polled every %v) answers pending_events 0 and units = the units sent (plus those stored), requested after the last acknowledged event\n", freshnessPoll)
	fmt.Fprintf(w, "scenarios: %s\n", strings.Join(o.Scenarios, ", "))
	if !o.issueSize() {
		fmt.Fprintf(w, "note:     smaller than the issue's sizes (--units %d --burst-units %d --base-units %d --rate %d,%d --duration %v): the verdicts do not answer it\n",
			freshUnits, burstUnits, freshBaseUnits, sustainedRate, sustainedHighRate, sustainedLength)
	}
}

func (sc *freshnessScenario) title() string {
	if sc.Rate > 0 {
		return fmt.Sprintf("%s %d/s", sc.Name, sc.Rate)
	}
	return sc.Name
}

func (sc *freshnessScenario) print(w io.Writer) {
	s, l, a := sc.Send, sc.Lag, sc.Aggregator
	fmt.Fprintf(w, "\n%s: %s\n", sc.title(), sc.What)
	fmt.Fprintf(w, "  sent         %d events accepted in %.1fs (%.0f events/s), %d batches, %d failed; POST p50 %.0fms p99 %.0fms\n",
		s.Events, s.Seconds, s.Rate, s.Batches, s.Failed, s.PostP50Ms, s.PostP99Ms)
	if c := sc.Campaign; c != nil {
		fmt.Fprintf(w, "               of %d: %d exposures, %d conversions (purchase + revenue), %d pre-exposure revenue events\n",
			c.Events, c.Exposures, c.Conversions, c.PreExposure)
	} else {
		fmt.Fprintf(w, "               4%% exposures of %d new units, 96%% purchases and revenue of stored units (bench results' keep-up mix)\n", sc.NewUnits)
	}
	if s.FirstFailure != "" {
		fmt.Fprintf(w, "  first failure: %s\n", s.FirstFailure)
	}
	from := "from the aggregates"
	if !sc.FromAggregates {
		from = "aggregates NOT built: results recomputed from raw events"
	}
	if sc.Complete {
		fmt.Fprintf(w, "  complete     %.1fs after the last acknowledged event: %d units (%d + %d new), pending_events 0, %s\n",
			sc.CompleteSeconds, sc.ResultsUnits, sc.StoredUnits, sc.NewUnits, from)
	} else {
		fmt.Fprintf(w, "  NOT complete within the timeout after the last acknowledged event: last answer %d units of %d\n", sc.ResultsUnits, sc.ExpectedUnits)
	}
	over := "from the first event until complete"
	if sc.Rate > 0 {
		over = "over the run"
	}
	fmt.Fprintf(w, "  lag          %d samples %s: p50 %.1fs  p99 %.1fs  max %.1fs; pending max %d events; GET results p50 %.0fms p99 %.0fms\n",
		l.Samples, over, l.P50, l.P99, l.Max, l.PendingMax, l.ResultsP50Ms, l.ResultsP99Ms)
	if sc.Rate > 0 {
		trend := "bounded"
		if l.Growing {
			trend = "GROWING"
		}
		fmt.Fprintf(w, "  trend        mean lag by third of the run %.1fs, %.1fs, %.1fs: %s\n", l.FirstThird, l.MiddleThird, l.LastThird, trend)
	}
	fmt.Fprintf(w, "  lag curve    %s\n", lagCurve(sc.Samples, 10))
	fmt.Fprintf(w, "  aggregator   %.0f cycles, mean %.0fms, %.0f units recomputed each; in cycles %.0f%% of the time\n",
		a.Cycles, a.CycleMeanMs, a.PairsPerCycle, 100*a.Busy)
	if len(a.Servers) > 0 {
		var events, ran, deferred, skipped []string
		for _, sv := range a.Servers {
			events, ran = append(events, fmt.Sprintf("%.0f", sv.Events)), append(ran, fmt.Sprintf("%.0f", sv.Cycles))
			deferred, skipped = append(deferred, fmt.Sprintf("%.0f", sv.Deferred)), append(skipped, fmt.Sprintf("%.0f", sv.Skipped))
		}
		fmt.Fprintf(w, "  servers      by server: events accepted %s; cycles run %s; ticks deferred to the leader %s, finding the lock held %s\n",
			strings.Join(events, " · "), strings.Join(ran, " · "), strings.Join(deferred, " · "), strings.Join(skipped, " · "))
	}
	for _, st := range a.Steps {
		fmt.Fprintf(w, "    step %-13s %5d times, mean %7.0fms, total %8.0fms\n", st.Name, st.Count, st.MeanMs, st.TotalMs)
	}
	fmt.Fprintf(w, "  database     %s\n", sc.Database)
	if sc.Rate > 0 && a.Busy >= busyLimit {
		fmt.Fprintf(w, "  CAUTION      the aggregator ran back to back (%.0f%% of the time): this rate is at or past its limit here;\n"+
			"               a longer --duration tells whether the lag keeps growing\n", 100*a.Busy)
	}
	fig := fmt.Sprintf("%6.1f s", sc.Figure)
	if sc.Figure < 0 {
		fig = "     n/a"
	}
	fmt.Fprintf(w, "  target       %s: %s  %s\n", sc.Target, fig, pass(sc.Pass))
}

// lagCurve prints about n samples evenly spread in time: "t: lag".
func lagCurve(samples []lagSample, n int) string {
	if len(samples) == 0 {
		return "(no samples)"
	}
	end := samples[len(samples)-1].T
	prec := 0 // digits of the times
	if end < 20 {
		prec = 1
	}
	var parts []string
	j := 0
	for k := range n {
		at := end * float64(k) / float64(n-1)
		for j < len(samples)-1 && samples[j].T < at {
			j++
		}
		parts = append(parts, fmt.Sprintf("%.*fs: %.1f", prec, samples[j].T, samples[j].Lag))
	}
	return strings.Join(slices.Compact(parts), " | ") + "  (seconds since the first event: lag_seconds)"
}

func (r *freshnessReport) printSummary(w io.Writer) {
	fmt.Fprintf(w, "\nsummary (targets of issue 13):\n")
	fmt.Fprintf(w, "  %-16s %12s %10s %10s  %-40s %s\n", "scenario", "units before", "new units", "events", "figure", "result")
	for _, sc := range r.Scenarios {
		fig := fmt.Sprintf("complete %.1fs after the last event", sc.CompleteSeconds)
		switch {
		case !sc.Complete:
			fig = "NOT complete"
		case sc.Rate > 0 && sc.Rate <= sustainedRate:
			fig = fmt.Sprintf("lag p99 %.1fs, max %.1fs", sc.Lag.P99, sc.Lag.Max)
		case sc.Rate > 0:
			fig = fmt.Sprintf("lag thirds %.1fs %.1fs %.1fs, p99 %.1fs", sc.Lag.FirstThird, sc.Lag.MiddleThird, sc.Lag.LastThird, sc.Lag.P99)
		}
		fmt.Fprintf(w, "  %-16s %12d %10d %10d  %-40s %s\n", sc.title(), sc.StoredUnits, sc.NewUnits, sc.Send.Events, fig, pass(sc.Pass))
	}
	for _, d := range r.Databases {
		if d.Load != nil {
			fmt.Fprintf(w, "  base of %s: COPY %d units and %d events in %.1fs, VACUUM ANALYZE %.1fs; build %.1fs\n",
				strings.Join(d.Scenarios, ", "), d.Load.Exposures, d.Load.Events, d.Load.Seconds, d.Load.VacuumSeconds, d.Build.BuildSeconds)
		}
		if r.Options.Verify {
			v := pass(d.Verified)
			if d.VerifyError != "" {
				v += ": " + d.VerifyError
			}
			fmt.Fprintf(w, "  aggregates = recomputation after %s (%.1fs)  %s\n", strings.Join(d.Scenarios, ", "), d.VerifySeconds, v)
		}
	}
	fmt.Fprintf(w, "result: %s\n", pass(r.Pass))
}
