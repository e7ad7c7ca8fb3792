package store_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/store"
)

// The incremental aggregates (store/aggregate.go) must equal a
// recomputation from raw events, whatever arrives in whatever order:
// VerifyAggregates compares the two, and every test here ends with it.

var (
	aggBase = time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	aggNow  = aggBase.Add(150 * time.Hour) // exposures run to +180h: some units are still maturing
)

func aggF(v float64) *float64 { return &v }

// aggMetricDefs covers every metric type, windows with and without an end,
// a fixed and a percentile cap, and several CUPED periods.
func aggMetricDefs() []flywheel.Metric {
	return []flywheel.Metric{
		{Key: "conv", Type: flywheel.MetricConversion, Event: "purchase", CUPEDHours: 48},
		{Key: "revenue", Type: flywheel.MetricMean, Event: "purchase", WindowHours: 72, CUPEDHours: 168, Cap: &flywheel.Cap{Value: aggF(150)}},
		{Key: "spend", Type: flywheel.MetricMean, Event: "purchase", CUPEDHours: 336, Cap: &flywheel.Cap{Percentile: aggF(0.9)}},
		{Key: "views", Type: flywheel.MetricCount, Event: "view", WindowHours: 24, CUPEDHours: 24, Cap: &flywheel.Cap{Value: aggF(3)}},
		{Key: "aov", Type: flywheel.MetricRatio, Numerator: "purchase", Denominator: "checkout", WindowHours: 96, CUPEDHours: flywheel.DefaultCUPEDHours, Cap: &flywheel.Cap{Percentile: aggF(0.8)}},
		{Key: "return", Type: flywheel.MetricRetention, Event: "view", FromHours: 24, ToHours: 96, CUPEDHours: 12},
		{Key: "basket", Type: flywheel.MetricRatio, Numerator: "purchase", Denominator: "checkout", WindowHours: 48, Cap: &flywheel.Cap{Value: aggF(200)}},
	}
}

// newAggDB opens a fresh database with the metrics and the experiments
// agg-cust (on customers) and agg-dev (on devices).
func newAggDB(tb testing.TB) *store.DB {
	tb.Helper()
	db := newDB(tb)
	createAggMetrics(tb, db)
	createAggExperiments(tb, db, "")
	return db
}

func createAggMetrics(tb testing.TB, db *store.DB) {
	tb.Helper()
	for _, m := range aggMetricDefs() {
		m.Normalize()
		if err := m.Validate(); err != nil {
			tb.Fatalf("metric %s: %v", m.Key, err)
		}
		if _, err := db.CreateMetric(context.Background(), &m); err != nil {
			tb.Fatalf("CreateMetric(%s): %v", m.Key, err)
		}
	}
}

// createAggExperiments creates agg-cust<suffix> and agg-dev<suffix>.
func createAggExperiments(tb testing.TB, db *store.DB, suffix string) {
	tb.Helper()
	for _, e := range []*flywheel.Experiment{
		{Key: "agg-cust" + suffix, UnitType: "customer", Traffic: 1, Status: flywheel.StatusRunning,
			Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5}},
			Metrics:  flywheel.MetricRefs{Primary: []string{"conv", "revenue"}, Guardrails: []string{"views"}, Secondary: []string{"spend", "aov", "return", "basket"}}},
		{Key: "agg-dev" + suffix, UnitType: "device", Traffic: 1, Status: flywheel.StatusRunning,
			Variants: []flywheel.Variant{{Key: "a", Weight: 0.4}, {Key: "b", Weight: 0.3}, {Key: "c", Weight: 0.3}},
			Metrics:  flywheel.MetricRefs{Primary: []string{"views", "return"}, Secondary: []string{"conv", "revenue", "spend", "aov", "basket"}}},
	} {
		e.Normalize()
		if _, err := db.CreateExperiment(context.Background(), e, 0, "test"); err != nil {
			tb.Fatalf("CreateExperiment(%s): %v", e.Key, err)
		}
	}
}

