package store_test

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/store"
)

// TestAggregateUnitCacheProcesses runs the cycles of one database from two
// processes (two store.DB, each with its own copy of unit rows in memory),
// switching between them at random, with links and erasures from either:
// each fold must notice when the other process (or an erasure) changed the
// rows its copy holds, and the aggregates must equal a recomputation after
// every round. The second process fills its copies a few rows a fold, so
// that folds meet copies partly filled, with units recomputed both before
// and after where the fill has reached.
func TestAggregateUnitCacheProcesses(t *testing.T) {
	dbs := twoProcesses(t)
	// One copy fills three rows a fold; the other two rows for each of
	// the fold's owners.
	store.SetUnitFillForTest(dbs[1], 3, 3, 0)
	store.SetUnitFillForTest(dbs[0], 1, 1_000, 2)
	createAggMetrics(t, dbs[0])
	createAggExperiments(t, dbs[0], "")
	g := newAggGen(21, "", "", 40, 40)
	switched, erased := 0, 0
	last := 0
	for round := range 12 {
		for range 3 {
			mustWrite(t, dbs[g.r.IntN(2)], g.batch(60)...)
			// Several cycles in a row on one process fill its copy; the
			// other's cycles then change rows behind it.
			p := g.r.IntN(2)
			if p != last {
				switched++
				last = p
			}
			aggregateAll(t, dbs[p])
			if err := store.CheckUnitCopiesForTest(context.Background(), dbs[p]); err != nil {
				t.Fatalf("round %d, process %d: %v", round, p, err)
			}
		}
		if round%3 == 1 {
			mustWrite(t, dbs[g.r.IntN(2)], g.collect(6, g.link)...)
			aggregateAll(t, dbs[g.r.IntN(2)])
		}
		if round%4 == 2 {
			if ids := g.erase(t, dbs[g.r.IntN(2)]); len(ids) > 0 {
				erased++
			}
			mustWrite(t, dbs[0], g.batch(40)...)
			aggregateAll(t, dbs[g.r.IntN(2)])
		}
		verifyAggregates(t, dbs[0], g.r, fmt.Sprintf("round %d", round), g.cust, g.dev)
	}
	if switched < 4 || erased == 0 {
		t.Errorf("the rounds switched processes %d times and erased %d clusters: want both", switched, erased)
	}
}

// TestFloat8Numeric compares float8Numeric, the value Go gives a float8's
// numeric cast, with PostgreSQL's own cast, for random values of every
// magnitude, whole numbers, cents, the cases where rounding to 15 digits
// ties or carries, and NaN and the infinities.
func TestFloat8Numeric(t *testing.T) {
	db := newDB(t)
	r := rand.New(rand.NewPCG(5, 8))
	xs := []float64{0, 1, -1, 0.1, 0.5, 1.5, 2.675, 1e11, 1e11 - 1, 99999999999.99, 123456789012345, 1234567890123455,
		9007199254740993, 1e-300, 5e-324, math.MaxFloat64, -math.MaxFloat64, 0.30000000000000004, 1.0000000000000002,
		999999999999999.9, 9.999999999999999e22, 4.35, 0.0001, -0.0001, 12.3456, 12.34565,
		math.NaN(), math.Inf(1), math.Inf(-1)}
	for range 3000 {
		var x float64
		switch r.IntN(5) {
		case 0:
			x = math.Round(r.NormFloat64()*1e6) / 100 // cents
		case 1:
			x = math.Round(r.NormFloat64() * 1e9) // whole
		case 2:
			x = r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
		case 3:
			x = math.Float64frombits(r.Uint64())
			if math.IsNaN(x) || math.IsInf(x, 0) {
				x = 1
			}
		default:
			x = float64(r.Int64N(1<<53)) / math.Pow(10, float64(r.IntN(18)))
		}
		xs = append(xs, x)
	}
	var want []string
	rows, err := db.Pool().Query(context.Background(), `SELECT x::numeric::text FROM unnest($1::float8[]) WITH ORDINALITY AS t(x, i) ORDER BY i`, xs)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		want = append(want, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(xs))
	for i, x := range xs {
		got[i] = store.Float8NumericForTest(x)
	}
	// Compare as numerics: the same value, whatever the scale written.
	rows, err = db.Pool().Query(context.Background(),
		`SELECT i, a, b FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(a, b, i) WHERE a::numeric <> b::numeric`, got, want)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var i int
		var a, b string
		if err := rows.Scan(&i, &a, &b); err != nil {
			t.Fatal(err)
		}
		t.Errorf("float8Numeric(%v) = %s, PostgreSQL's cast %s", xs[i-1], a, b)
	}
}

