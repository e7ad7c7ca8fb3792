package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/store"
)

// The targets of the issue for results: at 1,000,000 exposed units and
// 10,000,000 track events, results p50 at most 200 ms and at least 20x
// faster than the plain recomputation from raw events, measured in the same
// run; the aggregates keep up with 20,000 events/s with at most 10 s of lag.
const (
	resultsP50TargetMs = 200
	resultsRatioTarget = 20
	timeseriesTargetMs = 300 // issue 13, item 4
	keepUpRateTarget   = 20_000
	keepUpLagTarget    = 10.0 // seconds
	issueUnits         = 1_000_000
	issueEvents        = 10_000_000
)

const benchResultsUsage = `usage: flywheel bench results [--units 1000000] [--events 10000000] [--requests 50] [--recomputes 3]
                              [--rate 20000] [--duration 60s] [--json]`

// The shape of the bench: one experiment, its data, and the keep-up load
// (senders each with one batch in flight, paced to --rate together).
const (
	resultsExperiment = "bench-results"
	resultsSenders    = 8
	resultsBatch      = 500
	copyWorkers       = 4
	exposureDays      = 14 // exposures spread over the last 14 days,
	eventDays         = 28 // events over the last 28 (pre-period events for CUPED)
	maxDrain          = 10 * time.Minute
)

// resultsOptions are the flags of `bench results`.
type resultsOptions struct {
	Units      int           `json:"units"`
	Events     int           `json:"events"`
	Requests   int           `json:"requests"`
	Recomputes int           `json:"recomputes"`
	Rate       int           `json:"rate"`
	Duration   time.Duration `json:"duration_ns"`
	JSON       bool          `json:"-"`
}

// resultsReport is the whole result; --json prints it as is. Durations are
// in milliseconds or seconds as their names say.
type resultsReport struct {
	Command  string         `json:"command"`
	Date     string         `json:"date"`
	Machine  benchMachine   `json:"machine"`
	Options  resultsOptions `json:"options"`
	Database string         `json:"database"`
	UnitIDs  string         `json:"unit_ids"`
	Load     benchLoad      `json:"load"`
	benchBuild
	Read struct {
		Requests       int               `json:"requests"`
		ResultsUnits   int64             `json:"results_units"`
		ResultsP50Ms   float64           `json:"results_p50_ms"`
		ResultsP99Ms   float64           `json:"results_p99_ms"`
		StoreP50Ms     float64           `json:"store_aggregated_p50_ms"`
		RecomputeMs    []float64         `json:"recompute_ms"`
		RecomputeP50Ms float64           `json:"recompute_p50_ms"`
		Ratio          float64           `json:"ratio"`
		VerifyError    string            `json:"verify_error,omitempty"`
		Timeseries     []benchTimeseries `json:"timeseries"`
	} `json:"read"`
	KeepUp struct {
		Requested     int         `json:"requested_events_per_second"`
		Events        int64       `json:"events_accepted"`
		Failed        int         `json:"failed_batches"`
		FirstFailure  string      `json:"first_failure,omitempty"`
		PostP50Ms     float64     `json:"post_p50_ms"`
		PostP99Ms     float64     `json:"post_p99_ms"`
		Seconds       float64     `json:"seconds"`
		Rate          float64     `json:"events_per_second"`
		Samples       int         `json:"lag_samples"`
		LagP50        float64     `json:"lag_p50_seconds"`
		LagP99        float64     `json:"lag_p99_seconds"`
		LagMax        float64     `json:"lag_max_seconds"`
		PendingMax    int64       `json:"pending_max_rows"`
		DrainSeconds  float64     `json:"drain_seconds"`
		Drained       bool        `json:"drained"`
		Cycles        float64     `json:"aggregation_cycles"`
		CycleMeanMs   float64     `json:"aggregation_cycle_mean_ms"`
		PairsPerCycle float64     `json:"aggregation_pairs_per_cycle"`
		Steps         []benchStep `json:"aggregation_steps"`
		ResultsP50Ms  float64     `json:"results_p50_ms_while_ingesting"`
		Verified      bool        `json:"verified"` // checked after the drain; not when it did not drain
		VerifyError   string      `json:"verify_error,omitempty"`
	} `json:"keep_up"`
	Pass struct {
		ResultsP50 bool `json:"results_p50"`
		Timeseries bool `json:"timeseries_p50"`
		Ratio      bool `json:"ratio"`
		Verified   bool `json:"verified"`
		Rate       bool `json:"keep_up_rate"`
		Lag        bool `json:"keep_up_lag"`
		All        bool `json:"all"`
	} `json:"pass"`
}

// benchLoad is a bulk load of an experiment's data by COPY.
type benchLoad struct {
	Exposures     int     `json:"exposures"`
	Events        int     `json:"events"`
	Seconds       float64 `json:"seconds"`
	RowsPerSecond float64 `json:"rows_per_second"`
	VacuumSeconds float64 `json:"vacuum_analyze_seconds"`
}

// benchBuild is the one aggregation that takes in a bulk load.
type benchBuild struct {
	BuildSeconds       float64 `json:"initial_build_seconds"`
	BuildVacuumSeconds float64 `json:"build_vacuum_analyze_seconds"`
}