// aggregateAll runs cycles until the queue is folded in, and merges their
// reports (Rebuilt sorted).
func aggregateAll(tb testing.TB, db *store.DB) store.AggregateReport {
	tb.Helper()
	var all store.AggregateReport
	for range 200 {
		rep, err := db.Aggregate(context.Background())
		if err != nil {
			tb.Fatalf("Aggregate: %v", err)
		}
		if rep.Skipped {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		all.Queued, all.Units, all.Pairs = all.Queued+rep.Queued, all.Units+rep.Units, all.Pairs+rep.Pairs
		all.Tracks, all.Fresh = all.Tracks+rep.Tracks, all.Fresh+rep.Fresh
		all.Probed, all.Quiet = all.Probed+rep.Probed, all.Quiet+rep.Quiet
		if rep.TrackFilter != nil {
			all.TrackFilter = rep.TrackFilter
		}
		all.Rebuilt = append(all.Rebuilt, rep.Rebuilt...)
		all.Folds = append(all.Folds, rep.Folds...)
		all.More = all.More || rep.More
		if !rep.More {
			sort.Strings(all.Rebuilt)
			return all
		}
	}
	tb.Fatalf("Aggregate still has more after 200 cycles")
	return all
}

// aggExperiment returns an experiment and its metrics' current definitions.
func aggExperiment(tb testing.TB, db *store.DB, key string) (*flywheel.Experiment, []flywheel.Metric) {
	tb.Helper()
	ctx := context.Background()
	e, err := db.FindExperimentByKey(ctx, key)
	if err != nil {
		tb.Fatalf("FindExperimentByKey(%s): %v", key, err)
	}
	ms, err := db.FindMetricsByKeys(ctx, e.Metrics.Keys())
	if err != nil {
		tb.Fatalf("FindMetricsByKeys: %v", err)
	}
	return e, ms
}

// verifyAggregates checks experiments against a recomputation: plain, with
// overridden units (two exposed ones picked by r, and an unknown id), and
// by segment with the overrides; the timeseries too (plain, overrides); and
// that every definition is built, so that ResultInput reads the aggregates
// rather than falling back.
func verifyAggregates(tb testing.TB, db *store.DB, r *rand.Rand, label string, keys ...string) {
	tb.Helper()
	// A unit's day rows are the days before its last, which its unit row
	// holds (the tracks step trusts this).
	if n := queryInt(tb, db, `SELECT count(*) FROM agg_unit_days d LEFT JOIN agg_units a USING (experiment, metric, unit_id)
		WHERE a.last_day IS NULL OR d.day >= a.last_day`); n != 0 {
		tb.Errorf("%s: %d day rows on or after their unit's last day, or without one", label, n)
	}
	for _, key := range keys {
		e, ms := aggExperiment(tb, db, key)
		want := []string{""}
		for _, m := range ms {
			want = append(want, m.Key)
		}
		sort.Strings(want)
		if got := queryStrings(tb, db, `SELECT metric FROM agg_defs WHERE experiment = $1 ORDER BY metric`, key); !slices.Equal(got, want) {
			tb.Errorf("%s: agg_defs of %s = %q, want %q", label, key, got, want)
		}
		ids := queryStrings(tb, db, `SELECT unit_id FROM exposures WHERE experiment = $1 ORDER BY unit_id`, key)
		overrides := []string{"no-such-unit"}
		for range min(2, len(ids)) {
			overrides = append(overrides, ids[r.IntN(len(ids))])
		}
		for _, q := range []struct {
			name string
			q    analysis.Query
		}{
			{"plain", analysis.Query{Now: aggNow}},
			{"overrides", analysis.Query{Now: aggNow, Overrides: overrides}},
			{"segment and overrides", analysis.Query{Now: aggNow, Segment: "country", Overrides: overrides}},
		} {
			if err := db.VerifyAggregates(context.Background(), e, ms, q.q); err != nil {
				tb.Errorf("%s: VerifyAggregates(%s, %s): %v", label, key, q.name, err)
			}
			if q.q.Segment == "" {
				if err := db.VerifyTimeseries(context.Background(), e, ms, q.q); err != nil {
					tb.Errorf("%s: VerifyTimeseries(%s, %s): %v", label, key, q.name, err)
				}
			}
		}
	}
}

// aggGen makes random events about customers (<prefix>c00, ...) and
// devices (<prefix>d00, ...) for the experiments cust and dev, remembering
// what it sent so that it can send duplicates; it never names an erased
// unit again.
type aggGen struct {
	r           *rand.Rand
	prefix      string
	cust, dev   string
	custs, devs int
	sent        []flywheel.Event
	exposed     map[string][]time.Time // experiment/unit: exposure times sent
	units       []flywheel.UnitRef     // the exposed units, first exposure first
	erased      map[string]bool        // unit ids
	whole       bool                   // whole-number values only
}

func newAggGen(seed uint64, prefix, suffix string, custs, devs int) *aggGen {
	return &aggGen{r: rand.New(rand.NewPCG(seed, 0xa99)), prefix: prefix, cust: "agg-cust" + suffix, dev: "agg-dev" + suffix,
		custs: custs, devs: devs, exposed: map[string][]time.Time{}, erased: map[string]bool{}}
}

// unit returns a unit of the type that is not erased; for a customer, one
// with an index below below (0 = any). ok is false when none was found.
func (g *aggGen) unit(unitType string, below int) (id string, index int, ok bool) {
	n, letter := g.devs, "d"
	if unitType == "customer" {
		n, letter = g.custs, "c"
	}
	if below > 0 {
		n = min(n, below)
	}
	for range 20 {
		i := g.r.IntN(n)
		if id := fmt.Sprintf("%s%s%02d", g.prefix, letter, i); !g.erased[id] {
			return id, i, true
		}
	}
	return "", 0, false
}

func (g *aggGen) at(fromHours, toHours int) time.Time {
	return aggBase.Add(time.Duration(fromHours*60+g.r.IntN((toHours-fromHours)*60)) * time.Minute)
}

// variant is the unit's assigned variant; now and then another one.
func (g *aggGen) variant(exp, unit string, variants []string) string {
	i := int(crc32.ChecksumIEEE([]byte(exp+"/"+unit))) % len(variants)
	if g.r.IntN(12) == 0 {
		i = g.r.IntN(len(variants))
	}
	return variants[i]
}

var aggAttributes = []string{`{"country": "de"}`, `{"country": "fr"}`, `{"country": "us", "plan": "pro"}`, `{"plan": "free"}`, ``}

// event returns one random event: an exposure (again, to another variant,
// or earlier than one already sent), an identity link, a track event
// before, in or after a window (sometimes exactly on its edge), or the id
// of an event already sent.
func (g *aggGen) event() (flywheel.Event, bool) {
	switch k := g.r.IntN(100); {
	case k < 6 && len(g.sent) > 0:
		e := g.sent[g.r.IntN(len(g.sent))]
		if g.erased[e.UnitID] || g.erased[e.CustomerID] {
			return e, false
		}
		if g.r.IntN(2) == 0 { // the stored one wins
			e.Timestamp, e.Value = e.Timestamp.Add(time.Hour), aggF(999)
		}
		return e, true
	case k < 30:
		exp, unitType, variants := g.cust, "customer", []string{"control", "treatment"}
		if g.r.IntN(2) == 0 {
			exp, unitType, variants = g.dev, "device", []string{"a", "b", "c"}
		}
		unit, _, ok := g.unit(unitType, 0)
		if !ok {
			return flywheel.Event{}, false
		}
		ts := g.at(0, 180)
		if g.exposed[exp+"/"+unit] == nil {
			g.units = append(g.units, flywheel.UnitRef{UnitType: unitType, UnitID: unit})
		}
		g.exposed[exp+"/"+unit] = append(g.exposed[exp+"/"+unit], ts)
		return exposure(unitType, unit, exp, g.variant(exp, unit, variants), ts, aggAttributes[g.r.IntN(len(aggAttributes))]), true
	case k < 42:
		return g.link()
	}
	unitType, exp := "customer", g.cust
	if g.r.IntN(5) < 2 {
		unitType, exp = "device", g.dev
	}
	unit, _, ok := g.unit(unitType, 0)
	if !ok {
		return flywheel.Event{}, false
	}
	e := flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: unitType, UnitID: unit, Timestamp: g.at(-250, 350)}
	if ts := g.exposed[exp+"/"+unit]; len(ts) > 0 && g.r.IntN(4) == 0 {
		offsets := []int{-336, -168, -48, -24, -12, 0, 24, 72, 96}
		e.Timestamp = ts[g.r.IntN(len(ts))].Add(time.Duration(offsets[g.r.IntN(len(offsets))]) * time.Hour)
	}
	switch n := g.r.IntN(100); {
	case n < 50:
		e.Name = "purchase"
		if g.r.IntN(10) > 0 {
			e.Value = aggF(float64(g.r.IntN(240)+1) / 4) // quarters: exact in binary
		}
		if g.whole && e.Value != nil {
			e.Value = aggF(float64(g.r.IntN(60) + 1))
		}
		if g.r.IntN(12) == 0 {
			e.Value = aggF(500 + float64(g.r.IntN(100))) // above the fixed cap
		}
	case n < 85:
		e.Name = "view"
	default:
		e.Name = "checkout"
		if g.r.IntN(2) == 0 {
			e.Value = aggF(float64(g.r.IntN(3) + 1))
		}
	}
	return e, true
}

// link returns an identity link: a device to a customer, or a customer to
// one with a smaller index (no cycles).
func (g *aggGen) link() (flywheel.Event, bool) {
	if g.r.IntN(2) == 0 {
		dev, _, ok1 := g.unit("device", 0)
		cust, _, ok2 := g.unit("customer", 0)
		return identify("device", dev, cust, g.at(-100, 300)), ok1 && ok2
	}
	from, i, ok := g.unit("customer", 0)
	if !ok || i == 0 {
		return flywheel.Event{}, false
	}
	to, _, ok := g.unit("customer", i)
	return identify("customer", from, to, g.at(-100, 300)), ok
}

// batch returns n random events, received now.
func (g *aggGen) batch(n int) []flywheel.Event { return g.collect(n, g.event) }

func (g *aggGen) collect(n int, next func() (flywheel.Event, bool)) []flywheel.Event {
	var out []flywheel.Event
	for len(out) < n {
		if e, ok := next(); ok {
			e.ReceivedAt = time.Now().UTC()
			out = append(out, e)
			g.sent = append(g.sent, e)
		}
	}
	return out
}

// erase erases a random unit with every id linked to it.
func (g *aggGen) erase(tb testing.TB, db *store.DB) []string {
	tb.Helper()
	typ := []string{"customer", "device"}[g.r.IntN(2)]
	id, _, ok := g.unit(typ, 0)
	if !ok {
		return nil
	}
	u := flywheel.UnitRef{UnitType: typ, UnitID: id}
	info, err := db.DescribeUnit(context.Background(), u)
	if err != nil {
		tb.Fatalf("DescribeUnit: %v", err)
	}
	ids := []string{id}
	for _, l := range info.Linked {
		ids = append(ids, l.UnitID)
	}
	if _, err := db.EraseUnit(context.Background(), u, "test"); err != nil {
		tb.Fatalf("EraseUnit: %v", err)
	}
	for _, id := range ids {
		g.erased[id] = true
	}
	return ids
}

// checkErased fails if an aggregate table still names one of ids.
func checkErased(tb testing.TB, db *store.DB, label string, ids []string) {
	tb.Helper()
	for _, q := range []string{
		`SELECT count(*) FROM agg_units WHERE unit_id = ANY($1)`,
		`SELECT count(*) FROM agg_queue WHERE unit_ids && $1::text[] OR track_ids && $1::text[]`,
		`SELECT count(*) FROM agg_crossover WHERE root = ANY($1)`,
		`SELECT count(*) FROM agg_unit_days WHERE unit_id = ANY($1)`,
		`SELECT count(*) FROM agg_staged_tracks WHERE owners && $1::text[]`,
		`SELECT count(*) FROM agg_staged_pairs WHERE unit_id = ANY($1)`,
		`SELECT count(*) FROM agg_linked WHERE unit_id = ANY($1)`,
	} {
		if n := queryInt(tb, db, q, ids); n != 0 {
			tb.Errorf("%s: %d rows name erased ids %v: %s", label, n, ids, q)
		}
	}
}