// TestAggregateUnitCacheErasure: an erasure changes unit rows that a
// process's copy holds (store/aggregate_fold.go): the erasing process's
// copy keeps the rest and looks the erased unit up again, and a later
// track event under an erased id (not exposed again) must find no unit to
// add to, whatever the copy says.
func TestAggregateUnitCacheErasure(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	now := time.Now().UTC().Truncate(time.Hour)
	var events []flywheel.Event
	for i := range 6 {
		id := fmt.Sprintf("c-%d", i)
		events = append(events, exposure("customer", id, "agg-cust", []string{"control", "treatment"}[i%2], now.Add(-3*time.Hour), ""))
	}
	mustWrite(t, db, events...)
	aggregateAll(t, db) // builds the definitions
	purchase := func(id string, at time.Time) flywheel.Event {
		e := track(id, "purchase", at)
		e.Value = aggF(10)
		return e
	}
	for round := range 2 { // staged folds: the copy now holds the units
		for i := range 6 {
			mustWrite(t, db, purchase(fmt.Sprintf("c-%d", i), now.Add(time.Duration(round-2)*time.Hour)))
		}
		aggregateAll(t, db)
	}
	if _, err := db.EraseUnit(ctx, flywheel.UnitRef{UnitType: "customer", UnitID: "c-0"}, "test"); err != nil {
		t.Fatalf("EraseUnit: %v", err)
	}
	// The erasure moved every definition's epoch; this process's copy
	// moved with it, without the erased unit, which it looks up again.
	epoch := int64(queryInt(t, db, `SELECT epoch FROM agg_defs WHERE experiment = 'agg-cust' AND metric = 'revenue'`))
	if c, ok := store.UnitCopyForTest(db, "agg-cust", "revenue"); !ok || c.Epoch != epoch || c.Units != 5 || !c.Complete || !slices.Equal(c.Unknown, []string{"c-0"}) {
		t.Errorf("after the erasure, copy %+v (ok %v), want epoch %d, 5 units, complete, c-0 to look up", c, ok, epoch)
	}
	mustWrite(t, db, purchase("c-0", now.Add(-30*time.Minute)), purchase("c-1", now.Add(-30*time.Minute)))
	aggregateAll(t, db)
	if c, ok := store.UnitCopyForTest(db, "agg-cust", "revenue"); !ok || c.Units != 5 || !c.Complete || len(c.Unknown) != 0 {
		t.Errorf("after the next fold, copy %+v (ok %v), want 5 units, complete, none to look up", c, ok)
	}
	// The new event itself is data that arrived after the erasure (it is
	// stored, and staged until the next cycle); what must not come back
	// is a unit row or day rows for the id, which is in no experiment.
	for _, q := range []string{
		`SELECT count(*) FROM agg_units WHERE unit_id = 'c-0'`,
		`SELECT count(*) FROM agg_unit_days WHERE unit_id = 'c-0'`,
	} {
		if n := queryInt(t, db, q); n != 0 {
			t.Errorf("after a track event under the erased id: %d rows: %s", n, q)
		}
	}
	verifyAggregates(t, db, rand.New(rand.NewPCG(1, 2)), "after the erasure", "agg-cust")
}

// TestDecSum: sums of numeric terms are exact, and non-finite terms sum as
// PostgreSQL's numeric sums them.
func TestDecSum(t *testing.T) {
	for _, c := range []struct {
		terms []float64
		want  string
	}{
		{nil, "0"},
		{[]float64{1.5, -1.5}, "0"},
		{[]float64{0.1, 0.2}, "3e-1"}, // 0.1 + 0.2 as numerics, not as floats
		{[]float64{1e20, 1, -1e20}, "1e0"},
		{[]float64{0.30000000000000004, -0.3}, "0"}, // float8::numeric keeps 15 digits: both are 0.3
		{[]float64{math.Inf(1), 1}, "Infinity"},
		{[]float64{math.Inf(-1), math.Inf(-1)}, "-Infinity"},
		{[]float64{math.Inf(1), math.Inf(-1)}, "NaN"},
		{[]float64{math.NaN(), math.Inf(1)}, "NaN"},
	} {
		got := store.DecSumForTest(c.terms...)
		g, gok := new(big.Rat).SetString(got)
		w, wok := new(big.Rat).SetString(c.want)
		if gok && wok && g.Cmp(w) == 0 || !wok && got == c.want {
			continue
		}
		t.Errorf("sum of %v = %s, want %s", c.terms, got, c.want)
	}
}