// runBenchResults runs `flywheel bench results`: it loads a scratch
// database with an experiment's exposures and track events by COPY, builds
// the aggregates once, then times GET .../results against the plain
// recomputation from raw events (store.RecomputeResultInput, what the
// endpoint ran before aggregates), checks both give the same numbers, and
// finally sends events through POST /v1/events at a fixed rate while the
// background aggregator runs, sampling its lag every second.
func runBenchResults(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o resultsOptions
	fs := newFlagSet("bench results", stderr)
	fs.IntVar(&o.Units, "units", issueUnits, "exposed units (1-50,000,000)")
	fs.IntVar(&o.Events, "events", issueEvents, "track events of the exposed units (0-1,000,000,000)")
	fs.IntVar(&o.Requests, "requests", 50, "results requests to time (1-10000)")
	fs.IntVar(&o.Recomputes, "recomputes", 3, "recomputations from raw events to time (1-100)")
	fs.IntVar(&o.Rate, "rate", keepUpRateTarget, "events/s sent in the keep-up phase (1-1,000,000)")
	fs.DurationVar(&o.Duration, "duration", time.Minute, "length of the keep-up phase")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON document instead of the report")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q\n%s", fs.Arg(0), benchResultsUsage)}
	case o.Units < 1 || o.Units > 50_000_000, o.Events < 0 || o.Events > 1_000_000_000, o.Requests < 1 || o.Requests > 10000,
		o.Recomputes < 1 || o.Recomputes > 100, o.Rate < 1 || o.Rate > 1_000_000, o.Duration <= 0 || o.Duration > time.Hour:
		return usageError{benchResultsUsage}
	}
	cfg := loadConfig(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	env := &benchEnv{progress: progress}
	defer env.close()
	appCfg, err := openAppEnv(ctx, cfg, env, stderr)
	if err != nil {
		return err
	}

	rep := &resultsReport{Command: "flywheel bench results " + strings.Join(args, " "), Date: time.Now().UTC().Format(time.RFC3339),
		Machine: currentMachine(), Options: o, Database: env.dbDesc, UnitIDs: "raw"}
	if cfg.IDHMACKey != "" {
		rep.UnitIDs = "pseudonymised (FLYWHEEL_ID_HMAC_KEY)"
	}
	// Phase 0 and 1 run without the background aggregator: the rows loaded
	// by COPY bypass the aggregation queue, so the one build after the load
	// is what takes them in.
	appCfg.AggregateEvery = -1
	if err := benchReadSpeed(ctx, env, appCfg, o, rep); err != nil {
		return err
	}
	appCfg.AggregateEvery = time.Second
	if err := benchKeepUp(ctx, env, appCfg, o, rep); err != nil {
		return err
	}
	rep.judge()
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.print(stdout)
	}
	if !rep.Pass.Verified { // the only failure that is an error: the numbers are wrong
		return errors.New("bench: the aggregates differ from a recomputation from raw events (see verify_error)")
	}
	return nil
}

// startApp runs flywheel in this process on 127.0.0.1 and returns the app
// and its base URL; stop shuts the listener down and closes the app.
func startApp(ctx context.Context, cfg app.Config) (*app.App, string, func(), error) {
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Close(ctx)
		return nil, "", nil, fmt.Errorf("bench: listen: %w", err)
	}
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 10 * time.Minute, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	go srv.Serve(ln)
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = a.Close(sctx)
	}
	return a, "http://" + ln.Addr().String(), stop, nil
}