// TestAggregateRandomised writes rounds of random events, consent changes
// and erasures, aggregating after each round, and checks the aggregates
// against a recomputation every time. The seeds share one database, each
// with experiments and units of its own.
func TestAggregateRandomised(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	createAggMetrics(t, db)
	duplicates := 0
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			suffix := fmt.Sprintf("-%d", seed)
			createAggExperiments(t, db, suffix)
			g := newAggGen(seed, fmt.Sprintf("s%d-", seed), suffix, 40, 40)
			var optedOut []flywheel.UnitRef
			for round := range 4 {
				for b := range 3 {
					events := g.batch(40 + g.r.IntN(30))
					duplicates += len(events) - len(mustWrite(t, db, events...))
					if b == 1 && g.r.IntN(3) == 0 { // the queue names the erased units
						checkErased(t, db, fmt.Sprintf("round %d, after EraseUnit", round), g.erase(t, db))
					}
				}
				rep := aggregateAll(t, db)
				if round > 0 && (len(rep.Rebuilt) > 0 || rep.Queued == 0) {
					t.Errorf("round %d: Aggregate = %+v, want queue rows folded in and nothing rebuilt", round, rep)
				}
				if want := aggDefNames(g.cust, g.dev); round == 0 && !slices.Equal(rep.Rebuilt, want) {
					t.Errorf("first Aggregate rebuilt %q, want %q", rep.Rebuilt, want)
				}
				// Then links and consent alone, so that no other event of
				// their units folds them in by chance.
				mustWrite(t, db, g.collect(8, g.link)...)
				for range 2 {
					if i := g.r.IntN(len(optedOut) + 1); i < len(optedOut) && g.r.IntN(2) == 0 {
						if u := optedOut[i]; !g.erased[u.UnitID] {
							if err := db.SetConsent(ctx, u, true, 0, "test"); err != nil {
								t.Fatalf("SetConsent: %v", err)
							}
						}
						optedOut = slices.Delete(optedOut, i, i+1)
					} else if u := g.units[g.r.IntN(len(g.units))]; !g.erased[u.UnitID] {
						if err := db.SetConsent(ctx, u, false, 0, "test"); err != nil {
							t.Fatalf("SetConsent: %v", err)
						}
						optedOut = append(optedOut, u)
					}
				}
				if rep := aggregateAll(t, db); len(rep.Rebuilt) > 0 || rep.Queued == 0 {
					t.Errorf("round %d: Aggregate of the links = %+v, want queue rows folded in and nothing rebuilt", round, rep)
				}
				verifyAggregates(t, db, g.r, fmt.Sprintf("round %d", round), g.cust, g.dev)
				var erased []string
				for id := range g.erased {
					erased = append(erased, id)
				}
				checkErased(t, db, fmt.Sprintf("round %d", round), erased)
			}
			checkReadsAggregates(t, db, g)
		})
	}
	if n := queryInt(t, db, `SELECT count(*) FROM events WHERE value = 999`); n != 0 {
		t.Errorf("%d events stored from a duplicate id with other content, want the first kept", n)
	}
	if duplicates == 0 {
		t.Errorf("the scenarios sent no duplicate ids")
	}
	// The scenarios made what they are meant to test.
	for what, q := range map[string]string{
		"units exposed to several variants":            `SELECT count(*) FROM exposures WHERE multiple`,
		"opted-out units":                              `SELECT count(*) FROM consent WHERE NOT analytics`,
		"units opted back in":                          `SELECT count(*) FROM consent WHERE analytics`,
		"devices linked through a chain of customers":  `SELECT count(*) FROM aliases a JOIN aliases b ON b.unit_type = 'customer' AND b.unit_id = a.customer_id WHERE a.unit_type = 'device'`,
		"customers whose devices saw several variants": `SELECT count(*) FROM agg_crossover WHERE variants > 1`,
		"erasures": `SELECT count(*) FROM audit_log WHERE action = 'erase_unit'`,
	} {
		if n := queryInt(t, db, q); n == 0 {
			t.Errorf("the scenarios made no %s", what)
		}
	}
}

