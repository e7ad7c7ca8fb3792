package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/store"
)

// BenchmarkAggregateTracks times the cycles that fold new track events into
// aggregates that exist, the load of the tracks step in `bench freshness
// --scenario sustained`, at a smaller size: 100,000 customers exposed over
// the last 14 days with 10 events each over the last 28 (half purchases,
// half revenue, busy customers busier), then each operation ingests 10,000
// more of the same mix, stamped within the hour, and runs cycles until
// they are folded in. Only the cycles are timed; events/s is what one
// aggregator folds in, and the track-owners and tracks steps are reported
// per event. Every operation sends the same events whatever the code (a
// fixed seed), so two builds compare with -benchtime=Nx.
//
// FLYWHEEL_BENCH_TRACKS sets the events an operation ingests (default
// 10,000); FLYWHEEL_BENCH_SERVERS=2 runs each operation's cycles on the
// next of two store handles (processes) in turn, as servers that took
// turns at the aggregation lock did before one of them led (store/
// aggregate_leader.go); FLYWHEEL_BENCH_OUTSIDERS the share of track events (0 to 1,
// default 0) from 100,000 other customers, never exposed, as when an
// experiment runs on part of the traffic; and FLYWHEEL_BENCH_CHECKPOINT=1
// runs a CHECKPOINT before each operation's cycles, so that each page they
// change first writes its whole image to the WAL, as pages do after every
// checkpoint in production.
//
// The test clusters have 32 MB of shared buffers, less than these tables:
// there the cycles also evict and read back pages that the embedded
// cluster's buffers (a quarter of the machine's memory) would hold. For
// figures closer to a served database, point FLYWHEEL_TEST_DATABASE_URL at
// a cluster started with the embedded settings (BENCHMARKS.md, "Where the
// tracks step's time goes").
func BenchmarkAggregateTracks(b *testing.B) {
	batch := benchCount(b, "FLYWHEEL_BENCH_TRACKS", 10_000)
	outside := 0.0
	if s := os.Getenv("FLYWHEEL_BENCH_OUTSIDERS"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			b.Fatalf("FLYWHEEL_BENCH_OUTSIDERS=%q: want a share from 0 to 1", s)
		}
		outside = f
	}
	checkpoint := os.Getenv("FLYWHEEL_BENCH_CHECKPOINT") == "1"
	ab := newAggBench(b, outside)
	if os.Getenv("FLYWHEEL_BENCH_SERVERS") == "2" {
		ab.dbs = append(ab.dbs, openDB(b, ab.url))
	}
	steps := ab.timeCycles(func(op int) {
		at := ab.now.Add(time.Duration(op+1) * time.Minute)
		ab.write(ab.tracks(batch, func() time.Time { return at.Add(-time.Duration(ab.r.Int64N(int64(time.Minute)))) }))
		if checkpoint {
			if _, err := ab.db.Pool().Exec(ab.ctx, `CHECKPOINT`); err != nil {
				b.Fatal(err)
			}
		}
	})
	owners, folds := steps["track owners"], steps["tracks"]
	events := float64(b.N * batch)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(owners.Nanoseconds())/events, "owners-ns/event")
	b.ReportMetric(float64(folds.Nanoseconds())/events, "tracks-ns/event")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAggregateNewUnits times the cycles that fold in new units, the
// other half of the sustained load of `bench freshness` (its 4 % of
// exposures of customers never seen before), on the data of
// BenchmarkAggregateTracks: each operation ingests the exposures of 1,000
// new customers (FLYWHEEL_BENCH_NEW sets how many), with no other event,
// and runs cycles until they are folded in. The history and units steps
// are reported per new unit.
func BenchmarkAggregateNewUnits(b *testing.B) {
	batch := benchCount(b, "FLYWHEEL_BENCH_NEW", 1_000)
	ab := newAggBench(b, 0)
	next := 2 * aggBenchUnits // past the exposed units and the outsiders
	steps := ab.timeCycles(func(op int) {
		at := ab.now.Add(time.Duration(op+1) * time.Minute)
		events := make([]flywheel.Event, 0, batch)
		for i := range batch {
			events = append(events, exposure("customer", ab.unit(next), ab.exp, []string{"control", "treatment"}[i%2], at, ""))
			next++
		}
		ab.write(events)
	})
	history, units := steps["history"], steps["units"]
	n := float64(b.N * batch)
	b.ReportMetric(n/b.Elapsed().Seconds(), "units/s")
	b.ReportMetric(float64(history.Nanoseconds())/n, "history-ns/unit")
	b.ReportMetric(float64(units.Nanoseconds())/n, "units-ns/unit")
	b.ReportMetric(0, "ns/op")
}