// openAppEnv gets env a scratch database (benchEnv.openDatabase) and new
// admin and SDK keys, and returns the configuration of an app on it that
// logs warnings to stderr. The caller closes env, also on error.
func openAppEnv(ctx context.Context, cfg config, env *benchEnv, stderr io.Writer) (app.Config, error) {
	log := env.serverLog
	if log == nil {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	var err error
	if env.dbURL, err = env.openDatabase(ctx, cfg, log); err != nil {
		return app.Config{}, err
	}
	env.progress("database: %s", env.dbDesc)
	if env.adminKey, err = flywheel.NewKeySecret(flywheel.ScopeAdmin); err != nil {
		return app.Config{}, err
	}
	if env.sdkKey, err = flywheel.NewKeySecret(flywheel.ScopeSDK); err != nil {
		return app.Config{}, err
	}
	return app.Config{DatabaseURL: env.dbURL, InitAdminKey: env.adminKey, InitSDKKey: env.sdkKey, Logger: log,
		ConfigPoll: cfg.ConfigPoll, MaxConns: cfg.MaxConns, IDHMACKey: cfg.IDHMACKey,
		IngestWriters: cfg.IngestWriters, IngestQueue: cfg.IngestQueue, AggregateEvery: cfg.AggregateEvery}, nil
}

// defineResultsExperiment creates the bench's metrics, purchase
// (conversion, 168 h) and revenue (mean, CUPED 336 h, cap 500), and its
// running customer experiment with two variants, through the API at url.
func defineResultsExperiment(ctx context.Context, env *benchEnv, url string) error {
	for _, c := range []struct{ path, body string }{
		{"/v1/metrics", `{"key":"purchase","type":"conversion","event":"purchase","window_hours":168}`},
		{"/v1/metrics", `{"key":"revenue","type":"mean","event":"revenue","window_hours":168,"cuped_hours":336,"cap":{"value":500}}`},
		{"/v1/experiments", `{"key":"` + resultsExperiment + `","name":"Bench results","unit_type":"customer",` +
			`"variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5}],` +
			`"metrics":{"primary":["purchase"],"secondary":["revenue"]}}`},
		{"/v1/experiments/" + resultsExperiment + "/start", ``},
	} {
		if code, got, err := env.call(ctx, url, "POST", c.path, env.adminKey, c.body); err != nil || code/100 != 2 {
			return fmt.Errorf("bench: POST %s: status %d %s: %v", c.path, code, got, err)
		}
	}
	return nil
}

// loadResultsData COPYs the exposures of units c-0 to c-<units-1> and
// events track events of theirs into a's database, then runs VACUUM
// ANALYZE as autovacuum would after such a load (hint bits, visibility,
// statistics). The rows bypass the aggregation queue: run it with the
// background aggregator off, then buildAggregates.
func loadResultsData(ctx context.Context, env *benchEnv, a *app.App, idKey string, units, events int) (benchLoad, error) {
	var l benchLoad
	now := time.Now().UTC()
	if _, err := a.DB.EnsurePartitions(ctx, now, eventDays+2, 2); err != nil {
		return l, err
	}
	ids := unitIDs(ingest.NewPseudonymizer(idKey), 0, units)
	t0 := time.Now()
	if err := copyExposures(ctx, a.DB.Pool(), ids, now); err != nil {
		return l, err
	}
	env.progress("copied %d exposures in %.1fs", units, time.Since(t0).Seconds())
	if err := copyTrackEvents(ctx, a.DB.Pool(), ids, events, now, env.progress); err != nil {
		return l, err
	}
	l.Exposures, l.Events, l.Seconds = units, events, time.Since(t0).Seconds()
	l.RowsPerSecond = float64(units+events) / l.Seconds
	t0 = time.Now()
	if _, err := a.DB.Pool().Exec(ctx, `VACUUM (ANALYZE) events, exposures`); err != nil {
		return l, fmt.Errorf("bench: vacuum analyze: %w", err)
	}
	l.VacuumSeconds = time.Since(t0).Seconds()
	env.progress("loaded in %.1fs, vacuum analyze %.1fs; building the aggregates", l.Seconds, l.VacuumSeconds)
	return l, nil
}

// buildAggregates runs the one aggregation (App.Aggregate) that takes in
// a bulk load, then VACUUM ANALYZE of the unit and variant aggregates.
func buildAggregates(ctx context.Context, env *benchEnv, a *app.App) (benchBuild, error) {
	var b benchBuild
	t0 := time.Now()
	if err := a.Aggregate(ctx); err != nil {
		return b, fmt.Errorf("bench: initial build: %w", err)
	}
	b.BuildSeconds = time.Since(t0).Seconds()
	t0 = time.Now()
	if _, err := a.DB.Pool().Exec(ctx, `VACUUM (ANALYZE) agg_units, agg_variants`); err != nil {
		return b, fmt.Errorf("bench: vacuum analyze: %w", err)
	}
	b.BuildVacuumSeconds = time.Since(t0).Seconds()
	env.progress("initial build %.1fs, vacuum analyze %.1fs", b.BuildSeconds, b.BuildVacuumSeconds)
	return b, nil
}

// benchReadSpeed defines the experiment, loads the data, builds the
// aggregates and times reads.
func benchReadSpeed(ctx context.Context, env *benchEnv, cfg app.Config, o resultsOptions, rep *resultsReport) error {
	a, url, stop, err := startApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer stop()
	env.flywheelURL = url
	if err := defineResultsExperiment(ctx, env, url); err != nil {
		return err
	}
	if rep.Load, err = loadResultsData(ctx, env, a, cfg.IDHMACKey, o.Units, o.Events); err != nil {
		return err
	}
	if rep.benchBuild, err = buildAggregates(ctx, env, a); err != nil {
		return err
	}
	env.progress("timing %d results requests", o.Requests)

	client := &http.Client{}
	for range min(5, o.Requests) { // warm-up
		if _, _, err := getResults(ctx, client, url, env.adminKey); err != nil {
			return err
		}
	}
	var lat []time.Duration
	for range o.Requests {
		d, doc, err := getResults(ctx, client, url, env.adminKey)
		if err != nil {
			return err
		}
		lat = append(lat, d)
		rep.Read.ResultsUnits = doc.Units
	}
	rep.Read.Requests = o.Requests
	rep.Read.ResultsP50Ms, rep.Read.ResultsP99Ms = ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99))

	e, metrics, err := benchExperiment(ctx, a)
	if err != nil {
		return err
	}
	q := func() analysis.Query { return analysis.Query{Now: time.Now().UTC(), Overrides: []string{}} }
	lat = lat[:0]
	for range o.Requests {
		t := time.Now()
		if _, err := a.DB.ResultInput(ctx, e, metrics, q()); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	rep.Read.StoreP50Ms = ms(quantile(lat, 0.50))
	lat = lat[:0]
	for i := range o.Recomputes {
		env.progress("recompute from raw events %d/%d", i+1, o.Recomputes)
		t := time.Now()
		if _, err := a.DB.RecomputeResultInput(ctx, e, metrics, q()); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
		rep.Read.RecomputeMs = append(rep.Read.RecomputeMs, ms(lat[i]))
	}
	rep.Read.RecomputeP50Ms = ms(quantile(lat, 0.50))
	if rep.Read.ResultsP50Ms > 0 {
		rep.Read.Ratio = rep.Read.RecomputeP50Ms / rep.Read.ResultsP50Ms
	}
	env.progress("verifying the aggregates against a recomputation")
	if err := a.DB.VerifyAggregates(ctx, e, metrics, q()); err != nil {
		rep.Read.VerifyError = err.Error()
	}
	// The daily timeseries of each metric: over HTTP (from the per-day
	// aggregates), against one recomputation from raw events (in the store:
	// the request limit would cut it short).
	for _, m := range metrics {
		env.progress("timeseries of %s", m.Key)
		lat = lat[:0]
		for range 5 {
			d, err := getTimeseries(ctx, client, url, env.adminKey, m.Key)
			if err != nil {
				return err
			}
			lat = append(lat, d)
		}
		// VerifyTimeseries reads the aggregates (milliseconds) and
		// recomputes from raw events (the time it reports).
		t := time.Now()
		if err := a.DB.VerifyTimeseries(ctx, e, []flywheel.Metric{m}, q()); err != nil {
			if rep.Read.VerifyError == "" {
				rep.Read.VerifyError = err.Error()
			}
		}
		rep.Read.Timeseries = append(rep.Read.Timeseries, benchTimeseries{m.Key, ms(quantile(lat, 0.50)), ms(time.Since(t))})
	}
	return nil
}