// TestAggregateUnitCopyComplete fills the copies two rows a fold until
// they are complete, then sends track events of a unit not in the
// experiment (a complete copy skips it without a lookup), exposes that unit
// (the cycle recomputes it: the copy must look it up again, but only once
// it has events to fold), and tracks it again: the aggregates must equal a
// recomputation at every step.
func TestAggregateUnitCopyComplete(t *testing.T) {
	db := newCopyDB(t, 2)
	r := rand.New(rand.NewPCG(3, 4))
	buy := func(unit string, hours float64, value float64) flywheel.Event {
		e := track(unit, "purchase", aggBase.Add(time.Duration(hours*float64(time.Hour))))
		e.Value = aggF(value)
		return e
	}
	copyOf := func(label string) (int, bool, int) {
		t.Helper()
		c, ok := store.UnitCopyForTest(db, "agg-cust", "revenue")
		if !ok {
			t.Fatalf("%s: no copy of agg-cust/revenue", label)
		}
		return c.Units, c.Complete, len(c.Unknown)
	}
	// Each fold reads 2 more rows in the table's order, and reads again
	// those that earlier folds moved ahead of it.
	for round := 0; ; round++ {
		mustWrite(t, db, buy(fmt.Sprintf("uc%d", round%5), 10+float64(round), 20))
		aggregateAll(t, db)
		verifyAggregates(t, db, r, fmt.Sprintf("filling, round %d", round), "agg-cust")
		if err := store.CheckUnitCopiesForTest(context.Background(), db); err != nil {
			t.Fatalf("filling, round %d: %v", round, err)
		}
		n, complete, _ := copyOf("filling")
		if n < min(5, 2*(round+1)) && !complete {
			t.Errorf("round %d: copy of %d units; want at least %d", round, n, min(5, 2*(round+1)))
		}
		if complete {
			break
		}
		if round == 20 {
			t.Fatalf("copy still incomplete after %d folds", round+1)
		}
	}
	// Not in the experiment: skipped by the complete copy.
	mustWrite(t, db, buy("ucx", 12, 30), buy("uc1", 13, 5))
	aggregateAll(t, db)
	verifyAggregates(t, db, r, "a unit not in the experiment", "agg-cust")
	if n, complete, _ := copyOf("not in the experiment"); n != 5 || !complete {
		t.Errorf("copy of %d units, complete %v; want the 5 exposed, complete", n, complete)
	}
	// Exposed now: recomputed with its purchase, and unknown to the copy
	// until a fold looks it up.
	mustWrite(t, db, exposure("customer", "ucx", "agg-cust", "treatment", aggBase.Add(11*time.Hour), ""))
	aggregateAll(t, db)
	verifyAggregates(t, db, r, "the unit exposed", "agg-cust")
	if _, _, unknown := copyOf("exposed"); unknown != 1 {
		t.Errorf("copy has %d units to look up after the exposure, want 1", unknown)
	}
	// Not an owner yet: not looked up, and still unknown.
	mustWrite(t, db, buy("uc3", 13.5, 2))
	rep := aggregateAll(t, db)
	verifyAggregates(t, db, r, "another unit tracked", "agg-cust")
	if f := foldOf(t, rep, "agg-cust/revenue"); f.Owners != 1 || f.Lookups != 0 || f.Units != 1 {
		t.Errorf("fold of another unit: %+v; want 1 owner, no lookup, 1 unit row written", f)
	}
	if _, _, unknown := copyOf("another unit tracked"); unknown != 1 {
		t.Errorf("copy has %d units to look up after another unit's fold, want 1", unknown)
	}
	mustWrite(t, db, buy("ucx", 14, 40), buy("uc2", 15, 1))
	rep = aggregateAll(t, db)
	verifyAggregates(t, db, r, "the unit tracked again", "agg-cust")
	f := foldOf(t, rep, "agg-cust/revenue")
	if f.Owners != 2 || f.Filled != 0 || f.Lookups != 1 || f.Units != 2 || f.Days != 0 {
		t.Errorf("fold of the unit tracked again: %+v; want 2 owners, none filled, 1 looked up, 2 unit rows written and no day row (on their last day)", f)
	}
	if n, complete, unknown := copyOf("tracked again"); n != 6 || !complete || unknown != 0 {
		t.Errorf("copy of %d units, complete %v, %d to look up; want 6, complete, none", n, complete, unknown)
	}
}

// newCopyDB returns an aggregated database whose copies fill as
// chunk rows a fold, with five customers uc0 to uc4 exposed to agg-cust.
func newCopyDB(t *testing.T, chunk int) *store.DB {
	t.Helper()
	db := newAggDB(t)
	store.SetUnitFillForTest(db, chunk, chunk, 0)
	exposeCustomers(t, db, "uc%d", 5, time.Hour)
	return db
}

// exposeCustomers exposes n customers (named by format from their number)
// to agg-cust, a step apart, alternating control and treatment, and
// aggregates them.
func exposeCustomers(t *testing.T, db *store.DB, format string, n int, step time.Duration) {
	t.Helper()
	var events []flywheel.Event
	for i := range n {
		events = append(events, exposure("customer", fmt.Sprintf(format, i), "agg-cust", []string{"control", "treatment"}[i%2],
			aggBase.Add(time.Duration(i+1)*step), ""))
	}
	mustWrite(t, db, events...)
	aggregateAll(t, db)
}