// TestAggregatePartitioned runs rounds of random events into daily
// partitions of events that reach weeks past the last event, as a server's
// do: a cycle looks a unit's events up only in the partitions up to the
// latest one holding an event (visibleEventsEnd), and the aggregates must
// still equal a recomputation, the events of that last day included.
func TestAggregatePartitioned(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	if _, err := db.EnsurePartitions(ctx, aggBase, 15, 30); err != nil {
		t.Fatal(err)
	}
	createAggMetrics(t, db)
	createAggExperiments(t, db, "")
	g := newAggGen(31, "", "", 40, 40)
	for round := range 4 {
		for range 3 {
			mustWrite(t, db, g.batch(50)...)
		}
		aggregateAll(t, db)
		mustWrite(t, db, g.collect(6, g.link)...)
		aggregateAll(t, db)
		verifyAggregates(t, db, g.r, fmt.Sprintf("round %d", round), g.cust, g.dev)
		if !store.WaitTrackFilterForTest(db) {
			t.Fatalf("round %d: the filter of tracked days was not built", round)
		}
	}
	// The filter was built from the partitions' events, from two days
	// before the longest CUPED period (14 days) before the end of the
	// last day with events (this test's clock is later).
	var last time.Time
	if err := db.Pool().QueryRow(ctx, `SELECT max(ts) FROM events`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	want := last.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1-14-2)
	if from, ok := store.TrackFilterFromForTest(db); !ok || !from.Equal(want) {
		t.Errorf("the filter of tracked days holds the days from %v (built %v), want %v", from, ok, want)
	}
	// Units exposed then have windows within its days: a new customer is
	// not looked up, one with a purchase a week before is, on that day.
	buy := track("pt2", "purchase", last.Add(-7*24*time.Hour))
	buy.Value = aggF(30)
	mustWrite(t, db, buy)
	aggregateAll(t, db)
	mustWrite(t, db, exposure("customer", "pt1", g.cust, "control", last, ""), exposure("customer", "pt2", g.cust, "treatment", last, ""))
	if rep := aggregateAll(t, db); rep.Probed != 1 || rep.Quiet != 1 {
		t.Errorf("two customers exposed on the last day: %d looked up, %d left out, want 1 and 1", rep.Probed, rep.Quiet)
	}
	verifyAggregates(t, db, g.r, "exposed on the last day", g.cust, g.dev)
	// The scenario: every event in a daily partition, the latest of them
	// days before the last partition.
	if n := queryInt(t, db, `SELECT count(*) FROM events_default`); n != 0 {
		t.Errorf("%d events in the default partition, want all in daily ones", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM events WHERE ts >= $1`, aggBase.AddDate(0, 0, 20)); n != 0 {
		t.Errorf("%d events in the last ten partitions, want them empty", n)
	}
}

// TestAggregateFoldFails makes the folds of some definitions fail (their
// transactions roll back, as when a process stops after a cycle staged its
// track events): the events stay staged and pending, later cycles recompute
// some of their units (links), erase others and stage more, and once the
// folds succeed the aggregates equal a recomputation, with nothing pending
// and no staged row left behind.
func TestAggregateFoldFails(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	createAggMetrics(t, db)
	createAggExperiments(t, db, "-ff")
	g := newAggGen(7, "ff-", "-ff", 60, 60)
	metricFault(t, db, "fold_fault", "BEFORE UPDATE OF folded_cycle ON agg_defs", `RAISE EXCEPTION 'fold of % fails', NEW.metric`)
	mustWrite(t, db, g.batch(80)...)
	aggregateAll(t, db)
	failed, staleRounds := 0, 0
	var erased []string
	for round := range 8 {
		if _, err := db.Pool().Exec(ctx, `DELETE FROM fold_faults`); err != nil {
			t.Fatal(err)
		}
		for _, m := range aggMetricDefs() {
			if g.r.IntN(3) == 0 {
				if _, err := db.Pool().Exec(ctx, `INSERT INTO fold_faults VALUES ($1)`, m.Key); err != nil {
					t.Fatal(err)
				}
			}
		}
		for b := range 3 {
			mustWrite(t, db, g.batch(40+g.r.IntN(30))...)
			if b == 1 {
				mustWrite(t, db, g.collect(6, g.link)...)
			}
			if b == 2 && round%3 == 1 {
				ids := g.erase(t, db)
				checkErased(t, db, fmt.Sprintf("round %d, erased with folds behind", round), ids)
				erased = append(erased, ids...)
			}
			_, err := db.Aggregate(ctx)
			if err == nil {
				continue
			}
			if !strings.Contains(err.Error(), "fails") {
				t.Fatalf("round %d: Aggregate: %v, want a failed fold", round, err)
			}
			failed++
			if _, pending, err := db.AggregationLag(ctx, time.Now()); err != nil || pending == 0 {
				t.Errorf("round %d: after a failed fold AggregationLag = %d pending, %v; want the staged cycle pending", round, pending, err)
			}
		}
		if queryInt(t, db, `SELECT count(*) FROM agg_defs WHERE metric <> '' AND folded_cycle < (SELECT max(cycle) FROM agg_staged_cycles)`) > 0 {
			staleRounds++
		}
	}
	if failed == 0 || staleRounds == 0 {
		t.Fatalf("%d folds failed, %d rounds ended with definitions behind: the test made no leftovers", failed, staleRounds)
	}
	if _, err := db.Pool().Exec(ctx, `DELETE FROM fold_faults`); err != nil {
		t.Fatal(err)
	}
	aggregateAll(t, db)
	verifyAggregates(t, db, g.r, "after the folds succeed", g.cust, g.dev)
	if lag, pending, err := db.AggregationLag(ctx, time.Now()); err != nil || pending != 0 || lag != 0 {
		t.Errorf("AggregationLag = %v, %d pending, %v; want nothing pending", lag, pending, err)
	}
	checkErased(t, db, "at the end", erased)
	// The next cycle removes the rows every definition has folded.
	mustWrite(t, db, g.batch(20)...)
	aggregateAll(t, db)
	if n := queryInt(t, db, `SELECT (SELECT count(*) FROM agg_staged_tracks WHERE cycle < (SELECT max(cycle) FROM agg_staged_cycles))
		+ (SELECT count(*) FROM agg_staged_cycles) - 1`); n > 0 {
		t.Errorf("%d staged rows of earlier cycles left after every definition folded them", n)
	}
	verifyAggregates(t, db, g.r, "at the end", g.cust, g.dev)
}

// metricFault installs trigger name, FOR EACH ROW on event (such as
// "AFTER UPDATE ON agg_units"), which runs action (PL/pgSQL) for the rows
// whose metric is listed in the table name+"s", created empty here: a test
// inserts a metric there to turn the fault on for it.
func metricFault(tb testing.TB, db *store.DB, name, event, action string) {
	tb.Helper()
	for _, sql := range []string{
		`CREATE TABLE ` + name + `s (metric text PRIMARY KEY)`,
		`CREATE FUNCTION ` + name + `() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
		    IF EXISTS (SELECT 1 FROM ` + name + `s WHERE metric = NEW.metric) THEN
		        ` + action + `;
		    END IF;
		    RETURN NEW;
		END $$`,
		`CREATE TRIGGER ` + name + ` ` + event + ` FOR EACH ROW EXECUTE FUNCTION ` + name + `()`,
	} {
		if _, err := db.Pool().Exec(context.Background(), sql); err != nil {
			tb.Fatalf("%s: %v", sql, err)
		}
	}
}

// TestAggregateFoldEpochMoved moves a definition's epoch while its fold
// runs (a trigger on agg_units does, for each unit row the fold writes, as
// another writer of the definition's rows would): the fold must fail
// instead of recording its result, and once nothing moves the epoch the
// next folds must still give what a recomputation gives.
func TestAggregateFoldEpochMoved(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	createAggMetrics(t, db)
	createAggExperiments(t, db, "-em")
	g := newAggGen(11, "em-", "-em", 60, 60)
	metricFault(t, db, "epoch_fault", "AFTER UPDATE ON agg_units",
		`UPDATE agg_defs SET epoch = nextval('agg_epoch') WHERE experiment = NEW.experiment AND metric = NEW.metric`)
	mustWrite(t, db, g.batch(80)...)
	aggregateAll(t, db)
	metric := aggMetricDefs()[1].Key // revenue: most purchases change a unit row
	if _, err := db.Pool().Exec(ctx, `INSERT INTO epoch_faults VALUES ($1)`, metric); err != nil {
		t.Fatal(err)
	}
	var failed error
	for round := 0; round < 10 && failed == nil; round++ {
		mustWrite(t, db, g.batch(60)...)
		_, failed = db.Aggregate(ctx)
	}
	if failed == nil || !strings.Contains(failed.Error(), "epoch changed during its fold") {
		t.Fatalf("Aggregate with %s's epoch moved during its folds: %v, want its fold to fail", metric, failed)
	}
	if _, err := db.Pool().Exec(ctx, `DELETE FROM epoch_faults`); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, db, g.batch(60)...)
	aggregateAll(t, db)
	verifyAggregates(t, db, g.r, "after a fold whose epoch moved", g.cust, g.dev)
}

// aggDefNames returns the names of the definitions of the experiments, as
// AggregateReport.Rebuilt gives them.
func aggDefNames(exps ...string) []string {
	var out []string
	for _, e := range exps {
		out = append(out, e+"/")
		for _, m := range aggMetricDefs() {
			out = append(out, e+"/"+m.Key)
		}
	}
	sort.Strings(out)
	return out
}

// checkReadsAggregates shows that ResultInput reads the aggregates: a new
// exposure not folded in yet is in a recomputation but not in ResultInput,
// which reports the lag; after a cycle both have it.
func checkReadsAggregates(t *testing.T, db *store.DB, g *aggGen) {
	t.Helper()
	ctx := context.Background()
	e, ms := aggExperiment(t, db, g.cust)
	q := analysis.Query{Now: time.Now().Add(time.Minute)}
	units := func(in analysis.Input, err error) (n int64) {
		if err != nil {
			t.Fatalf("results of %s: %v", g.cust, err)
		}
		for _, a := range in.Arms {
			n += a.Units + a.OptedOut
		}
		return n
	}
	before := units(db.ResultInput(ctx, e, ms, q))
	newcomer := exposure("customer", g.prefix+"newcomer", g.cust, "control", aggBase, "")
	newcomer.ReceivedAt = time.Now().Add(-time.Minute)
	mustWrite(t, db, newcomer)
	stale, err := db.ResultInput(ctx, e, ms, q)
	f := stale.Freshness
	if got, raw := units(stale, err), units(db.RecomputeResultInput(ctx, e, ms, q)); got != before || raw != before+1 ||
		f.LagSeconds < 60 || f.PendingEvents != 1 || !f.AsOf.Equal(newcomer.ReceivedAt.Truncate(time.Microsecond)) {
		t.Errorf("units before/after a new exposure: ResultInput %d/%d (%+v), recomputed %d; want the aggregates, unchanged, with 1 pending event received a minute ago",
			before, got, f, raw)
	}
	if _, tf, err := db.TimeseriesInput(ctx, e, ms[0], q); err != nil || tf != f {
		t.Errorf("timeseries freshness = %+v, %v; want the results' %+v", tf, err, f)
	}
	aggregateAll(t, db)
	after, err := db.ResultInput(ctx, e, ms, q)
	if got := units(after, err); got != before+1 || after.Freshness != analysis.Complete(q.Now) {
		t.Errorf("after a cycle: ResultInput units %d, %+v; want %d, complete as of %s", got, after.Freshness, before+1, q.Now)
	}
	if err := db.VerifyAggregates(ctx, e, ms, q); err != nil {
		t.Errorf("after a cycle the aggregates differ from a recomputation: %v", err)
	}
}

// TestAggregateMetricChange: a definition whose metric changes is rebuilt,
// and results recompute until it is; a percentile cap needs no rebuild.
func TestAggregateMetricChange(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	g := newAggGen(11, "", "", 30, 30)
	g.whole = true // see TestAggregateConversionsRoundHalfEven
	for range 3 {
		mustWrite(t, db, g.batch(60)...)
	}
	aggregateAll(t, db)
	verifyAggregates(t, db, g.r, "before", g.cust, g.dev)

	steps := []struct {
		name   string
		metric string
		change func(m *flywheel.Metric)
		want   []string // rebuilt
	}{
		{"window", "revenue", func(m *flywheel.Metric) { m.WindowHours = 48 }, []string{"agg-cust/revenue", "agg-dev/revenue"}},
		{"no end", "views", func(m *flywheel.Metric) { m.WindowHours = 0 }, []string{"agg-cust/views", "agg-dev/views"}},
		{"fixed cap", "views", func(m *flywheel.Metric) { m.Cap.Value = aggF(2) }, []string{"agg-cust/views", "agg-dev/views"}},
		{"percentile to fixed cap", "spend", func(m *flywheel.Metric) { m.Cap = &flywheel.Cap{Value: aggF(40)} }, []string{"agg-cust/spend", "agg-dev/spend"}},
		{"retention period", "return", func(m *flywheel.Metric) { m.FromHours, m.ToHours = 0, 48 }, []string{"agg-cust/return", "agg-dev/return"}},
		{"cuped", "conv", func(m *flywheel.Metric) { m.CUPEDHours = 200 }, []string{"agg-cust/conv", "agg-dev/conv"}},
		{"percentile", "aov", func(m *flywheel.Metric) { m.Cap.Percentile = aggF(0.5) }, nil},
	}
	for _, s := range steps {
		if _, err := db.UpdateMetric(ctx, s.metric, func(m *flywheel.Metric) error { s.change(m); return nil }); err != nil {
			t.Fatalf("%s: UpdateMetric: %v", s.name, err)
		}
		mustWrite(t, db, g.batch(30)...)
		e, ms := aggExperiment(t, db, g.cust)
		q := analysis.Query{Now: aggNow}
		if s.want != nil {
			if err := db.VerifyAggregates(ctx, e, ms, q); err == nil {
				t.Errorf("%s: VerifyAggregates before a cycle = nil, want not built", s.name)
			}
			// Not built: ResultInput is the recomputation.
			res, err1 := db.ResultInput(ctx, e, ms, q)
			raw, err2 := db.RecomputeResultInput(ctx, e, ms, q)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: ResultInput: %v, RecomputeResultInput: %v", s.name, err1, err2)
			}
			if diff := cmp.Diff(raw, res); diff != "" {
				t.Errorf("%s: ResultInput differs from the recomputation it falls back to (-raw +got):\n%s", s.name, diff)
			}
		}
		if rep := aggregateAll(t, db); !slices.Equal(rep.Rebuilt, s.want) {
			t.Errorf("%s: Aggregate rebuilt %q, want %q", s.name, rep.Rebuilt, s.want)
		}
		verifyAggregates(t, db, g.r, s.name, g.cust, g.dev)
	}

	// A metric the experiment stops naming is dropped; named again, built.
	setAOV := func(secondary []string) {
		t.Helper()
		if _, err := db.UpdateExperiment(ctx, g.cust, "update", "test", func(e *flywheel.Experiment) error {
			e.Metrics.Secondary = secondary
			return nil
		}); err != nil {
			t.Fatalf("UpdateExperiment: %v", err)
		}
	}
	setAOV([]string{"spend", "return", "basket"})
	if rep := aggregateAll(t, db); len(rep.Rebuilt) > 0 {
		t.Errorf("Aggregate after dropping a metric rebuilt %q, want none", rep.Rebuilt)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM agg_units WHERE experiment = 'agg-cust' AND metric = 'aov'`) +
		queryInt(t, db, `SELECT count(*) FROM agg_variants WHERE experiment = 'agg-cust' AND metric = 'aov'`) +
		queryInt(t, db, `SELECT count(*) FROM agg_unit_days WHERE experiment = 'agg-cust' AND metric = 'aov'`) +
		queryInt(t, db, `SELECT count(*) FROM agg_variant_days WHERE experiment = 'agg-cust' AND metric = 'aov'`); n != 0 {
		t.Errorf("%d aggregate rows of a dropped definition", n)
	}
	verifyAggregates(t, db, g.r, "aov dropped", g.cust)
	setAOV([]string{"spend", "aov", "return", "basket"})
	mustWrite(t, db, g.batch(30)...)
	if rep := aggregateAll(t, db); !slices.Equal(rep.Rebuilt, []string{"agg-cust/aov"}) {
		t.Errorf("Aggregate after naming a metric again rebuilt %q, want [agg-cust/aov]", rep.Rebuilt)
	}
	verifyAggregates(t, db, g.r, "aov again", g.cust, g.dev)
}

// TestAggregateConcurrent: writers store events while two aggregators
// loop; once they stop, a last cycle leaves nothing pending and the
// aggregates equal a recomputation.
func TestAggregateConcurrent(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	const writers, batches = 6, 15
	sg := newAggGen(100, "", "", 25, 25)
	sg.whole = true
	shared := sg.batch(60) // sent by every writer: duplicates across sessions
	var (
		wg         sync.WaitGroup
		done       = make(chan struct{})
		errs       = make(chan error, writers+4)
		cycles     [2]int
		background sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newAggGen(uint64(200+w), "", "", 25, 25)
			g.whole = true
			for b := range batches {
				events := g.batch(15)
				for range 3 {
					events = append(events, shared[g.r.IntN(len(shared))])
				}
				if _, err := db.WriteEvents(ctx, events); err != nil {
					errs <- fmt.Errorf("writer %d: WriteEvents: %w", w, err)
					return
				}
				if b%4 == 3 {
					id, _, _ := g.unit("customer", 0)
					if err := db.SetConsent(ctx, flywheel.UnitRef{UnitType: "customer", UnitID: id}, b%8 == 3, 0, "test"); err != nil {
						errs <- fmt.Errorf("writer %d: SetConsent: %w", w, err)
						return
					}
				}
			}
		}()
	}
	for i := range cycles {
		background.Add(1)
		go func() {
			defer background.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := db.Aggregate(ctx); err != nil {
					errs <- fmt.Errorf("aggregator %d: %w", i, err)
					return
				}
				cycles[i]++
			}
		}()
	}
	background.Add(1)
	go func() { // erasures while everything else runs
		defer background.Done()
		for _, u := range []flywheel.UnitRef{{UnitType: "device", UnitID: "d03"}, {UnitType: "customer", UnitID: "c07"}} {
			time.Sleep(50 * time.Millisecond)
			if _, err := db.EraseUnit(ctx, u, "test"); err != nil {
				errs <- fmt.Errorf("EraseUnit: %w", err)
			}
		}
	}()
	wg.Wait()
	close(done)
	background.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("aggregation cycles during the writes: %v", cycles)
	aggregateAll(t, db)
	verifyAggregates(t, db, rand.New(rand.NewPCG(1, 2)), "after concurrent writes", "agg-cust", "agg-dev")
	if lag, pending, err := db.AggregationLag(ctx, time.Now()); err != nil || lag != 0 || pending != 0 {
		t.Errorf("AggregationLag = %v, %d, %v; want 0, 0, nil", lag, pending, err)
	}
}

