package app

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flywheel-oss/flywheel/store"
)

// aggregator runs the incremental aggregation (store.DB.Aggregate) in the
// background: a cycle every interval, and at once again while the queue
// holds more than one cycle takes.
type aggregator struct {
	// recording is held by a background cycle from its start until it has
	// recorded its figures (CycleRecorded).
	recording sync.Mutex
	db        *store.DB
	app       *App
	cycles    *prometheus.CounterVec
	units     prometheus.Counter
	repaired  prometheus.Counter
	seconds   prometheus.Histogram
	steps     *prometheus.HistogramVec
	lag       prometheus.Gauge
	pending   prometheus.Gauge
	// takeover is how long after the last cycle of another server this
	// one runs cycles itself (store.DB.AggregationLed): a server that
	// crashed leaves the results that much staler.
	takeover time.Duration
}

// aggregationTakeover is the takeover time for cycles every every: ten
// of them, and at least 5 s.
func aggregationTakeover(every time.Duration) time.Duration {
	return max(10*every, 5*time.Second)
}

func newAggregator(a *App, reg prometheus.Registerer) *aggregator {
	g := &aggregator{
		db:  a.DB,
		app: a,
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flywheel_aggregate_cycles_total",
			Help: "Aggregation cycles, by outcome (ok; skipped: another process held the lock; deferred: another server leads, see store.DB.AggregationLed; error)."}, []string{"outcome"}),
		units: prometheus.NewCounter(prometheus.CounterOpts{Name: "flywheel_aggregate_units_total",
			Help: "(experiment, unit) aggregates recomputed by aggregation cycles."}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{Name: "flywheel_aggregate_repaired_units_total",
			Help: "Unit aggregates found inconsistent by a fold and left to the next cycle to recompute from raw events (store.Fold.Repaired); any is a bug to report."}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flywheel_aggregate_cycle_seconds",
			Help: "Duration of aggregation cycles.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flywheel_aggregate_step_seconds",
			Help:    "Duration of the steps of aggregation cycles (store.Step: " + strings.Join(store.StepNames, ", ") + ").",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}, []string{"step"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flywheel_aggregate_lag_seconds",
			Help: "Age of the oldest acknowledged event not yet in the results aggregates."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flywheel_aggregate_queue_rows",
			Help: "Ingestion groups waiting for aggregation: queue rows, and cycles whose staged track events some definition has not added yet."}),
	}
	reg.MustRegister(g.cycles, g.units, g.repaired, g.seconds, g.steps, g.lag, g.pending)
	return g
}

// cycle runs one aggregation cycle and records it; more says whether the
// queue had more than the cycle took.
func (g *aggregator) cycle(ctx context.Context) (more bool, err error) {
	g.recording.Lock()
	defer g.recording.Unlock()
	start := time.Now()
	rep, err := g.db.AggregateUnlessLed(ctx, g.takeover)
	switch {
	case err != nil:
		g.cycles.WithLabelValues("error").Inc()
		return false, err
	case rep.Skipped:
		g.cycles.WithLabelValues("skipped").Inc()
	case rep.Deferred:
		g.cycles.WithLabelValues("deferred").Inc()
	default:
		g.cycles.WithLabelValues("ok").Inc()
		g.seconds.Observe(time.Since(start).Seconds())
		g.units.Add(float64(rep.Pairs))
		steps := make([]any, 0, 2*len(rep.Steps))
		for _, s := range rep.Steps {
			g.steps.WithLabelValues(s.Name).Observe(s.Took.Seconds())
			steps = append(steps, s.Name, s.Took.Round(time.Millisecond))
		}
		if b := rep.TrackFilter; b != nil && b.Err != nil {
			g.app.log.Warn("the filter of tracked days could not be built: every day of a window is read", "took", b.Took.Round(time.Millisecond), "err", b.Err)
		} else if b != nil {
			g.app.log.Info("filter of tracked days built", "keys", b.Keys, "took", b.Took.Round(time.Millisecond))
		}
		if len(rep.Steps) > 0 {
			g.app.log.Debug("aggregation cycle", "queued", rep.Queued, "units", rep.Units, "tracks", rep.Tracks,
				"pairs", rep.Pairs, "fresh", rep.Fresh, "probed", rep.Probed, "quiet", rep.Quiet, "more", rep.More, slog.Group("steps", steps...))
		}
		for _, f := range rep.Folds {
			steps := make([]any, 0, 2*len(f.Steps))
			for _, s := range f.Steps {
				steps = append(steps, s.Name, s.Took.Round(time.Millisecond))
			}
			g.app.log.Debug("aggregation fold", "definition", f.Definition, "owners", f.Owners, "filled", f.Filled,
				"lookups", f.Lookups, "late", f.Late, "repaired", f.Repaired, "unit_rows", f.Units, "day_rows", f.Days, slog.Group("steps", steps...))
			if f.Repaired > 0 {
				g.repaired.Add(float64(f.Repaired))
				g.app.log.Error("aggregation found units whose stored days were inconsistent; they are recomputed from raw events next cycle",
					"definition", f.Definition, "units", f.Repaired)
			}
		}
		if len(rep.Rebuilt) > 0 {
			g.app.log.Info("aggregates built", "definitions", rep.Rebuilt, "seconds", time.Since(start).Seconds())
		}
	}
	g.observeLag(ctx)
	return rep.More, nil
}

// observeLag sets the lag and queue gauges from the database, which every
// server reads alike: a server that defers to the leader reports the
// same lag as the leader does, not the last it saw when it led.
func (g *aggregator) observeLag(ctx context.Context) {
	if lag, pending, err := g.db.AggregationLag(ctx, time.Now()); err == nil {
		g.lag.Set(lag.Seconds())
		g.pending.Set(float64(pending))
	}
}

// run is the background loop. It leaves the cycle to another server
// that leads aggregation, whose copies of the unit rows and filters are
// current, and takes over once that server has been silent for takeover.
func (g *aggregator) run(ctx context.Context) {
	if led, err := g.db.AggregationLed(ctx, g.takeover); err == nil && led {
		g.cycles.WithLabelValues("deferred").Inc()
		g.observeLag(ctx)
		return
	}
	more, err := g.cycle(ctx)
	if err != nil && ctx.Err() == nil {
		g.app.log.Warn("aggregation failed", "err", err)
	}
	for more && ctx.Err() == nil {
		if more, err = g.cycle(ctx); err != nil && ctx.Err() == nil {
			g.app.log.Warn("aggregation failed", "err", err)
		}
	}
}

// CycleRecorded returns once the background aggregation cycle running
// now, if any, has recorded its figures in the registry. A cycle records
// them after it has released the aggregation lock, so a benchmark that has
// seen a cycle's results and wants its figures waits here, not on the lock.
func (a *App) CycleRecorded() {
	a.agg.recording.Lock()
	a.agg.recording.Unlock() // a barrier: nothing to guard
}

// Aggregate folds every event acknowledged so far into the results
// aggregates and builds any definition not built yet, waiting for a cycle
// that another process is running. Tests and benchmarks call it to read
// results without lag.
func (a *App) Aggregate(ctx context.Context) error {
	for {
		rep, err := a.DB.Aggregate(ctx)
		if err != nil {
			return err
		}
		if rep.Skipped {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !rep.More {
			return nil
		}
	}
}