// benchKeepUp sends events at o.Rate for o.Duration with the background
// aggregator running, samples its lag every second, then waits for it to
// drain and verifies the aggregates again.
func benchKeepUp(ctx context.Context, env *benchEnv, cfg app.Config, o resultsOptions, rep *resultsReport) error {
	cfg.Registry = prometheus.NewRegistry() // read by aggregatorFigures
	a, url, stop, err := startApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer stop()
	env.progress("keep-up: %d events/s for %v", o.Rate, o.Duration)
	k := &rep.KeepUp
	k.Requested = o.Rate
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: resultsSenders + 1}}
	var (
		lags     []float64
		during   []time.Duration
		newUnits atomic.Int64
	)
	// sample reads the lag and the queue, and records them once a second.
	lastSample := time.Time{}
	sample := func() int64 {
		lag, pending, err := a.DB.AggregationLag(ctx, time.Now())
		if err != nil {
			return -1
		}
		k.PendingMax = max(k.PendingMax, pending)
		if time.Since(lastSample) >= time.Second-50*time.Millisecond {
			lastSample = time.Now()
			lags = append(lags, lag.Seconds())
		}
		return pending
	}
	start := time.Now()
	rngs := make([]*rand.Rand, resultsSenders)
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
	}
	var load *loadStats
	done, probed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		load = sendLoad(ctx, client, []string{url + "/v1/events"}, env.sdkKey,
			loadShape{Senders: resultsSenders, Batch: resultsBatch, Rate: o.Rate, Duration: o.Duration},
			func(w int) ([]byte, int) { return keepUpBatch(rngs[w], o.Units, resultsBatch, &newUnits), resultsBatch })
	}()
	go func() { // a dashboard reading the results every 5 s meanwhile
		defer close(probed)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if d, _, err := getResults(ctx, client, url, env.adminKey); err == nil {
					during = append(during, d)
				}
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	for sending := true; sending; {
		select {
		case <-done:
			sending = false
		case <-tick.C:
			sample()
		}
	}
	tick.Stop()
	<-probed
	k.Seconds = time.Since(start).Seconds()
	k.Events = load.Accepted.Load()
	k.Failed, k.FirstFailure = load.Failed, load.FirstFailure
	k.Rate = float64(k.Events) / k.Seconds
	env.progress("keep-up: %d events accepted (%.0f/s); waiting for the aggregator to drain", k.Events, k.Rate)

	// The lag samples go on while the queue drains: the last events wait too.
	drainStart, last := time.Now(), time.Now()
	for time.Since(drainStart) < maxDrain && ctx.Err() == nil {
		if p := sample(); p == 0 {
			k.Drained = true
			break
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			env.progress("keep-up: draining, %.0fs", time.Since(drainStart).Seconds())
		}
		time.Sleep(100 * time.Millisecond)
	}
	k.DrainSeconds = time.Since(drainStart).Seconds()
	k.Samples = len(lags)
	slices.Sort(lags)
	if n := len(lags); n > 0 {
		k.LagP50, k.LagP99, k.LagMax = lags[(n-1)/2], lags[min(n-1, int(math.Ceil(0.99*float64(n)))-1)], lags[n-1]
	}
	k.ResultsP50Ms = ms(quantile(during, 0.50))
	k.PostP50Ms, k.PostP99Ms = ms(quantile(load.Posts, 0.50)), ms(quantile(load.Posts, 0.99))
	cycles, seconds, pairs, steps := aggregatorFigures(cfg.Registry)
	k.Steps = steps
	if cycles > 0 {
		k.Cycles, k.CycleMeanMs, k.PairsPerCycle = cycles, 1000*seconds/cycles, pairs/cycles
	}
	if k.Drained {
		env.progress("keep-up: drained in %.1fs; verifying the aggregates again", k.DrainSeconds)
		e, metrics, err := benchExperiment(ctx, a)
		if err != nil {
			return err
		}
		q := analysis.Query{Now: time.Now().UTC(), Overrides: []string{}}
		if err := a.DB.VerifyAggregates(ctx, e, metrics, q); err != nil {
			k.VerifyError = err.Error()
		} else if err := a.DB.VerifyTimeseries(ctx, e, metrics, q); err != nil {
			k.VerifyError = err.Error()
		} else {
			k.Verified = true
		}
	}
	return nil
}