// TestAggregateErasure: erasing a customer removes it, its devices and the
// customer merged into it from every aggregate at once, queue included.
func TestAggregateErasure(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	r := rand.New(rand.NewPCG(3, 4))
	at := func(h int) time.Time { return aggBase.Add(time.Duration(h) * time.Hour) }
	buy := func(unitType, unit string, h int, v float64) flywheel.Event {
		return flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: unitType, UnitID: unit, Timestamp: at(h), ReceivedAt: time.Now(), Name: "purchase", Value: &v}
	}
	view := func(unitType, unit string, h int) flywheel.Event {
		return flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: unitType, UnitID: unit, Timestamp: at(h), ReceivedAt: time.Now(), Name: "view"}
	}
	gone := []string{"cust-gone", "dev-gone-1", "dev-gone-2", "cust-merged", "dev-merged"}
	mustWrite(t, db,
		identify("device", "dev-gone-1", "cust-gone", at(-5)),
		identify("device", "dev-gone-2", "cust-gone", at(-4)),
		identify("customer", "cust-merged", "cust-gone", at(-3)),
		identify("device", "dev-merged", "cust-merged", at(-2)),
		identify("device", "dev-keep", "cust-keep", at(-1)),
		exposure("customer", "cust-gone", "agg-cust", "treatment", at(0), `{"country": "de"}`),
		exposure("customer", "cust-merged", "agg-cust", "control", at(1), ""),
		exposure("customer", "cust-keep", "agg-cust", "treatment", at(2), `{"country": "de"}`),
		exposure("device", "dev-gone-1", "agg-dev", "a", at(0), ""),
		exposure("device", "dev-gone-2", "agg-dev", "b", at(1), ""),
		exposure("device", "dev-merged", "agg-dev", "c", at(2), ""),
		exposure("device", "dev-keep", "agg-dev", "a", at(3), `{"country": "fr"}`),
		buy("customer", "cust-gone", 5, 20), buy("device", "dev-gone-1", 6, 30), buy("device", "dev-merged", 7, 200),
		buy("customer", "cust-keep", 8, 15), buy("device", "dev-keep", 9, 12), view("device", "dev-gone-2", 30), view("device", "dev-keep", 30),
	)
	if err := db.SetConsent(ctx, flywheel.UnitRef{UnitType: "device", UnitID: "dev-gone-2"}, false, 0, "test"); err != nil {
		t.Fatal(err)
	}
	aggregateAll(t, db)
	verifyAggregates(t, db, r, "before erasure", "agg-cust", "agg-dev")
	if n := queryInt(t, db, `SELECT count(*) FROM agg_crossover WHERE root = 'cust-gone'`); n == 0 {
		t.Fatalf("no crossover row for cust-gone: the test does not test erasure of crossover")
	}
	// Events of the cluster not folded in yet: the queue names its ids.
	mustWrite(t, db, buy("device", "dev-gone-2", 10, 5), view("customer", "cust-merged", 11), exposure("device", "dev-gone-1", "agg-dev", "c", at(12), ""))
	if n := queryInt(t, db, `SELECT count(*) FROM agg_queue WHERE unit_ids && $1::text[]`, gone); n == 0 {
		t.Fatalf("the queue names no erased id: the test does not test erasure of the queue")
	}

	n, err := db.EraseUnit(ctx, flywheel.UnitRef{UnitType: "customer", UnitID: "cust-gone"}, "test")
	if err != nil || n.Units != int64(len(gone)) {
		t.Fatalf("EraseUnit = %+v, %v; want %d units", n, err, len(gone))
	}
	checkErased(t, db, "after EraseUnit", gone)
	// Nothing else was pending: the aggregates are exact before any cycle.
	verifyAggregates(t, db, r, "after erasure", "agg-cust", "agg-dev")
	aggregateAll(t, db)
	checkErased(t, db, "after a cycle", gone)
	verifyAggregates(t, db, r, "after a cycle", "agg-cust", "agg-dev")
}

