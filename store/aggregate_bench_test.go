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
// 10,000); FLYWHEEL_BENCH_OUTSIDERS the share of track events (0 to 1,
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
	const units, perUnit = 100_000, 10
	batch := 10_000
	if s := os.Getenv("FLYWHEEL_BENCH_TRACKS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("FLYWHEEL_BENCH_TRACKS=%q: want a number of events", s)
		}
		batch = n
	}
	outside := 0.0
	if s := os.Getenv("FLYWHEEL_BENCH_OUTSIDERS"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			b.Fatalf("FLYWHEEL_BENCH_OUTSIDERS=%q: want a share from 0 to 1", s)
		}
		outside = f
	}
	checkpoint := os.Getenv("FLYWHEEL_BENCH_CHECKPOINT") == "1"
	ctx := context.Background()
	db := newDB(b)
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
	now := time.Now().UTC().Truncate(time.Hour)
	r := rand.New(rand.NewPCG(13, 17))
	unit := func(i int) string { return fmt.Sprintf("c-%d", i) }
	skewed := func() string {
		if outside > 0 && r.Float64() < outside {
			return unit(units + r.IntN(units)) // never exposed
		}
		return unit(int(units * math.Pow(r.Float64(), 1.5)))
	}
	tracks := func(n int, at func() time.Time) []flywheel.Event {
		out := make([]flywheel.Event, 0, n)
		for range n {
			ev := track(skewed(), "purchase", at())
			if r.IntN(2) == 0 {
				ev.Name, ev.Value = "revenue", aggF(math.Round(r.ExpFloat64()*4000)/100)
			}
			ev.ReceivedAt = now
			out = append(out, ev)
		}
		return out
	}
	write := func(events []flywheel.Event) {
		for i := 0; i < len(events); i += 1000 {
			if _, err := db.WriteEvents(ctx, events[i:min(i+1000, len(events))]); err != nil {
				b.Fatal(err)
			}
		}
	}
	exposures := make([]flywheel.Event, 0, units)
	for i := range units {
		ts := now.Add(-time.Duration(r.Int64N(int64(14 * 24 * time.Hour))))
		exposures = append(exposures, exposure("customer", unit(i), e.Key, []string{"control", "treatment"}[i%2], ts, ""))
	}
	write(exposures)
	write(tracks(units*perUnit, func() time.Time { return now.Add(-time.Duration(r.Int64N(int64(28 * 24 * time.Hour)))) }))
	cycles := func() (steps map[string]time.Duration) {
		steps = map[string]time.Duration{}
		for {
			rep, err := db.Aggregate(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range rep.Steps {
				steps[s.Name] += s.Took
			}
			if !rep.Skipped && !rep.More {
				return steps
			}
		}
	}
	cycles()
	if _, err := db.Pool().Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	minute := 0
	var owners, folds time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		minute++
		at := now.Add(time.Duration(minute) * time.Minute)
		write(tracks(batch, func() time.Time { return at.Add(-time.Duration(r.Int64N(int64(time.Minute)))) }))
		if checkpoint {
			if _, err := db.Pool().Exec(ctx, `CHECKPOINT`); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		steps := cycles()
		owners, folds = owners+steps["track owners"], folds+steps["tracks"]
	}
	events := float64(b.N * batch)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(owners.Nanoseconds())/events, "owners-ns/event")
	b.ReportMetric(float64(folds.Nanoseconds())/events, "tracks-ns/event")
	b.ReportMetric(0, "ns/op")
}