// benchStep is the time the aggregator spent in one step of its cycles.
type benchStep struct {
	Name    string  `json:"name"`
	Count   uint64  `json:"count"`
	MeanMs  float64 `json:"mean_ms"`
	TotalMs float64 `json:"total_ms"`
}

// aggregatorFigures reads the aggregator's metrics: successful cycles,
// their total seconds, the (experiment, unit) pairs they recomputed, and
// the time of each step, in the order of a cycle.
func aggregatorFigures(reg *prometheus.Registry) (cycles, seconds, pairs float64, steps []benchStep) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0, 0, nil
	}
	return aggregatorFiguresOf(mfs)
}

// aggregatorFiguresOf is aggregatorFigures over gathered (or scraped)
// metric families.
func aggregatorFiguresOf(mfs []*dto.MetricFamily) (cycles, seconds, pairs float64, steps []benchStep) {
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "flywheel_aggregate_cycle_seconds":
				cycles, seconds = float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
			case "flywheel_aggregate_units_total":
				pairs = m.GetCounter().GetValue()
			case "flywheel_aggregate_step_seconds":
				h := m.GetHistogram()
				s := benchStep{Count: h.GetSampleCount(), TotalMs: 1000 * h.GetSampleSum()}
				for _, l := range m.GetLabel() {
					s.Name = l.GetValue()
				}
				if s.Count > 0 {
					s.MeanMs = s.TotalMs / float64(s.Count)
				}
				steps = append(steps, s)
			}
		}
	}
	slices.SortFunc(steps, func(a, b benchStep) int {
		return slices.Index(store.StepNames, a.Name) - slices.Index(store.StepNames, b.Name)
	})
	return cycles, seconds, pairs, steps
}

// counterSumOf adds up the series of the counter name, in gathered (or
// scraped) metric families, whose label is value.
func counterSumOf(mfs []*dto.MetricFamily, name, label, value string) float64 {
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// resultsDoc is the part of the results document the bench reads.
type resultsDoc struct {
	ComputedAt    time.Time `json:"computed_at"`
	LagSeconds    float64   `json:"lag_seconds"`
	PendingEvents int64     `json:"pending_events"`
	Units         int64     `json:"units"`
}

// getResults makes one results request and times it, body read included.
func getResults(ctx context.Context, client *http.Client, base, key string) (time.Duration, resultsDoc, error) {
	var doc resultsDoc
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/experiments/"+resultsExperiment+"/results", nil)
	if err != nil {
		return 0, doc, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	t := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, doc, fmt.Errorf("bench: results: %w", err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(t)
	if err != nil || res.StatusCode != http.StatusOK {
		return d, doc, fmt.Errorf("bench: results: status %d %.200s: %v", res.StatusCode, body, err)
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.ComputedAt.IsZero() {
		return d, doc, fmt.Errorf("bench: results: not a results document: %.200s", body)
	}
	return d, doc, nil
}

// benchTimeseries is the timing of one metric's timeseries.
type benchTimeseries struct {
	Metric      string  `json:"metric"`
	P50Ms       float64 `json:"p50_ms"`
	RecomputeMs float64 `json:"recompute_ms"`
}

// benchExperiment returns the bench's experiment and its metrics.
func benchExperiment(ctx context.Context, a *app.App) (*flywheel.Experiment, []flywheel.Metric, error) {
	e, err := a.DB.FindExperimentByKey(ctx, resultsExperiment)
	if err != nil {
		return nil, nil, err
	}
	metrics, err := a.DB.FindMetricsByKeys(ctx, e.Metrics.Keys())
	return e, metrics, err
}

// getTimeseries makes one timeseries request for metric and times it, body
// read included.
func getTimeseries(ctx context.Context, client *http.Client, base, key, metric string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/experiments/"+resultsExperiment+"/results/timeseries?metric="+metric, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	t := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: timeseries: %w", err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(t)
	if err != nil || res.StatusCode != http.StatusOK {
		return d, fmt.Errorf("bench: timeseries: status %d %.200s: %v", res.StatusCode, body, err)
	}
	return d, nil
}

// quantile returns the q-quantile of ds (nearest rank); it sorts ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[max(0, min(len(ds)-1, int(math.Ceil(q*float64(len(ds))))-1))]
}

// mix is splitmix64: the bench's deterministic per-unit randomness.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

var (
	benchVariants  = [2]string{"control", "treatment"}
	benchPlatforms = [3]string{"ios", "android", "web"}
)

// unitIDs returns the stored ids of units [from, to): c-<n>, pseudonymised
// as the ingestion path would.
func unitIDs(p *ingest.Pseudonymizer, from, to int) []string {
	ids := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		ids = append(ids, p.ID("c-"+strconv.Itoa(i)))
	}
	return ids
}

// copyExposures stores the first exposure of every unit: a variant by hash
// and a time spread over the last exposureDays.
func copyExposures(ctx context.Context, pool *pgxpool.Pool, ids []string, now time.Time) error {
	span := uint64(exposureDays * 24 * time.Hour)
	i := 0
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"exposures"},
		[]string{"experiment", "unit_id", "unit_type", "variant", "first_ts", "attributes", "multiple"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(ids) {
				return nil, nil
			}
			h := mix(uint64(i))
			ts := now.Add(-time.Duration(h % span)).Truncate(time.Microsecond)
			attrs := []byte(`{"platform":"` + benchPlatforms[(h>>40)%3] + `"}`)
			row := []any{resultsExperiment, ids[i], "customer", benchVariants[h>>63], ts, attrs, false}
			i++
			return row, nil
		}))
	if err != nil {
		return fmt.Errorf("bench: copy exposures: %w", err)
	}
	return nil
}