// TestAggregateUnitCopyMoves fills copies three rows or one page a fold,
// in the table's order, while folds and cycles move rows around where the
// fill is: folds rewrite the rows of units the fill has read and of units
// it has not (a VACUUM before each frees places their new versions may
// take), and a cycle adds a unit. After every fold each copy must equal
// the table, and the aggregates a recomputation; the fills must have read
// some row again (one that moved ahead of them), and a last fold of every
// unit writes through the complete copy.
func TestAggregateUnitCopyMoves(t *testing.T) {
	db := newAggDB(t)
	store.SetUnitFillForTest(db, 3, 3, 0)
	store.SetUnitFillPagesForTest(db, 1) // and a page at most
	ctx := context.Background()
	unit := func(i int) string { return fmt.Sprintf("um%02d", i) }
	exposeCustomers(t, db, "um%02d", 12, time.Minute)
	r := rand.New(rand.NewPCG(9, 10))
	hour := 10
	buy := func(units ...string) []flywheel.Event {
		var evs []flywheel.Event
		for _, u := range units {
			e := track(u, "purchase", aggBase.Add(time.Duration(hour)*time.Hour))
			e.Value = aggF(float64(hour))
			evs = append(evs, e)
		}
		hour++
		return evs
	}
	filled := 0 // the rows the revenue folds' fills read
	for round, units := range [][]string{
		{unit(11)},          // most likely not read yet: looked up
		{unit(10), unit(0)}, // one not read yet, one read
		{unit(9), unit(1), unit(11)},
		{unit(12)}, // exposed below: the cycle adds its row, and the copy must look it up
		{unit(8), unit(2), unit(12)},
		{unit(7), unit(6), unit(5)},
		{unit(4), unit(3)},
	} {
		if _, err := db.Pool().Exec(ctx, `VACUUM agg_units`); err != nil {
			t.Fatalf("VACUUM: %v", err)
		}
		evs := buy(units...)
		if round == 3 {
			evs = append(evs, exposure("customer", unit(12), "agg-cust", "treatment", aggBase.Add(time.Hour), ""))
		}
		mustWrite(t, db, evs...)
		for _, f := range aggregateAll(t, db).Folds { // none when the cycle recomputed the unit
			if f.Definition == "agg-cust/revenue" {
				filled += f.Filled
			}
		}
		if err := store.CheckUnitCopiesForTest(ctx, db); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		verifyAggregates(t, db, r, fmt.Sprintf("round %d", round), "agg-cust")
	}
	for fold := 0; ; fold++ { // folds of a unit read, until the copy is complete
		if c, ok := store.UnitCopyForTest(db, "agg-cust", "revenue"); !ok || c.Complete {
			break
		}
		if fold == 200 {
			c, _ := store.UnitCopyForTest(db, "agg-cust", "revenue")
			t.Fatalf("copy still incomplete after %d more folds: %+v, the table has %d pages", fold, c,
				queryInt(t, db, `SELECT pg_relation_size('agg_units') / 8192`))
		}
		mustWrite(t, db, buy(unit(0))...)
		filled += foldOf(t, aggregateAll(t, db), "agg-cust/revenue").Filled
		if err := store.CheckUnitCopiesForTest(ctx, db); err != nil {
			t.Fatalf("fold %d after the rounds: %v", fold, err)
		}
	}
	if c, ok := store.UnitCopyForTest(db, "agg-cust", "revenue"); !ok || !c.Complete || c.Units != 13 {
		t.Errorf("the copy after the rounds: %+v, %v; want 13 units, complete", c, ok)
	}
	if filled <= 13 {
		t.Errorf("the fills read %d rows: no row moved ahead of the fill, so the test does not test that", filled)
	}
	var all []string
	for i := range 13 {
		all = append(all, unit(i))
	}
	mustWrite(t, db, buy(all...)...)
	rep := aggregateAll(t, db)
	if err := store.CheckUnitCopiesForTest(ctx, db); err != nil {
		t.Fatalf("every unit: %v", err)
	}
	verifyAggregates(t, db, r, "every unit", "agg-cust")
	if f := foldOf(t, rep, "agg-cust/revenue"); f.Owners != 13 || f.Filled != 0 || f.Lookups != 0 || f.Units != 13 {
		t.Errorf("fold of every unit: %+v; want 13 owners, none filled or looked up, 13 unit rows written", f)
	}
}

