package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/store"
)

// TestTrackFilterCycles plays cycles through a filter of tracked days: it
// is usable only once a build has ended and while it has seen every cycle
// since the build began (consecutive queue cycle numbers), and only for
// the events it was built for; whatever it holds, an id's window is
// narrowed to the days that may hold its events, never past them.
func TestTrackFilterCycles(t *testing.T) {
	day := func(d, h int) time.Time { return aggBase.Add(time.Duration(24*d+h) * time.Hour) }
	ev := func(id string, d, h int) store.TrackEvent {
		return store.TrackEvent{Type: "customer", ID: id, TS: day(d, h)}
	}
	reads := []string{"purchase", "view"}

	f := store.NewTrackFilterForTest(time.Hour)
	if f.Advance(41, reads, ev("a", 1, 0)) || f.Builds() != 1 {
		t.Fatalf("first cycle: usable or %d builds, want a build started and not usable", f.Builds())
	}
	if f.Advance(42, reads, ev("b", 3, 5)) {
		t.Error("usable while its build is under way")
	}
	f.FinishBuild(0, ev("stored", 0, 23))
	if !f.Advance(43, reads, ev("c", 9, 1)) {
		t.Fatal("not usable after its build ended, every cycle seen")
	}
	from := day(0, 0)
	for _, c := range []struct {
		id       string
		look     bool
		from, to time.Time
	}{
		{"stored", true, day(0, 0), day(1, 0)}, // read by the build
		{"a", true, day(1, 0), day(2, 0)},      // added by the cycle that started the build (its snapshot sees it too)
		{"b", true, day(3, 0), day(4, 0)},      // added to the build by a cycle during it
		{"c", true, day(9, 0), day(10, 0)},     // added by a cycle after it
		{"never", false, time.Time{}, time.Time{}},
	} {
		look, lo, hi, noEnd := f.Look("customer", c.id, from, nil)
		if look != c.look || !lo.Equal(c.from) || !hi.Equal(c.to) || noEnd {
			t.Errorf("Look(%s) = %v [%v, %v) no end %v, want %v [%v, %v)", c.id, look, lo, hi, noEnd, c.look, c.from, c.to)
		}
	}
	if look, _, _, _ := f.Look("device", "c", from, nil); look {
		t.Error("device c looked up: only customer c has events")
	}
	// A window inside the days keeps its own bounds; one that ends before
	// an id's only day, or starts after it, leaves the id out.
	if look, lo, hi, _ := f.Look("customer", "b", day(3, 2), ptr(day(3, 7))); !look || !lo.Equal(day(3, 2)) || !hi.Equal(day(3, 7)) {
		t.Errorf("Look(b) in [3d2h, 3d7h) = %v [%v, %v), want its own bounds", look, lo, hi)
	}
	if look, _, _, _ := f.Look("customer", "b", day(0, 0), ptr(day(3, 0))); look {
		t.Error("b looked up in a window that ends when its day starts")
	}
	if look, _, _, _ := f.Look("customer", "b", day(4, 0), nil); look {
		t.Error("b looked up in a window that starts after its day")
	}

	// An id with events on days apart is looked up on each run of them,
	// not on the days between.
	f.Advance(44, reads, ev("e", 2, 0), ev("e", 3, 9), ev("e", 7, 1))
	got := f.Ranges("customer", "e", day(1, 12), day(8, 12))
	want := [][2]time.Time{{day(2, 0), day(4, 0)}, {day(7, 0), day(8, 0)}}
	if !slices.EqualFunc(got, want, func(a, b [2]time.Time) bool { return a[0].Equal(b[0]) && a[1].Equal(b[1]) }) {
		t.Errorf("Ranges(e) = %v, want %v", got, want)
	}

	// Another process's cycle came between: not usable, and no build
	// before an hour since the last.
	if f.Advance(46, reads, ev("d", 2, 0)) || f.Builds() != 1 {
		t.Errorf("after a gap in the cycles: usable, or %d builds, want neither", f.Builds())
	}
	if look, _, _, noEnd := f.Look("customer", "never", from, nil); !look || !noEnd {
		t.Error("an unbuilt filter leaves an id out, or narrows its window")
	}

	// A build that reads the days from the fifth on: every earlier day
	// may hold events.
	h := store.NewTrackFilterForTest(0)
	h.Advance(1, reads)
	h.SetBuildFrom(0, day(5, 0))
	h.FinishBuild(0, ev("late", 6, 0))
	if !h.Advance(2, reads) {
		t.Fatal("not usable after a build from the fifth day")
	}
	for _, c := range []struct {
		id       string
		from, to time.Time
		want     [][2]time.Time
	}{
		{"none", day(2, 0), day(8, 0), [][2]time.Time{{day(2, 0), day(5, 0)}}},
		{"none", day(5, 0), day(8, 0), nil},
		{"late", day(2, 3), day(9, 0), [][2]time.Time{{day(2, 3), day(5, 0)}, {day(6, 0), day(7, 0)}}},
		{"late", day(5, 1), day(9, 0), [][2]time.Time{{day(6, 0), day(7, 0)}}},
		{"late", day(4, 1), day(6, 5), [][2]time.Time{{day(4, 1), day(5, 0)}, {day(6, 0), day(6, 5)}}},
	} {
		got := h.Ranges("customer", c.id, c.from, c.to)
		if !slices.EqualFunc(got, c.want, func(a, b [2]time.Time) bool { return a[0].Equal(b[0]) && a[1].Equal(b[1]) }) {
			t.Errorf("from the fifth day: Ranges(%s, [%v, %v)) = %v, want %v", c.id, c.from, c.to, got, c.want)
		}
	}

	// A server running for days drops the days its new units' windows no
	// longer reach: they may hold events from then on.
	h.Advance(3, reads, ev("late", 9, 0), ev("other", 9, 0))
	if n := h.Keys(); n != 3 {
		t.Fatalf("%d keys, want 3", n)
	}
	h.Keep(day(8, 0))
	h.Advance(4, reads)
	if n := h.Keys(); n != 2 {
		t.Errorf("%d keys after the days before the eighth were dropped, want 2", n)
	}
	got = h.Ranges("customer", "none", day(5, 1), day(10, 0))
	if want := [][2]time.Time{{day(5, 1), day(8, 0)}}; !slices.EqualFunc(got, want, func(a, b [2]time.Time) bool { return a[0].Equal(b[0]) && a[1].Equal(b[1]) }) {
		t.Errorf("after the days before the eighth were dropped: Ranges(none) = %v, want %v", got, want)
	}

	g := store.NewTrackFilterForTest(0)
	g.Advance(7, reads)
	g.FinishBuild(0)
	if !g.Advance(8, reads, ev("x", 1, 1)) {
		t.Fatal("not usable after its build")
	}
	if g.Advance(10, reads) || g.Builds() != 2 {
		t.Errorf("after a gap: usable, or %d builds, want a second build and not usable", g.Builds())
	}
	g.FinishBuild(1, ev("y", 2, 2))
	if !g.Advance(11, reads) {
		t.Fatal("not usable after its second build")
	}
	if look, _, _, _ := g.Look("customer", "x", from, nil); look {
		t.Error("x looked up: the second build never read it (and the test's build stands for the events stored)")
	}
	// The cycles read fewer events: still usable. They read a new one:
	// the filter never held its events.
	if !g.Advance(12, []string{"view"}) {
		t.Error("not usable when the cycles read fewer events")
	}
	if g.Advance(13, []string{"purchase", "signup"}) || g.Builds() != 3 {
		t.Errorf("cycles that read a new event: usable, or %d builds, want a third build and not usable", g.Builds())
	}

	// Idle cycles (no queue rows taken, no number of their own) start a
	// build and take it up, so that the first cycle with new units finds
	// it built; one that sees a number it did not follows another
	// process's cycle.
	i := store.NewTrackFilterForTest(0)
	if due, _ := i.Idle(5, nil); due {
		t.Error("an idle cycle with no definition reading events is due")
	}
	if due, held := i.Idle(5, reads); !due || held || i.Builds() != 1 {
		t.Fatalf("first idle cycle: due %v, usable %v, %d builds; want a build started", due, held, i.Builds())
	}
	if due, _ := i.Idle(5, reads); due {
		t.Error("an idle cycle is due while the build is under way")
	}
	i.FinishBuild(0, ev("stored", 2, 0))
	if due, held := i.Idle(5, reads); !due || !held {
		t.Fatalf("idle cycle after the build ended: due %v, usable %v; want it taken up", due, held)
	}
	if due, _ := i.Idle(5, reads); due {
		t.Error("an idle cycle is due with the filter built")
	}
	if !i.Advance(6, reads, ev("n", 3, 0)) {
		t.Fatal("the first cycle after idle ones cannot use the filter they built")
	}
	if look, _, _, _ := i.Look("customer", "stored", from, nil); !look {
		t.Error("the build's id left out")
	}
	if due, _ := i.Idle(6, []string{"purchase", "signup"}); !due || i.Builds() != 2 {
		t.Errorf("idle cycle whose definitions read a new event: due %v, %d builds; want a second build", due, i.Builds())
	}
	i.FinishBuild(1)
	if due, held := i.Idle(7, reads); !due || held {
		t.Errorf("idle cycle after another process's cycle 7: due %v, usable %v; want the build dropped", due, held)
	}
	if i.Advance(8, reads) {
		t.Error("usable after another process's cycle")
	}
}