// copyTrackEvents stores n track events over the last eventDays from
// copyWorkers connections, 500,000 rows a transaction. Half are purchases,
// half revenue with a value; units are drawn with a skew (unit r^1.5 of
// the list) so that busy units are busy before and after exposure, as
// CUPED expects.
func copyTrackEvents(ctx context.Context, pool *pgxpool.Pool, ids []string, n int, now time.Time, progress func(string, ...any)) error {
	const chunk = 500_000
	var done atomic.Int64
	errc := make(chan error, copyWorkers)
	t0 := time.Now()
	stopReport := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopReport:
				return
			case <-t.C:
				d := done.Load()
				progress("copied %d/%d events (%.0f/s)", d, n, float64(d)/time.Since(t0).Seconds())
			}
		}
	}()
	defer close(stopReport)
	var wg sync.WaitGroup
	for w := range copyWorkers {
		share := n/copyWorkers + btoi(w < n%copyWorkers)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(0xf1f1, uint64(w)))
			for left := share; left > 0 && ctx.Err() == nil; {
				rows := min(chunk, left)
				if err := copyEventChunk(ctx, pool, rng, ids, rows, now); err != nil {
					errc <- fmt.Errorf("bench: copy events: %w", err)
					return
				}
				left -= rows
				done.Add(int64(rows))
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	progress("copied %d events in %.1fs", n, time.Since(t0).Seconds())
	return ctx.Err()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func copyEventChunk(ctx context.Context, pool *pgxpool.Pool, rng *rand.Rand, ids []string, rows int, now time.Time) error {
	span := int64(eventDays * 24 * time.Hour)
	i := 0
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"events"},
		[]string{"unit_type", "unit_id", "id", "type", "ts", "received_at", "event", "value"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == rows {
				return nil, nil
			}
			i++
			id, err := uuid.NewV7()
			if err != nil {
				return nil, err
			}
			unit := ids[int(float64(len(ids))*math.Pow(rng.Float64(), 1.5))]
			ts := now.Add(-time.Duration(rng.Int64N(span))).Truncate(time.Microsecond)
			row := []any{"customer", unit, pgtype.UUID{Bytes: id, Valid: true}, "track", ts, ts, "purchase", nil}
			if rng.IntN(2) == 0 {
				row[6], row[7] = "revenue", math.Round(rng.ExpFloat64()*4000)/100
			}
			return row, nil
		}))
	return err
}