// aggSnapshot returns every row of an aggregate table as text, numbers with
// trailing zeros trimmed; with xmin, it tells rewritten rows apart too.
func aggSnapshot(tb testing.TB, db *store.DB, table string, xmin bool) []string {
	tb.Helper()
	cols := `experiment, metric, variant, units, multiple, opted_out, trim_scale(sum), trim_scale(sumsq),
		trim_scale(sumx), trim_scale(sumxsq), trim_scale(sumxy), trim_scale(sumnum), trim_scale(sumden),
		trim_scale(sumnumsq), trim_scale(sumdensq), trim_scale(sumnumden)`
	if table == "agg_units" {
		cols = `experiment, metric, unit_id, unit_type, variant, first_ts, state, y, x, num, den`
	}
	if xmin {
		cols += `, xmin`
	}
	return queryStrings(tb, db, `SELECT (`+cols+`)::text FROM `+table+` ORDER BY 1`)
}

// TestAggregateIdempotent: a cycle with nothing queued writes nothing, and
// folding in units whose events did not change changes no value, however
// many queue rows name them.
func TestAggregateIdempotent(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	g := newAggGen(21, "", "", 30, 30)
	g.whole = true
	for range 4 {
		mustWrite(t, db, g.batch(60)...)
	}
	aggregateAll(t, db)
	variants, values, units := aggSnapshot(t, db, "agg_variants", true), aggSnapshot(t, db, "agg_variants", false), aggSnapshot(t, db, "agg_units", true)
	if len(variants) == 0 || len(units) == 0 {
		t.Fatalf("no aggregates")
	}

	rep, err := db.Aggregate(ctx)
	if err != nil || !cmp.Equal(rep, store.AggregateReport{}) {
		t.Errorf("Aggregate with nothing queued = %+v, %v; want nothing done", rep, err)
	}
	if diff := cmp.Diff(variants, aggSnapshot(t, db, "agg_variants", true)); diff != "" {
		t.Errorf("agg_variants changed by an empty cycle (-before +after):\n%s", diff)
	}

	// Only duplicates: nothing is queued.
	if acc := mustWrite(t, db, g.sent[:50]...); len(acc) != 0 {
		t.Fatalf("duplicates accepted: %v", acc)
	}
	if _, pending, err := db.AggregationLag(ctx, time.Now()); err != nil || pending != 0 {
		t.Errorf("AggregationLag after duplicates: %d pending, %v; want 0", pending, err)
	}

	// Every exposed unit queued again, in more rows than one cycle takes.
	if _, err := db.Pool().Exec(ctx, `INSERT INTO agg_queue (at, unit_types, unit_ids)
		SELECT now(), ARRAY[x.unit_type], ARRAY[x.unit_id] FROM exposures x CROSS JOIN generate_series(1, 100) i
		ORDER BY i, x.unit_id LIMIT 600`); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM agg_queue`); n <= store.MaxQueueRows {
		t.Fatalf("%d queue rows, want more than %d", n, store.MaxQueueRows)
	}
	if rep, err := db.Aggregate(ctx); err != nil || !rep.More || rep.Queued != store.MaxQueueRows || rep.Pairs == 0 {
		t.Errorf("Aggregate of a long queue = %+v, %v; want %d rows and more", rep, err, store.MaxQueueRows)
	}
	if rep := aggregateAll(t, db); rep.More || rep.Queued == 0 || len(rep.Rebuilt) > 0 {
		t.Errorf("Aggregate of the rest = %+v", rep)
	}
	if diff := cmp.Diff(units, aggSnapshot(t, db, "agg_units", true)); diff != "" {
		t.Errorf("agg_units rewritten by folding unchanged units (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(values, aggSnapshot(t, db, "agg_variants", false)); diff != "" {
		t.Errorf("agg_variants changed by folding unchanged units (-before +after):\n%s", diff)
	}
	verifyAggregates(t, db, g.r, "after refolding", g.cust, g.dev)
}

// TestAggregateExposureGone: a unit queued again after its exposure row
// disappeared (only erasure deletes exposures, and it clears the unit's
// aggregates itself; this covers a cycle meeting such a unit anyway) leaves
// the aggregates: its rows go, the variant sums lose it, and so does the
// unit copy that the folds before filled (a later event of the unit is
// then one of a unit outside the experiment).
func TestAggregateExposureGone(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	buy := func(unit string) flywheel.Event {
		return flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: "device", UnitID: unit,
			Timestamp: aggBase.Add(time.Hour), ReceivedAt: aggBase, Name: "purchase", Value: aggF(4)}
	}
	mustWrite(t, db, exposure("device", "d1", "agg-dev", "a", aggBase, ""), exposure("device", "d2", "agg-dev", "a", aggBase, ""),
		buy("d1"), buy("d2"))
	aggregateAll(t, db)
	mustWrite(t, db, buy("d1"), buy("d2")) // folded: the copy holds both
	aggregateAll(t, db)
	if c, ok := store.UnitCopyForTest(db, "agg-dev", "revenue"); !ok || c.Units != 2 || !c.Complete {
		t.Fatalf("copy of agg-dev/revenue after a fold: %+v (held %v), want both units, complete", c, ok)
	}
	if _, err := db.Pool().Exec(ctx, `DELETE FROM exposures WHERE unit_id = 'd1';
		INSERT INTO agg_queue (at, unit_types, unit_ids) VALUES (now(), '{device}', '{d1}')`); err != nil {
		t.Fatal(err)
	}
	aggregateAll(t, db)
	// The copy forgets the units the cycle recomputed (d1 is unknown, for
	// the next fold to look up) and keeps d2.
	if c, ok := store.UnitCopyForTest(db, "agg-dev", "revenue"); !ok || c.Units != 1 || len(c.Unknown) != 1 || c.Unknown[0] != "d1" {
		t.Errorf("copy of agg-dev/revenue after d1's exposure went: %+v (held %v), want d2, and d1 unknown", c, ok)
	}
	mustWrite(t, db, buy("d1"), buy("d2"))
	aggregateAll(t, db)
	if n := queryInt(t, db, `SELECT count(*) FROM agg_units WHERE unit_id = 'd1'`); n != 0 {
		t.Errorf("%d unit rows of d1 left, want 0", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM agg_units WHERE unit_id = 'd2'`); n == 0 {
		t.Errorf("the rows of d2 went too")
	}
	if n := queryInt(t, db, `SELECT units FROM agg_variants WHERE experiment = 'agg-dev' AND metric = 'revenue' AND variant = 'a'`); n != 1 {
		t.Errorf("agg-dev/revenue/a counts %d units, want 1", n)
	}
	e, ms := aggExperiment(t, db, "agg-dev")
	if err := db.VerifyAggregates(ctx, e, ms, analysis.Query{Now: aggNow}); err != nil {
		t.Error(err)
	}
}