func ptr[T any](v T) *T { return &v }

// TestTrackFilterDayOf: a build reads an event's day from its binary
// timestamptz, a cycle from its time; they must agree, before 1970 too.
func TestTrackFilterDayOf(t *testing.T) {
	for _, ts := range []time.Time{
		aggBase, aggBase.Add(-time.Microsecond), aggBase.Add(23*time.Hour + 59*time.Minute),
		time.Unix(0, 0), time.Unix(-1, 0), time.Unix(-86400, 0), time.Unix(-86401, 999_999_000), time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		cycle, build := store.TrackDaysForTest(ts)
		if cycle != build {
			t.Errorf("%v: day %d from its time, %d from its microseconds", ts, cycle, build)
		}
		if want := ts.UTC().Truncate(24 * time.Hour); !time.Unix(cycle*86400, 0).Equal(want) {
			t.Errorf("%v: day %d starts at %v, want %v", ts, cycle, time.Unix(cycle*86400, 0).UTC(), want)
		}
	}
}

// TestTrackFilterDays fills a filter's days with many ids: every id added
// is looked up on its day, few others are.
func TestTrackFilterDays(t *testing.T) {
	f := store.NewTrackFilterForTest(0)
	f.Advance(1, []string{"e"})
	var stored []store.TrackEvent
	for i := range 100_000 {
		stored = append(stored, store.TrackEvent{Type: "device", ID: fmt.Sprintf("d-%d", i), TS: aggBase.Add(time.Duration(i%3) * 24 * time.Hour)})
	}
	f.FinishBuild(0, stored...)
	f.Advance(2, []string{"e"})
	for _, e := range stored {
		d := aggBase.Add(time.Duration(e.TS.Sub(aggBase)/(24*time.Hour)) * 24 * time.Hour)
		if look, _, _, _ := f.Look(e.Type, e.ID, d, ptr(d.Add(24*time.Hour))); !look {
			t.Fatalf("%s, added on %v, is not looked up that day", e.ID, d)
		}
	}
	held := 0
	for i := range 100_000 {
		if look, _, _, _ := f.Look("device", fmt.Sprintf("x-%d", i), aggBase, ptr(aggBase.Add(72*time.Hour))); look {
			held++
		}
	}
	if held > 2_000 { // 2 %: each day's segments are sized for about 0.1 % each
		t.Errorf("%d of 100,000 ids never added are looked up", held)
	}
}