// keepUpBatch builds one POST /v1/events body of size events: 4%
// exposures of new units (c-<units> on, counted by newUnits), the rest
// purchases and revenue of exposed units (drawn as in the load),
// timestamped by the server.
func keepUpBatch(rng *rand.Rand, units, size int, newUnits *atomic.Int64) []byte {
	b := make([]byte, 0, 180*size)
	b = append(b, `{"events":[`...)
	for i := range size {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = append(b, uuid.Must(uuid.NewV7()).String()...)
		b = append(b, `","unit_type":"customer","unit_id":"c-`...)
		if rng.IntN(100) < 4 {
			n := uint64(units) + uint64(newUnits.Add(1)) - 1
			h := mix(n)
			b = strconv.AppendUint(b, n, 10)
			b = append(b, `","type":"exposure","experiment":"`+resultsExperiment+`","variant":"`...)
			b = append(b, benchVariants[h>>63]...)
			b = append(b, `","attributes":{"platform":"`...)
			b = append(b, benchPlatforms[(h>>40)%3]...)
			b = append(b, `"}}`...)
			continue
		}
		b = strconv.AppendInt(b, int64(float64(units)*math.Pow(rng.Float64(), 1.5)), 10)
		if rng.IntN(2) == 0 {
			b = append(b, `","type":"track","event":"purchase"}`...)
			continue
		}
		b = append(b, `","type":"track","event":"revenue","value":`...)
		b = strconv.AppendFloat(b, math.Round(rng.ExpFloat64()*4000)/100, 'f', -1, 64)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// loadShape is how a load is sent to POST /v1/events: Senders concurrent
// clients, each with one request of Batch events in flight. With Rate > 0
// they keep a schedule that sends Rate events/s together for Duration;
// with Rate 0 each sends its next batch as soon as the last is answered,
// until there is none left.
type loadShape struct {
	Senders, Batch, Rate int
	Duration             time.Duration
}

// loadStats is what a load sent.
type loadStats struct {
	Accepted     atomic.Int64 // events of the batches answered with every event accepted
	Batches      int          // requests answered so
	Failed       int          // the other requests
	FirstFailure string
	Posts        []time.Duration // the time each request took
	Start        time.Time
	LastAck      time.Time // the last answer of an accepted batch
	Seconds      float64   // from Start to the last answer
	mu           sync.Mutex
}

// sendLoad sends the batches made by next (for sender w: a body and its
// number of events, at most Batch; nil when there is none left) as s
// says, sender w to urls[w mod len(urls)], and returns when every request
// has been answered.
func sendLoad(ctx context.Context, client *http.Client, urls []string, key string, s loadShape, next func(w int) ([]byte, int)) *loadStats {
	st := &loadStats{Start: time.Now()}
	end := st.Start.Add(s.Duration)
	var interval time.Duration
	if s.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(s.Batch) * float64(s.Senders) / float64(s.Rate))
	}
	var wg sync.WaitGroup
	for w := range s.Senders {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				if s.Rate > 0 {
					at := st.Start.Add(time.Duration(w)*interval/time.Duration(s.Senders) + time.Duration(n)*interval)
					if !at.Before(end) {
						return
					}
					time.Sleep(time.Until(at))
				}
				body, events := next(w)
				if body == nil {
					return
				}
				t := time.Now()
				err := postBatch(ctx, client, urls[w%len(urls)], key, body, events)
				now := time.Now()
				st.mu.Lock()
				st.Posts = append(st.Posts, now.Sub(t))
				if err != nil {
					if st.Failed++; st.FirstFailure == "" {
						st.FirstFailure = err.Error()
					}
				} else {
					st.Batches++
					st.Accepted.Add(int64(events))
					if now.After(st.LastAck) {
						st.LastAck = now
					}
				}
				st.mu.Unlock()
			}
		})
	}
	wg.Wait()
	st.Seconds = time.Since(st.Start).Seconds()
	return st
}

// postBatch sends one batch and checks every event was accepted.
func postBatch(ctx context.Context, client *http.Client, url, key string, body []byte, n int) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	var ans struct {
		Accepted int `json:"accepted"`
	}
	if err := json.Unmarshal(got, &ans); err != nil || res.StatusCode != http.StatusOK || ans.Accepted != n {
		return fmt.Errorf("status %d, accepted %d of %d: %.200s", res.StatusCode, ans.Accepted, n, got)
	}
	return nil
}

func (r *resultsReport) judge() {
	p := &r.Pass
	p.ResultsP50 = r.Read.ResultsP50Ms > 0 && r.Read.ResultsP50Ms <= resultsP50TargetMs
	p.Timeseries = len(r.Read.Timeseries) > 0
	for _, t := range r.Read.Timeseries {
		p.Timeseries = p.Timeseries && t.P50Ms <= timeseriesTargetMs
	}
	p.Ratio = r.Read.Ratio >= resultsRatioTarget
	p.Verified = r.Read.VerifyError == "" && r.KeepUp.VerifyError == ""
	// Keeping up: the paced load offered at least the target rate and every
	// event of it was accepted. (The wall-clock rate runs a little under the
	// offered one: the clock stops when the last batch has been answered.)
	offered := float64(r.Options.Rate) * r.Options.Duration.Seconds()
	p.Rate = r.Options.Rate >= keepUpRateTarget && r.KeepUp.Failed == 0 && float64(r.KeepUp.Events) >= 0.999*offered
	p.Lag = r.KeepUp.Drained && r.KeepUp.LagMax <= keepUpLagTarget
	p.All = p.ResultsP50 && p.Timeseries && p.Ratio && p.Verified && p.Rate && p.Lag
}