// benchCount is the positive number in the environment variable name, or
// def when it is not set.
func benchCount(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// aggBenchUnits are the customers exposed in the aggregation benchmarks'
// data, with aggBenchPerUnit track events each.
const aggBenchUnits, aggBenchPerUnit = 100_000, 10

// aggBench is the data of the aggregation benchmarks, aggregated: the
// metrics purchase and revenue of `bench freshness`, the experiment
// bench-tracks on customers, aggBenchUnits of them exposed over the last
// 14 days with aggBenchPerUnit events each over the last 28 (half
// purchases, half revenue, busy customers busier), a share outside of them
// from customers never exposed.
type aggBench struct {
	b       *testing.B
	ctx     context.Context
	url     string
	db      *store.DB   // ingests, and runs the first operation's cycles
	dbs     []*store.DB // the handles that run the operations' cycles in turn
	op      int         // the operation whose cycles run
	exp     string
	now     time.Time
	r       *rand.Rand
	outside float64
}

func newAggBench(b *testing.B, outside float64) *aggBench {
	ctx := context.Background()
	url := pgtest.NewDatabase(b)
	db := openDB(b, url)
	for _, m := range []flywheel.Metric{
		{Key: "purchase", Type: flywheel.MetricConversion, Event: "purchase", WindowHours: 168},
		{Key: "revenue", Type: flywheel.MetricMean, Event: "revenue", WindowHours: 168, CUPEDHours: 336, Cap: &flywheel.Cap{Value: aggF(500)}},
	} {
		m.Normalize()
		if _, err := db.CreateMetric(ctx, &m); err != nil {
			b.Fatal(err)
		}
	}
	e := &flywheel.Experiment{Key: "bench-tracks", UnitType: "customer", Traffic: 1, Status: flywheel.StatusRunning,
		Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5}},
		Metrics:  flywheel.MetricRefs{Primary: []string{"purchase"}, Secondary: []string{"revenue"}}}
	e.Normalize()
	if _, err := db.CreateExperiment(ctx, e, 0, "bench"); err != nil {
		b.Fatal(err)
	}
	ab := &aggBench{b: b, ctx: ctx, url: url, db: db, dbs: []*store.DB{db}, exp: e.Key, now: time.Now().UTC().Truncate(time.Hour),
		r: rand.New(rand.NewPCG(13, 17)), outside: outside}
	exposures := make([]flywheel.Event, 0, aggBenchUnits)
	for i := range aggBenchUnits {
		ts := ab.now.Add(-time.Duration(ab.r.Int64N(int64(14 * 24 * time.Hour))))
		exposures = append(exposures, exposure("customer", ab.unit(i), e.Key, []string{"control", "treatment"}[i%2], ts, ""))
	}
	ab.write(exposures)
	ab.write(ab.tracks(aggBenchUnits*aggBenchPerUnit, func() time.Time {
		return ab.now.Add(-time.Duration(ab.r.Int64N(int64(28 * 24 * time.Hour))))
	}))
	ab.cycles()
	if _, err := db.Pool().Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return ab
}

func (ab *aggBench) unit(i int) string { return fmt.Sprintf("c-%d", i) }

// tracks makes n track events at the times at gives, of exposed customers
// (busy ones more often) or, for the share outside, of others.
func (ab *aggBench) tracks(n int, at func() time.Time) []flywheel.Event {
	out := make([]flywheel.Event, 0, n)
	for range n {
		var u string
		if ab.outside > 0 && ab.r.Float64() < ab.outside {
			u = ab.unit(aggBenchUnits + ab.r.IntN(aggBenchUnits)) // never exposed
		} else {
			u = ab.unit(int(aggBenchUnits * math.Pow(ab.r.Float64(), 1.5)))
		}
		ev := track(u, "purchase", at())
		if ab.r.IntN(2) == 0 {
			ev.Name, ev.Value = "revenue", aggF(math.Round(ab.r.ExpFloat64()*4000)/100)
		}
		ev.ReceivedAt = ab.now
		out = append(out, ev)
	}
	return out
}

func (ab *aggBench) write(events []flywheel.Event) {
	for i := 0; i < len(events); i += 1000 {
		if _, err := ab.db.WriteEvents(ab.ctx, events[i:min(i+1000, len(events))]); err != nil {
			ab.b.Fatal(err)
		}
	}
}

// timeCycles runs b.N operations, each prepare(op) untimed and then the
// cycles it makes necessary, timed, and returns the time each step took
// over all of them.
func (ab *aggBench) timeCycles(prepare func(op int)) map[string]time.Duration {
	total := map[string]time.Duration{}
	ab.b.ResetTimer()
	for op := range ab.b.N {
		ab.b.StopTimer()
		ab.op = op
		prepare(op)
		ab.b.StartTimer()
		for name, took := range ab.cycles() {
			total[name] += took
		}
	}
	return total
}

// cycles runs aggregation cycles until the queue is empty, and returns the
// time each step took over them.
func (ab *aggBench) cycles() (steps map[string]time.Duration) {
	steps = map[string]time.Duration{}
	for {
		rep, err := ab.dbs[ab.op%len(ab.dbs)].Aggregate(ab.ctx)
		if err != nil {
			ab.b.Fatal(err)
		}
		for _, s := range rep.Steps {
			steps[s.Name] += s.Took
		}
		if !rep.Skipped && !rep.More {
			return steps
		}
	}
}