// TestAggregateTrackFilter: the history step looks up only the ids the
// filter of tracked days may hold events of, and the aggregates must
// equal a recomputation when the events before an exposure were taken
// by this process's cycles (before and after its filter was built), by
// another process's cycle, by a device linked to the customer, and when
// a metric on a new event starts to be read.
func TestAggregateTrackFilter(t *testing.T) {
	ctx := context.Background()
	dbs := twoProcesses(t)
	for _, db := range dbs {
		store.SetTrackFilterRebuildForTest(db, 0)
	}
	createAggMetrics(t, dbs[0])
	createAggExperiments(t, dbs[0], "")
	r := rand.New(rand.NewPCG(23, 24))
	at := func(d, h int) time.Time { return aggBase.Add(time.Duration(24*d+h) * time.Hour) }
	buy := func(unitType, unit string, ts time.Time) flywheel.Event {
		e := track(unit, "purchase", ts)
		e.UnitType, e.Value = unitType, aggF(float64(10+r.IntN(50)))
		return e
	}
	step := func(db *store.DB, label string, probed, quiet int, events ...flywheel.Event) store.AggregateReport {
		t.Helper()
		mustWrite(t, db, events...)
		rep := aggregateAll(t, db)
		if probed >= 0 && (rep.Probed != probed || rep.Quiet != quiet) {
			t.Errorf("%s: history looked up %d ids and left out %d, want %d and %d", label, rep.Probed, rep.Quiet, probed, quiet)
		}
		verifyAggregates(t, db, r, label, "agg-cust", "agg-dev")
		return rep
	}
	taken := func(rep store.AggregateReport, label string, keys int) {
		t.Helper()
		if b := rep.TrackFilter; b == nil || b.Err != nil || b.Keys != keys {
			t.Errorf("%s: the cycles took up the filter's build %+v, want one of %d keys", label, b, keys)
		}
	}
	// The first cycle builds the definitions; no cycle reads events before
	// the next, which starts the filter's build.
	step(dbs[0], "first exposure", -1, 0, exposure("customer", "tc0", "agg-cust", "control", at(0, 1), ""))
	// Purchases before any exposure, in the CUPED periods of the exposures
	// below (47 hours, 4 days), then the exposures: two customers with
	// events, one new customer and one new device without.
	step(dbs[0], "purchases before exposure", 0, 0, buy("customer", "tc1", at(3, 2)), buy("customer", "tc2", at(1, 5)))
	if !store.WaitTrackFilterForTest(dbs[0]) {
		t.Fatal("the first build of the filter did not end well")
	}
	rep := step(dbs[0], "exposed after their purchases", 2, 2,
		exposure("customer", "tc1", "agg-cust", "treatment", at(5, 1), ""),
		exposure("customer", "tc2", "agg-cust", "control", at(5, 1), ""),
		exposure("customer", "tc3", "agg-cust", "control", at(5, 1), ""),
		exposure("device", "dv1", "agg-dev", "a", at(5, 1), ""))
	taken(rep, "the first build", 2) // the purchases of tc1 and tc2
	// A purchase taken by the other process's cycle: this process's filter
	// never saw it, so its next cycle looks every id up (and builds again).
	step(dbs[1], "a purchase the other process takes", 0, 0, buy("customer", "tc4", at(2, 0)), buy("customer", "tc11", at(5, 23)))
	step(dbs[0], "exposed after a purchase the other process took", 1, 0,
		exposure("customer", "tc4", "agg-cust", "treatment", at(6, 0), ""))
	if !store.WaitTrackFilterForTest(dbs[0]) {
		t.Fatal("the rebuild of the filter did not end well")
	}
	// A device's purchase, then its link to a customer exposed after it:
	// the customer has no events of its own, the device has.
	rep = step(dbs[0], "the rebuilt filter takes new purchases", 0, 0, buy("customer", "tc6", at(4, 0)), buy("device", "ld1", at(2, 3)))
	taken(rep, "the rebuild", 4) // tc1, tc2, tc4 and tc11: these two come after it
	// tc11's purchase is in the filter only as the rebuild read it.
	step(dbs[0], "exposed with the rebuilt filter", 2, 1,
		exposure("customer", "tc11", "agg-cust", "treatment", at(6, 0), ""),
		exposure("customer", "tc5", "agg-cust", "control", at(6, 0), ""),
		exposure("customer", "tc6", "agg-cust", "control", at(6, 0), ""),
		identify("device", "ld1", "tc8", at(3, 0)))
	step(dbs[0], "a customer exposed after a linked device's purchase", 1, 1,
		exposure("customer", "tc8", "agg-cust", "treatment", at(6, 2), ""))
	// A signup, which no metric reads yet; then a metric that reads it,
	// and the customer exposed: the filter never held signups.
	step(dbs[0], "a signup no metric reads", -1, 0, track("tc7", "signup", at(4, 4)))
	signups := flywheel.Metric{Key: "signups", Type: flywheel.MetricCount, Event: "signup", CUPEDHours: 336}
	signups.Normalize()
	if _, err := dbs[0].CreateMetric(ctx, &signups); err != nil {
		t.Fatal(err)
	}
	if _, err := dbs[0].UpdateExperiment(ctx, "agg-cust", "update", "test", func(e *flywheel.Experiment) error {
		e.Metrics.Secondary = append(e.Metrics.Secondary, "signups")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	aggregateAll(t, dbs[0])
	step(dbs[0], "exposed after a signup, now read", 1, 0, exposure("customer", "tc7", "agg-cust", "treatment", at(6, 3), ""))
	if !store.WaitTrackFilterForTest(dbs[0]) {
		t.Fatal("the build for the new event did not end well")
	}
	rep = step(dbs[0], "the filter holds signups now", 0, 0, track("tc9", "signup", at(5, 0)))
	taken(rep, "the build for signups", 7) // the purchases of tc1, tc2, tc4, tc6, tc11 and ld1, and tc7's signup
	step(dbs[0], "exposed after a signup, filter built", 1, 1,
		exposure("customer", "tc9", "agg-cust", "control", at(6, 4), ""),
		exposure("customer", "tc10", "agg-cust", "control", at(6, 4), ""))
}

// BenchmarkTrackFilterAdvance times what a cycle adds to the filter of
// tracked days: 10,000 track events of ids that have events that day
// already, on a day of 1,500,000 ids (the busiest day of `bench
// freshness --scenario sustained`), as most track events at 50,000
// events/s are.
func BenchmarkTrackFilterAdvance(b *testing.B) {
	const ids, events = 1_500_000, 10_000
	reads := []string{"purchase"}
	f := store.NewTrackFilterForTest(0)
	f.Advance(1, reads)
	stored := make([]store.TrackEvent, ids)
	for i := range stored {
		stored[i] = store.TrackEvent{Type: "customer", ID: fmt.Sprintf("c-%d", i), TS: aggBase}
	}
	f.FinishBuild(0, stored...)
	if !f.Advance(2, reads) {
		b.Fatal("the filter is not built")
	}
	r := rand.New(rand.NewPCG(1, 2))
	batch := make([]store.TrackEvent, events)
	for i := range batch {
		batch[i] = stored[r.IntN(ids)]
	}
	b.ResetTimer()
	for i := range b.N {
		f.Advance(int64(3+i), reads, batch...)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}

// TestAggregateTrackFilterBuild: a server started on stored events builds
// its filter from them, in batches (paced), in its idle cycles, and its
// first cycle with new units then looks up a customer exposed after one
// of those events and leaves a new one out.
func TestAggregateTrackFilterBuild(t *testing.T) {
	dbs := twoProcesses(t)
	createAggMetrics(t, dbs[0])
	createAggExperiments(t, dbs[0], "")
	r := rand.New(rand.NewPCG(29, 30))
	at := aggBase.Add(50 * time.Hour)
	mustWrite(t, dbs[0], exposure("customer", "bt0", "agg-cust", "control", at, ""))
	aggregateAll(t, dbs[0])
	const n = 20_000 // more than two of a build's batches
	for i := 0; i < n; i += 1000 {
		var events []flywheel.Event
		for j := i; j < i+1000; j++ {
			e := track(fmt.Sprintf("bb-%d", j), "purchase", at.Add(time.Duration(j)*time.Second))
			e.Value = aggF(float64(1 + j%40))
			events = append(events, e)
		}
		mustWrite(t, dbs[0], events...)
	}
	aggregateAll(t, dbs[0])
	// The other server, started on them: its first cycle, with nothing
	// queued, starts its build, and the next idle one takes it up.
	if rep := aggregateAll(t, dbs[1]); rep.Queued != 0 || rep.TrackFilter != nil {
		t.Fatalf("the first idle cycle took %d queue rows, or a build %+v", rep.Queued, rep.TrackFilter)
	}
	if !store.WaitTrackFilterForTest(dbs[1]) {
		t.Fatal("the build of the filter from the stored events did not end well")
	}
	rep := aggregateAll(t, dbs[1])
	if b := rep.TrackFilter; b == nil || b.Err != nil || b.Keys < n-n/100 || b.Keys > n {
		t.Errorf("the build taken up by an idle cycle: %+v, want about %d keys (a few fewer: the filter's false positives)", b, n)
	}
	// So the first cycle with new units narrows their history.
	mustWrite(t, dbs[1], exposure("customer", "bb-12345", "agg-cust", "treatment", at.Add(30*time.Hour), ""),
		exposure("customer", "bt2", "agg-cust", "control", at.Add(30*time.Hour), ""))
	rep = aggregateAll(t, dbs[1])
	if rep.Probed != 1 || rep.Quiet != 1 {
		t.Errorf("history looked up %d ids and left out %d, want 1 and 1", rep.Probed, rep.Quiet)
	}
	verifyAggregates(t, dbs[1], r, "after the build", "agg-cust", "agg-dev")
	// An idle cycle of the first server (its filter was built by its own
	// cycles) leaves the other's chain whole: the other's next cycle still
	// narrows.
	aggregateAll(t, dbs[0])
	mustWrite(t, dbs[1], exposure("customer", "bt3", "agg-cust", "control", at.Add(31*time.Hour), ""))
	if rep = aggregateAll(t, dbs[1]); rep.Probed != 0 || rep.Quiet != 1 {
		t.Errorf("after the other server's idle cycle: history looked up %d ids and left out %d, want 0 and 1", rep.Probed, rep.Quiet)
	}
	verifyAggregates(t, dbs[1], r, "after an idle cycle of the other server", "agg-cust", "agg-dev")
}