// TestAggregateUnitCopyPages fills a copy whose rows lie on many pages,
// a page a fold (the first fold of each stretch two: the rest of the page
// the fill is on, and one more), with room for more rows than there are:
// each fold must end its chunk at the page bound without calling the copy
// complete, until a chunk reaches the table's end and, when the fill
// started after the table's first page, another reaches that page.
func TestAggregateUnitCopyPages(t *testing.T) {
	db := newAggDB(t)
	store.SetUnitFillForTest(db, 1_000, 1_000, 0)
	store.SetUnitFillPagesForTest(db, 1)
	exposeCustomers(t, db, "up%02d", 60, time.Minute)
	pages := int(queryInt(t, db, `SELECT pg_relation_size('agg_units') / current_setting('block_size')::int8`))
	if pages < 6 {
		t.Fatalf("agg_units has %d pages; the test needs at least 6", pages)
	}
	r := rand.New(rand.NewPCG(11, 12))
	// wrapped: the fold the fill went back to the table's start in, and
	// base the page it ended there (1 when the first stretch was one page
	// and the chunk went on, else none)
	folds, wrapped, base := 0, -1, 0
	for ; ; folds++ {
		e := track(fmt.Sprintf("up%02d", folds%60), "purchase", aggBase.Add(time.Duration(10+folds)*time.Hour))
		e.Value = aggF(float64(folds + 1))
		c := revenueCopyAfter(t, db, folds, e)
		if c.Complete {
			if c.Units != 60 {
				t.Errorf("fold %d: a complete copy of %d units, want 60", folds, c.Units)
			}
			if c.Start > 0 && !c.Wrapped {
				t.Errorf("fold %d: complete without the pages before page %d, where the fill started", folds, c.Start)
			}
			break
		}
		var want pgtype.TID
		switch {
		case !c.Wrapped:
			want = pgtype.TID{BlockNumber: c.Start + uint32(folds) + 1, OffsetNumber: 65535, Valid: true}
		case wrapped < 0: // at the table's start, or a page on when the first stretch was one page
			wrapped = folds
			if c.From != (pgtype.TID{Valid: true}) {
				base = 1
				want = pgtype.TID{BlockNumber: 1, OffsetNumber: 65535, Valid: true}
			} else {
				want = c.From
			}
		default:
			want = pgtype.TID{BlockNumber: uint32(base + folds - wrapped), OffsetNumber: 65535, Valid: true}
		}
		if c.From != want || c.Wrapped && c.From.BlockNumber >= c.Start {
			t.Errorf("fold %d: the fill is at %v (started at page %d, wrapped %v), want %v", folds, c.From, c.Start, c.Wrapped, want)
		}
		if folds > pages {
			t.Fatalf("copy still incomplete after %d folds of a table of %d pages", folds+1, pages)
		}
	}
	if folds+3 < pages {
		t.Errorf("the copy was complete after %d folds, of two pages and then one in each stretch, in a table of %d", folds+1, pages)
	}
	verifyAggregates(t, db, r, "after the fill", "agg-cust")
}

// TestAggregateUnitCopyStart fills the copy of a definition built after
// the others, whose rows lie after theirs, a page a fold: its first fold,
// of units whose rows are the definition's last, must start the fill at
// their page and read rows at once, not cross the other definitions'
// pages first; the fill then wraps round to the table's start, and the
// copy is complete only once it has read the definition's rows before
// the page it started at.
func TestAggregateUnitCopyStart(t *testing.T) {
	db := newAggDB(t)
	ctx := context.Background()
	store.SetUnitFillForTest(db, 1_000, 1_000, 0)
	store.SetUnitFillPagesForTest(db, 1)
	exposeCustomers(t, db, "us%02d", 60, time.Minute)
	primary := func(metrics ...string) {
		t.Helper()
		if _, err := db.UpdateExperiment(ctx, "agg-cust", "update", "test", func(e *flywheel.Experiment) error {
			e.Metrics.Primary = metrics
			return nil
		}); err != nil {
			t.Fatalf("UpdateExperiment: %v", err)
		}
		aggregateAll(t, db)
	}
	primary("conv")
	primary("conv", "revenue") // built again, after the other definitions' rows
	page := func(order string) int {
		return int(queryInt(t, db, `SELECT (ctid::text::point)[0]::int8 FROM agg_units
			WHERE experiment = 'agg-cust' AND metric = 'revenue' ORDER BY ctid `+order+` LIMIT 1`))
	}
	first, last := page("ASC"), page("DESC")
	if first < 4 || last <= first {
		t.Fatalf("revenue's rows are on pages %d to %d; the test needs them after 4 pages of others, on two pages or more", first, last)
	}
	var owners []string // revenue's units on its last page
	rows, err := db.Pool().Query(ctx, `SELECT unit_id FROM agg_units WHERE experiment = 'agg-cust' AND metric = 'revenue'
		AND (ctid::text::point)[0] = $1`, last)
	if err != nil {
		t.Fatal(err)
	}
	owners, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(owners) == 0 {
		t.Fatalf("revenue's units on page %d: %v, %v", last, owners, err)
	}
	pages := int(queryInt(t, db, `SELECT pg_relation_size('agg_units') / current_setting('block_size')::int8`))
	r := rand.New(rand.NewPCG(15, 16))
	for fold := 0; ; fold++ {
		unit := owners[fold%len(owners)]
		e := track(unit, "purchase", aggBase.Add(time.Duration(10+fold)*time.Hour))
		e.Value = aggF(float64(fold + 1))
		mustWrite(t, db, e)
		rep := aggregateAll(t, db)
		if err := store.CheckUnitCopiesForTest(ctx, db); err != nil {
			t.Fatalf("fold %d: %v", fold, err)
		}
		c, ok := store.UnitCopyForTest(db, "agg-cust", "revenue")
		if !ok {
			t.Fatalf("fold %d: no copy of agg-cust/revenue", fold)
		}
		if fold == 0 {
			if f := foldOf(t, rep, "agg-cust/revenue"); f.Filled == 0 || c.Start != uint32(last) {
				t.Errorf("first fold: %+v, the fill started at page %d; want rows read, from page %d", f, c.Start, last)
			}
		}
		if c.Complete {
			if c.Units != 60 {
				t.Errorf("fold %d: a complete copy of %d units, want 60", fold, c.Units)
			}
			if !c.Wrapped {
				t.Errorf("fold %d: complete without reading the pages before page %d", fold, c.Start)
			}
			break
		}
		if fold > pages+1 {
			t.Fatalf("copy still incomplete after %d folds of a table of %d pages: %+v", fold+1, pages, c)
		}
	}
	verifyAggregates(t, db, r, "after the fill", "agg-cust")
}