// TestAggregateRefreshesStatistics: once agg_units holds far more rows
// than its statistics say, a cycle analyzes it (and says so in its steps);
// the next one, with statistics current, does not.
func TestAggregateRefreshesStatistics(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	if _, err := db.Pool().Exec(ctx, `INSERT INTO agg_units (experiment, metric, unit_id, unit_type, variant, first_ts, state, y, x, num, den)
		SELECT 'stats', '', 'u' || i, 'device', 'a', now(), 0, 0, 0, 0, 0 FROM generate_series(1, 3000) i;
		INSERT INTO agg_variants VALUES ('stats', '', 'a', 3000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)`); err != nil {
		t.Fatal(err)
	}
	analyzed := func(rep store.AggregateReport) bool {
		return slices.ContainsFunc(rep.Steps, func(s store.Step) bool { return s.Name == "statistics" })
	}
	if rep, err := db.Aggregate(ctx); err != nil || !analyzed(rep) {
		t.Errorf("Aggregate = %+v, %v; want a statistics step", rep, err)
	}
	if n := queryInt(t, db, `SELECT reltuples::bigint FROM pg_class WHERE relname = 'agg_units'`); n != 3000 {
		t.Errorf("agg_units reltuples = %d after the cycle, want 3000", n)
	}
	if rep, err := db.Aggregate(ctx); err != nil || analyzed(rep) {
		t.Errorf("second Aggregate = %+v, %v; want no statistics step", rep, err)
	}
}

// TestAggregateConversionsRoundHalfEven: the conversions of a mean metric
// are sum(y)::bigint in SQL, which rounds halves to even; the aggregates
// must give the same for a sum of exactly 2.5 (one unit spending 2.5).
func TestAggregateConversionsRoundHalfEven(t *testing.T) {
	db := newAggDB(t)
	spend := flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: "device", UnitID: "d1",
		Timestamp: aggBase.Add(time.Hour), ReceivedAt: aggBase, Name: "purchase", Value: aggF(2.5)}
	mustWrite(t, db, exposure("device", "d1", "agg-dev", "a", aggBase, ""), spend)
	aggregateAll(t, db)
	e, ms := aggExperiment(t, db, "agg-dev")
	if err := db.VerifyAggregates(context.Background(), e, ms, analysis.Query{Now: aggNow}); err != nil {
		t.Error(err)
	}
}

// TestAggregateSameDayTracks: new events on a unit's last day with events
// take the tracks step's in-order path (store/aggregate_fold.go), which
// computes the day's change from the unit's value rather than its days: a
// purchase that crosses the fixed cap later the same day, a conversion
// already counted that day, a same-day event with one on the next day, and
// then late events before them all; and a conversion already counted
// (settled: its later events write no day rows) that a late event moves to
// an earlier day. The timeseries must equal a recomputation after every
// cycle.
func TestAggregateSameDayTracks(t *testing.T) {
	db := newAggDB(t)
	buy := func(unit string, hours float64, value float64) flywheel.Event {
		e := track(unit, "purchase", aggBase.Add(time.Duration(hours*float64(time.Hour))))
		e.Value = aggF(value)
		return e
	}
	mustWrite(t, db,
		exposure("customer", "sd1", "agg-cust", "control", aggBase.Add(2*time.Hour), ""),
		exposure("customer", "sd2", "agg-cust", "treatment", aggBase.Add(3*time.Hour), ""),
		exposure("customer", "sd3", "agg-cust", "treatment", aggBase.Add(4*time.Hour), ""),
		exposure("customer", "sd4", "agg-cust", "control", aggBase.Add(1*time.Hour), ""),
		buy("sd1", 5, 100), buy("sd2", 6, 40), buy("sd3", 7, 10), buy("sd4", 50, 5))
	aggregateAll(t, db)
	r := rand.New(rand.NewPCG(7, 8))
	verifyAggregates(t, db, r, "first day", "agg-cust")
	for _, step := range []struct {
		label  string
		events []flywheel.Event
	}{
		// revenue (cap 150) crosses the cap on the same day; conv is already 1.
		{"same day, over the cap", []flywheel.Event{buy("sd1", 9, 80), buy("sd1", 10, 30)}},
		// the same day and the next in one cycle.
		{"same day and the next", []flywheel.Event{buy("sd2", 11, 15.25), buy("sd2", 30, 2.5), buy("sd3", 12, 200), buy("sd4", 52, 1), buy("sd4", 75, 1)}},
		{"the next day again", []flywheel.Event{buy("sd2", 31, 7), buy("sd3", 35, 1)}},
		// late: on a day before the unit's last (sd3, sd4: its conversion
		// moves to day 1), and before exposure (sd2: the CUPED period).
		{"late", []flywheel.Event{buy("sd2", 2.5, 3), buy("sd3", 4.5, 60), buy("sd4", 30, 2)}},
	} {
		mustWrite(t, db, step.events...)
		aggregateAll(t, db)
		verifyAggregates(t, db, r, step.label, "agg-cust")
	}
	if n := queryInt(t, db, `SELECT count(*) FROM agg_unit_days WHERE unit_id = 'sd1' AND metric = 'revenue'`); n != 0 {
		t.Errorf("sd1 has %d revenue day rows, want none (its three purchases on one day, its last)", n)
	}
	if got := queryStrings(t, db, `SELECT last_day::text FROM agg_units WHERE unit_id = 'sd1' AND metric = 'revenue'`); !slices.Equal(got, []string{"2026-10-05"}) {
		t.Errorf("sd1's revenue last day = %q, want 2026-10-05", got)
	}
	// sd4's conversion: the first day it counted on (day 2), then the late
	// day 1 (a day row, before its last); its settled purchases on days 2
	// and 3 wrote none.
	if got := queryStrings(t, db, `SELECT day::text FROM agg_unit_days WHERE unit_id = 'sd4' AND metric = 'conv'
		UNION ALL SELECT last_day::text FROM agg_units WHERE unit_id = 'sd4' AND metric = 'conv' ORDER BY 1`); !slices.Equal(got, []string{"2026-10-06", "2026-10-07"}) {
		t.Errorf("sd4's conv days = %q, want 2026-10-06 (late) and 2026-10-07 (first)", got)
	}
}