func (r *resultsReport) print(w io.Writer) {
	m, o, k := r.Machine, r.Options, r.KeepUp
	fmt.Fprintf(w, "flywheel bench results: results from aggregates vs a recomputation from raw events, and aggregation keep-up\n")
	fmt.Fprintf(w, "machine:  %d CPUs (%s), GOMAXPROCS %d, %s %s\n", m.CPUs, m.CPUModel, m.GOMAXPROCS, m.Go, m.OS)
	fmt.Fprintf(w, "data:     1 customer experiment, 2 variants, metrics purchase (conversion, 168 h) and revenue (mean, CUPED 336 h, cap 500)\n")
	fmt.Fprintf(w, "          %d exposed units over %d days, %d track events over %d days; unit ids %s\n", o.Units, exposureDays, o.Events, eventDays, r.UnitIDs)
	fmt.Fprintf(w, "database: %s\n", r.Database)
	if o.Units < issueUnits || o.Events < issueEvents {
		fmt.Fprintf(w, "note:     smaller than the issue's %d units and %d events: the verdicts below do not answer it\n", issueUnits, issueEvents)
	}
	fmt.Fprintf(w, "\nload:     COPY %d rows in %.1fs (%.0f rows/s), VACUUM ANALYZE %.1fs\n", r.Load.Exposures+r.Load.Events, r.Load.Seconds, r.Load.RowsPerSecond, r.Load.VacuumSeconds)
	fmt.Fprintf(w, "build:    initial aggregates (App.Aggregate) %.1fs, then VACUUM ANALYZE of agg_units and agg_variants %.1fs\n", r.BuildSeconds, r.BuildVacuumSeconds)
	fmt.Fprintf(w, "\nread speed (%d requests, one at a time, after a warm-up; %d recomputes):\n", r.Read.Requests, len(r.Read.RecomputeMs))
	fmt.Fprintf(w, "  GET results (HTTP)          p50 %9.1fms  p99 %9.1fms  (%d units)\n", r.Read.ResultsP50Ms, r.Read.ResultsP99Ms, r.Read.ResultsUnits)
	fmt.Fprintf(w, "  store.ResultInput           p50 %9.1fms  (aggregates only, no HTTP or analysis)\n", r.Read.StoreP50Ms)
	fmt.Fprintf(w, "  store.RecomputeResultInput  p50 %9.1fms  runs %s\n", r.Read.RecomputeP50Ms, fmtMs(r.Read.RecomputeMs))
	for _, t := range r.Read.Timeseries {
		fmt.Fprintf(w, "  GET timeseries %-12s p50 %9.1fms  (5 requests); store.VerifyTimeseries (a recomputation) %.0fms\n", t.Metric, t.P50Ms, t.RecomputeMs)
	}
	fmt.Fprintf(w, "\nkeep-up (%d events/s requested for %v, %d senders x %d-event batches, aggregator every 1s):\n", k.Requested, o.Duration, resultsSenders, resultsBatch)
	fmt.Fprintf(w, "  accepted %d events in %.1fs = %.0f events/s, %d failed batches; POST p50 %.0fms p99 %.0fms\n",
		k.Events, k.Seconds, k.Rate, k.Failed, k.PostP50Ms, k.PostP99Ms)
	if k.FirstFailure != "" {
		fmt.Fprintf(w, "  first failure: %s\n", k.FirstFailure)
	}
	fmt.Fprintf(w, "  lag over %d samples: p50 %.1fs  p99 %.1fs  max %.1fs; queue max %d rows\n", k.Samples, k.LagP50, k.LagP99, k.LagMax, k.PendingMax)
	drained := fmt.Sprintf("drained %.1fs after the last event", k.DrainSeconds)
	if !k.Drained {
		drained = fmt.Sprintf("NOT drained %.0fs after the last event", k.DrainSeconds)
	}
	fmt.Fprintf(w, "  %s; %.0f cycles, mean %.0fms, %.0f units each\n", drained, k.Cycles, k.CycleMeanMs, k.PairsPerCycle)
	for _, s := range k.Steps {
		fmt.Fprintf(w, "    step %-13s %5d times, mean %7.0fms, total %8.0fms\n", s.Name, s.Count, s.MeanMs, s.TotalMs)
	}
	fmt.Fprintf(w, "  GET results every 5s while ingesting: p50 %.1fms\n", k.ResultsP50Ms)

	p := r.Pass
	fmt.Fprintf(w, "\ntargets:\n")
	fmt.Fprintf(w, "  results p50 <= %d ms                 %10.1f ms  %s\n", resultsP50TargetMs, r.Read.ResultsP50Ms, pass(p.ResultsP50))
	fmt.Fprintf(w, "  recompute p50 / results p50 >= %dx   %10.1fx    %s\n", resultsRatioTarget, r.Read.Ratio, pass(p.Ratio))
	slowest := 0.0
	for _, t := range r.Read.Timeseries {
		slowest = max(slowest, t.P50Ms)
	}
	fmt.Fprintf(w, "  timeseries p50 <= %d ms (slowest metric) %6.1f ms  %s\n", timeseriesTargetMs, slowest, pass(p.Timeseries))
	after := "after build, after keep-up"
	if !k.Verified && k.VerifyError == "" {
		after = "after build; not checked after keep-up: the queue did not drain"
	}
	fmt.Fprintf(w, "  aggregates and timeseries = recomputation (%s)  %s\n", after, pass(p.Verified))
	fmt.Fprintf(w, "  keep-up >= %d events/s, all accepted %8d/s   %s\n", keepUpRateTarget, o.Rate, pass(p.Rate))
	fmt.Fprintf(w, "  aggregation lag <= %.0f s               %10.1f s   %s\n", keepUpLagTarget, k.LagMax, pass(p.Lag))
	for _, e := range []string{r.Read.VerifyError, k.VerifyError} {
		if e != "" {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	fmt.Fprintf(w, "result: %s\n", pass(p.All))
}

func fmtMs(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.0fms", x)
	}
	return strings.Join(s, " ")
}