// TestAggregateUnitCopyEnds fills a copy a page a fold while every fold
// rewrites every unit row of the definition, more rows than the fill
// reads, so that the table grows faster than the fill goes: the fill must
// end at the table's end as it was at its first chunk (the rows after it
// are the folds' own, in the copy already), not follow the rows the folds
// move ahead of it.
func TestAggregateUnitCopyEnds(t *testing.T) {
	db := newAggDB(t)
	store.SetUnitFillForTest(db, 1_000, 1_000, 0)
	store.SetUnitFillPagesForTest(db, 1)
	exposeCustomers(t, db, "ue%02d", 60, time.Minute)
	size := func() int {
		return int(queryInt(t, db, `SELECT pg_relation_size('agg_units') / current_setting('block_size')::int8`))
	}
	pages := size()
	r := rand.New(rand.NewPCG(13, 14))
	// began: the fold the fill read its first chunk in. A fill begins
	// again when the definition's epoch moved past its copy (Read falls);
	// the bound is on each fill, from its own first chunk.
	began, read := 0, 0
	var history []string
	for fold := 0; ; fold++ {
		var evs []flywheel.Event
		for i := range 60 {
			e := track(fmt.Sprintf("ue%02d", i), "purchase", aggBase.Add(time.Duration(10+fold)*time.Hour))
			e.Value = aggF(float64(fold + i))
			evs = append(evs, e)
		}
		c := revenueCopyAfter(t, db, fold, evs...)
		history = append(history, fmt.Sprintf("fold %d: %+v", fold, c))
		if c.Read < read {
			began = fold
		}
		read = c.Read
		if c.Complete {
			if c.Units != 60 {
				t.Errorf("fold %d: a complete copy of %d units, want 60", fold, c.Units)
			}
			if now := size(); now <= pages+1 {
				t.Errorf("the table grew from %d to %d pages while the copy filled: the test does not test that", pages, now)
			}
			break
		}
		if fold > 3*pages {
			t.Fatalf("copy still incomplete after %d folds, its fill begun again at fold %d:\n%s", fold+1, began, strings.Join(history, "\n"))
		}
		// A fill of a page a fold reads two pages in its first chunk, so
		// the pages of the table at that chunk take at most one fold fewer.
		if fold-began >= int(c.Pages)-1 {
			t.Fatalf("copy still incomplete after %d folds: the table had %d pages when the fill began and has %d now; the copy after each fold:\n%s",
				fold-began+1, c.Pages, size(), strings.Join(history, "\n"))
		}
	}
	verifyAggregates(t, db, r, "after the fill", "agg-cust")
}

// revenueCopyAfter writes events, aggregates them in fold number fold,
// checks every copy against the table, and returns the copy of
// agg-cust/revenue.
func revenueCopyAfter(t *testing.T, db *store.DB, fold int, events ...flywheel.Event) store.UnitCopy {
	t.Helper()
	mustWrite(t, db, events...)
	aggregateAll(t, db)
	if err := store.CheckUnitCopiesForTest(context.Background(), db); err != nil {
		t.Fatalf("fold %d: %v", fold, err)
	}
	c, ok := store.UnitCopyForTest(db, "agg-cust", "revenue")
	if !ok {
		t.Fatalf("fold %d: no copy of agg-cust/revenue", fold)
	}
	return c
}