// TestAggregateRelinkDuringIngestion: a device linked to customer A by one
// ingestion transaction and, concurrently, to customer B with an earlier
// link (which wins) by another whose statement began before the first
// committed. A cycle folds the first in between. B's transaction must
// still get A recomputed, or A keeps the device's purchase.
//
// To make the interleaving certain, a transaction of the test holds an
// event id of B's group (as a retry of that event still being written
// would), so that B's statement waits after taking its snapshot.
func TestAggregateRelinkDuringIngestion(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	mustWrite(t, db,
		exposure("customer", "cust-a", "agg-cust", "control", aggBase, ""),
		exposure("customer", "cust-b", "agg-cust", "treatment", aggBase, ""),
		exposure("device", "dev", "agg-dev", "a", aggBase, ""),
		flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: "device", UnitID: "dev", Timestamp: aggBase.Add(time.Hour),
			ReceivedAt: time.Now(), Name: "purchase", Value: aggF(40)},
	)
	aggregateAll(t, db)

	held := flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: "customer", UnitID: "cust-b", Timestamp: aggBase.Add(-48 * time.Hour),
		ReceivedAt: time.Now(), Name: "view"}
	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO event_ids (id, unit_id, received_at) VALUES ($1, $2, now())`, held.ID, held.UnitID); err != nil {
		t.Fatal(err)
	}
	toB := make(chan error, 1)
	go func() {
		_, err := db.WriteEvents(ctx, []flywheel.Event{held, identify("device", "dev", "cust-b", aggBase.Add(-2*time.Hour))})
		toB <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for queryInt(t, db, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the link to cust-b never waited for the held event id")
		}
		time.Sleep(10 * time.Millisecond)
	}
	toA := make(chan error, 1)
	go func() {
		_, err := db.WriteEvents(ctx, []flywheel.Event{identify("device", "dev", "cust-a", aggBase.Add(-time.Hour))})
		toA <- err
	}()
	select {
	case err := <-toA:
		if err != nil {
			t.Fatalf("WriteEvents: %v", err)
		}
		aggregateAll(t, db) // cust-a now owns the purchase
		toA <- nil
	case <-time.After(5 * time.Second):
		t.Log("the link to cust-a waits for the link to cust-b: they no longer interleave")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan error{toA, toB} {
		if err := <-ch; err != nil {
			t.Fatalf("WriteEvents: %v", err)
		}
	}
	if got := queryStrings(t, db, `SELECT customer_id FROM aliases WHERE unit_id = 'dev'`); !slices.Equal(got, []string{"cust-b"}) {
		t.Fatalf("dev links to %v, want [cust-b] (the earliest link)", got)
	}
	aggregateAll(t, db)
	verifyAggregates(t, db, rand.New(rand.NewPCG(5, 6)), "after the relink", "agg-cust", "agg-dev")
}

// TestAggregateIdentityEdges: links beyond what identity resolution
// follows. The recomputation resolves the purchase to an intermediate
// customer (after 16 links, or across a cycle); the aggregates, which walk
// down from roots only, attribute it to no one. Either answer could be
// defined as right; the two paths must give the same one.
func TestAggregateIdentityEdges(t *testing.T) {
	purchase := func(unit string) flywheel.Event {
		return flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: "customer", UnitID: unit,
			Timestamp: aggBase.Add(time.Hour), ReceivedAt: aggBase, Name: "purchase", Value: aggF(10)}
	}
	tests := []struct {
		name   string
		events []flywheel.Event
	}{
		// k17 -> k16 -> ... -> k00: after 16 links k17 resolves to k01.
		{"a chain of 17 links", func() []flywheel.Event {
			var evs []flywheel.Event
			for i := 1; i <= 17; i++ {
				evs = append(evs, identify("customer", fmt.Sprintf("k%02d", i), fmt.Sprintf("k%02d", i-1), aggBase.Add(-time.Hour)))
			}
			return append(evs, exposure("customer", "k01", "agg-cust", "control", aggBase, ""), purchase("k17"))
		}()},
		// y1 -> y0 and y0 -> y1: each resolves to the other.
		{"a cycle of two customers", []flywheel.Event{
			identify("customer", "y1", "y0", aggBase.Add(-2*time.Hour)),
			identify("customer", "y0", "y1", aggBase.Add(-time.Hour)),
			exposure("customer", "y0", "agg-cust", "control", aggBase, ""),
			purchase("y1"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newAggDB(t)
			mustWrite(t, db, tt.events...)
			aggregateAll(t, db)
			e, ms := aggExperiment(t, db, "agg-cust")
			if err := db.VerifyAggregates(context.Background(), e, ms, analysis.Query{Now: aggNow}); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestAggregateOwnConnections: the aggregator runs on connections of its
// own, the lock's and one per fold, kept from cycle to cycle: a new
// backend's first pages cost page faults (store.Open), which folds on the
// main pool's changing connections paid again and again.
func TestAggregateOwnConnections(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	g := newAggGen(5, "", "", 30, 30)
	backends := func() []int64 {
		var pids []int64
		rows, err := db.Pool().Query(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'flywheel aggregator' ORDER BY pid`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var pid int64
			if err := rows.Scan(&pid); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return pids
	}
	if pids := backends(); len(pids) != 0 {
		t.Fatalf("aggregator connections before any cycle: %v", pids)
	}
	// The first cycle builds the definitions on the lock's connection; the
	// next folds their new track events.
	for range 2 {
		mustWrite(t, db, g.batch(200)...)
		aggregateAll(t, db)
	}
	first := backends()
	// The lock's connection and at least one fold's (newAggDB's
	// experiment has several definitions), at most one per core besides.
	if most := 1 + min(runtime.GOMAXPROCS(0), 8); len(first) < 2 || len(first) > most {
		t.Fatalf("aggregator connections after a cycle: %v, want 2 to %d", first, most)
	}
	for range 3 {
		mustWrite(t, db, g.batch(200)...)
		aggregateAll(t, db)
	}
	if after := backends(); !cmp.Equal(after, first) {
		t.Errorf("aggregator connections after more cycles: %v, want the same as after the first: %v", after, first)
	}
	verifyAggregates(t, db, g.r, "after the cycles", g.cust, g.dev)
}

// TestAggregateFreshUnits: units exposed before any event of theirs, with
// no aggregates yet, are folded in without a recomputation (foldNamed), in
// every state (analysed, exposed to several variants, opted out), and the
// aggregates equal a recomputation. Units with an event of their own in
// their window, before or after their exposure, or one of an id linked to
// them, and units with aggregates already, are recomputed; and the fresh
// ones' rows then take their first events as any other.
func TestAggregateFreshUnits(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	at := aggBase.Add(100 * time.Hour) // some metrics' windows still open at aggNow: units maturing
	buy := func(unitType, unit string, ts time.Time) flywheel.Event {
		return flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: unitType, UnitID: unit,
			Timestamp: ts, ReceivedAt: ts, Name: "purchase", Value: aggF(7)}
	}
	// The definitions are built first, from the raw events of two units.
	mustWrite(t, db, exposure("customer", "old", "agg-cust", "control", at, ""), exposure("device", "dold", "agg-dev", "a", at, ""),
		buy("customer", "old", at.Add(time.Hour)))
	if rep := aggregateAll(t, db); len(rep.Rebuilt) == 0 {
		t.Fatalf("first Aggregate = %+v, want the definitions built", rep)
	}
	// What the units to recompute have before their exposures: a purchase
	// of their own, one of a linked device, and an opt-out.
	if err := db.SetConsent(ctx, flywheel.UnitRef{UnitType: "customer", UnitID: "f-out"}, false, 0, "test"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, db, buy("customer", "r-pre", at.Add(-5*time.Hour)),
		identify("device", "dev-1", "r-link", at.Add(-3*time.Hour)), buy("device", "dev-1", at.Add(-2*time.Hour)))
	aggregateAll(t, db)

	var events []flywheel.Event
	fresh := []string{"f-1", "f-2", "f-3", "f-4", "f-multi", "f-out"}
	for i, u := range fresh {
		events = append(events, exposure("customer", u, "agg-cust", []string{"control", "treatment"}[i%2], at.Add(time.Duration(i)*time.Hour), ""))
	}
	events = append(events, exposure("customer", "f-multi", "agg-cust", "treatment", at.Add(9*time.Hour), ""))
	for i, u := range []string{"fd-1", "fd-2", "fd-multi"} {
		events = append(events, exposure("device", u, "agg-dev", []string{"a", "b", "c"}[i], at.Add(time.Duration(i)*time.Hour), ""))
	}
	events = append(events, exposure("device", "fd-multi", "agg-dev", "a", at.Add(5*time.Hour), ""))
	for _, u := range []string{"r-pre", "r-link", "r-same"} {
		events = append(events, exposure("customer", u, "agg-cust", "treatment", at, ""))
	}
	events = append(events, buy("customer", "r-same", at.Add(2*time.Hour)),
		exposure("customer", "old", "agg-cust", "control", at.Add(-time.Hour), "")) // earlier: old's rows change
	mustWrite(t, db, events...)
	rep := aggregateAll(t, db)
	if want := len(fresh) + 3; rep.Fresh != want || rep.Pairs != want+4 {
		t.Errorf("Aggregate = %+v, want %d units fresh of %d", rep, want, want+4)
	}
	if got := queryStrings(t, db, `SELECT unit_id || ':' || state || ':' || count(*) FROM agg_units
		WHERE unit_id IN ('f-1', 'f-multi', 'f-out', 'fd-multi') GROUP BY unit_id, state ORDER BY unit_id`); !slices.Equal(got,
		[]string{"f-1:0:8", "f-multi:1:8", "f-out:2:8", "fd-multi:1:8"}) {
		t.Errorf("unit rows (unit:state:rows) = %q, want each unit in each definition, in its state", got)
	}
	r := rand.New(rand.NewPCG(3, 5))
	verifyAggregates(t, db, r, "fresh units", "agg-cust", "agg-dev")

	// Their first purchases, and f-1 exposed to a second variant.
	mustWrite(t, db, buy("customer", "f-1", at.Add(20*time.Hour)), buy("customer", "f-2", at.Add(30*time.Hour)),
		buy("device", "fd-1", at.Add(20*time.Hour)), buy("customer", "f-out", at.Add(20*time.Hour)),
		exposure("customer", "f-1", "agg-cust", "treatment", at.Add(21*time.Hour), ""))
	if rep := aggregateAll(t, db); rep.Fresh != 0 || rep.Pairs != 1 {
		t.Errorf("Aggregate of their first purchases = %+v, want f-1 recomputed, nothing fresh", rep)
	}
	verifyAggregates(t, db, r, "their first purchases", "agg-cust", "agg-dev")
}