// foldOf returns the one fold of definition (experiment/metric) that rep
// reports, with its steps checked: each fold reads its staged events and
// computes, and one that wrote rows reports its write.
func foldOf(t *testing.T, rep store.AggregateReport, definition string) store.Fold {
	t.Helper()
	var found []store.Fold
	for _, f := range rep.Folds {
		if f.Definition == definition {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d folds of %s reported, want 1: %+v", len(found), definition, rep.Folds)
	}
	f := found[0]
	steps := map[string]bool{}
	for _, s := range f.Steps {
		steps[s.Name] = true
	}
	if !steps["staged"] || (f.Units > 0 && !(steps["compute"] && steps["write"])) || (f.Filled > 0 && !steps["fill"]) {
		t.Errorf("fold of %s reports the steps %+v", definition, f.Steps)
	}
	return f
}

// TestAggregateUnitCopyShared checks the fill of a copy that another
// process dropped: with the default rule, a fold reads 128 rows for each
// of its owners, but once another process has moved the definition's
// epoch on (here by folding events of its own), this process fills that
// definition's copy with 16 rows an owner: servers taking turns would
// otherwise read large chunks after each turn.
func TestAggregateUnitCopyShared(t *testing.T) {
	dbs := twoProcesses(t)
	for _, db := range dbs {
		store.SetUnitFillForTest(db, 1, 1_000, 0) // the default rows an owner, with no floor
	}
	createAggMetrics(t, dbs[0])
	createAggExperiments(t, dbs[0], "")
	exposeCustomers(t, dbs[0], "us%02d", 40, time.Minute)
	r := rand.New(rand.NewPCG(7, 8))
	buy := func(db *store.DB, unit string, hours int) store.Fold {
		t.Helper()
		e := track(unit, "purchase", aggBase.Add(time.Duration(hours)*time.Hour))
		e.Value = aggF(float64(hours))
		mustWrite(t, db, e)
		rep := aggregateAll(t, db)
		verifyAggregates(t, db, r, fmt.Sprintf("%s at %d h", unit, hours), "agg-cust")
		return foldOf(t, rep, "agg-cust/revenue")
	}
	copied := func(label string) (int, bool) {
		t.Helper()
		c, ok := store.UnitCopyForTest(dbs[0], "agg-cust", "revenue")
		if !ok {
			t.Fatalf("%s: no copy of agg-cust/revenue", label)
		}
		return c.Units, c.Complete
	}
	// One owner, 40 rows: 128 rows an owner read all of them at once.
	if f := buy(dbs[0], "us00", 10); f.Filled != 40 {
		t.Errorf("first fill: %d rows read, want all 40", f.Filled)
	}
	if n, complete := copied("first fill"); n != 40 || !complete {
		t.Errorf("after the first fill: a copy of %d units, complete %v; want 40, complete", n, complete)
	}
	// This process's own rebuild (the metric changed) is no drop by
	// another: the next fold reads all the rows at once again.
	if _, err := dbs[0].UpdateMetric(context.Background(), "revenue", func(m *flywheel.Metric) error {
		m.WindowHours = 96
		return nil
	}); err != nil {
		t.Fatalf("UpdateMetric: %v", err)
	}
	if rep := aggregateAll(t, dbs[0]); !slices.Contains(rep.Rebuilt, "agg-cust/revenue") {
		t.Fatalf("rebuilt %q, want agg-cust/revenue among them", rep.Rebuilt)
	}
	if _, ok := store.UnitCopyForTest(dbs[0], "agg-cust", "revenue"); ok {
		t.Error("a copy of agg-cust/revenue kept after its rebuild")
	}
	if f := buy(dbs[0], "us39", 10); f.Filled != 40 {
		t.Errorf("fill after the rebuild: %d rows read, want all 40", f.Filled)
	}
	// The other process's fold moves the epoch on past this copy.
	buy(dbs[1], "us01", 11)
	// Dropped by another process: 16 rows for the one owner a fold (rows
	// that folds moved ahead of the fill are read again), until a chunk is
	// shorter.
	for fold := 0; ; fold++ {
		f := buy(dbs[0], fmt.Sprintf("us%02d", 2+fold), 12+fold)
		if fold == 0 && f.Filled != 16 {
			t.Errorf("first fold after the drop: %d rows read, want 16", f.Filled)
		}
		if _, complete := copied("after the drop"); complete {
			break
		}
		if fold == 5 {
			t.Fatalf("copy still incomplete after %d folds", fold+1)
		}
	}
	if n, complete := copied("after the drop"); n != 40 || !complete {
		t.Errorf("after the drop: a copy of %d units, complete %v; want 40, complete", n, complete)
	}
}

// twoProcesses opens a fresh database twice, as two server processes
// would, each store.DB with its own unit copies.
func twoProcesses(t *testing.T) [2]*store.DB {
	t.Helper()
	url := pgtest.NewDatabase(t)
	return [2]*store.DB{openDB(t, url), openDB(t, url)}
}

// TestAggregatePagesKeepRoom folds purchases of a quarter of 40 customers
// a cycle for 60 cycles, without anything else reading the pages of their
// rows: the writes must look up enough of their rows by key that the pages
// are pruned and every update finds room on its row's page (a HOT update;
// the row would move to another page otherwise, as it did when no write
// looked its rows up).
func TestAggregatePagesKeepRoom(t *testing.T) {
	db := newAggDB(t)
	exposeCustomers(t, db, "hp%d", 40, time.Minute)
	r := rand.New(rand.NewPCG(8, 9))
	var first map[string]uint32
	moved := map[string]int{}
	for round := range 60 {
		var events []flywheel.Event
		for _, i := range r.Perm(40)[:10] {
			e := track(fmt.Sprintf("hp%d", i), "purchase", aggBase.Add(2*time.Hour+time.Duration(round)*time.Minute))
			e.Value = aggF(float64(1 + r.IntN(90)))
			events = append(events, e)
		}
		mustWrite(t, db, events...)
		aggregateAll(t, db)
		blocks := store.UnitBlocksForTest(db, "agg-cust", "revenue")
		if round == 0 {
			if len(blocks) != 40 {
				t.Fatalf("the copy of agg-cust/revenue holds %d units after the first fold, want 40", len(blocks))
			}
			first = blocks
			continue
		}
		for id, b := range blocks {
			if b != first[id] {
				moved[id] = round
			}
		}
	}
	if len(moved) > 0 {
		t.Errorf("%d of 40 unit rows moved to another page (unit: last round it did): %v", len(moved), moved)
	}
	verifyAggregates(t, db, r, "after the folds", "agg-cust")
}

// TestAggregateRepairsUnitDays: a unit whose stored days break what a fold
// relies on (a day row on or after its unit row's last day) is recomputed
// from its raw events instead of failing the cycle, which would fail every
// later cycle too. The break is made by hand: the unit's last day and its
// one day row swap days (the same days and sums, so the per-variant day
// sums stay right), and a late event then makes a fold read its days.
func TestAggregateRepairsUnitDays(t *testing.T) {
	ctx := context.Background()
	dbs := twoProcesses(t)
	createAggMetrics(t, dbs[0])
	createAggExperiments(t, dbs[0], "")
	mustWrite(t, dbs[0], exposure("customer", "rp1", "agg-cust", "control", aggBase.Add(time.Hour), ""),
		exposure("customer", "rp2", "agg-cust", "treatment", aggBase.Add(time.Hour), ""))
	aggregateAll(t, dbs[0])
	purchase := func(id string, at time.Time, v float64) flywheel.Event {
		e := track(id, "purchase", at)
		e.Value = aggF(v)
		return e
	}
	day := 24 * time.Hour
	mustWrite(t, dbs[0], purchase("rp1", aggBase.Add(day+10*time.Hour), 20), purchase("rp2", aggBase.Add(day+10*time.Hour), 5))
	aggregateAll(t, dbs[0])
	mustWrite(t, dbs[0], purchase("rp1", aggBase.Add(2*day+10*time.Hour), 30), purchase("rp2", aggBase.Add(2*day+10*time.Hour), 7))
	aggregateAll(t, dbs[0])
	tag, err := dbs[0].Pool().Exec(ctx, `WITH d AS (
		    SELECT experiment, metric, unit_id, day, n, v, num, den FROM agg_unit_days WHERE experiment = 'agg-cust' AND unit_id = 'rp1'
		), a AS (
		    SELECT a.experiment, a.metric, a.unit_id, a.last_day, a.last_n, a.last_v, a.last_num, a.last_den
		    FROM agg_units a JOIN d USING (experiment, metric, unit_id)
		), ua AS (
		    UPDATE agg_units x SET last_day = d.day, last_n = d.n, last_v = d.v, last_num = d.num, last_den = d.den FROM d
		    WHERE (x.experiment, x.metric, x.unit_id) = (d.experiment, d.metric, d.unit_id) RETURNING 1
		)
		UPDATE agg_unit_days x SET day = a.last_day, n = a.last_n, v = a.last_v, num = a.last_num, den = a.last_den FROM a
		WHERE (x.experiment, x.metric, x.unit_id) = (a.experiment, a.metric, a.unit_id) AND (SELECT count(*) FROM ua) > 0`)
	if err != nil {
		t.Fatalf("breaking the unit's days: %v", err)
	}
	broken := int(tag.RowsAffected())
	if broken < 2 { // revenue and spend at least: a value on each day
		t.Fatalf("broke %d definitions' days of rp1, want 2 or more", broken)
	}
	// The other process has no copy of the rows: it reads them as they
	// are now. A late purchase of each unit, on the day of the exposure.
	mustWrite(t, dbs[1], purchase("rp1", aggBase.Add(12*time.Hour), 11), purchase("rp2", aggBase.Add(12*time.Hour), 3))
	rep := aggregateAll(t, dbs[1])
	repaired := 0
	for _, f := range rep.Folds {
		repaired += f.Repaired
	}
	if repaired != broken {
		t.Errorf("folds repaired %d units, want %d (one a definition whose days were broken)", repaired, broken)
	}
	if n := queryInt(t, dbs[1], `SELECT count(*) FROM agg_queue`); n == 0 {
		t.Errorf("nothing queued for the next cycle after the repair")
	}
	aggregateAll(t, dbs[1]) // recomputes rp1
	if n := queryInt(t, dbs[1], `SELECT count(*) FROM agg_queue`); n != 0 {
		t.Errorf("%d queue rows left after the recomputation", n)
	}
	verifyAggregates(t, dbs[1], rand.New(rand.NewPCG(3, 4)), "after the repair", "agg-cust")
	// The first process's copy still holds rp1 as it was before the break:
	// its next fold must not trust it (the recomputation moved the
	// definitions' epochs, so the copies start again).
	mustWrite(t, dbs[0], purchase("rp1", aggBase.Add(2*day+11*time.Hour), 13), purchase("rp2", aggBase.Add(13*time.Hour), 2))
	aggregateAll(t, dbs[0])
	verifyAggregates(t, dbs[0], rand.New(rand.NewPCG(5, 6)), "after a fold by the other process", "agg-cust")
}
