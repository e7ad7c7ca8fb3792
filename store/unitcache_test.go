package store

import (
	"maps"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestUnitCacheRecomputed follows the copies through a cycle's
// recomputation (unitCache.recomputed): a copy at the epoch the cycle moved
// takes the rows the cycle wrote for it, or forgets the units it did not
// report; a copy at another epoch is dropped.
func TestUnitCacheRecomputed(t *testing.T) {
	row := func(block uint32, y float64) cachedUnit {
		return cachedUnit{tid: pgtype.TID{BlockNumber: block, OffsetNumber: 1, Valid: true}, variant: "control", y: y}
	}
	changedRow := func(id string, block uint32, y float64) foldUnit {
		return foldUnit{id: id, tid: pgtype.TID{BlockNumber: block, OffsetNumber: 1, Valid: true}, variant: "control", y: y}
	}
	revenue, purchase, other := [2]string{"e", "revenue"}, [2]string{"e", "purchase"}, [2]string{"e", "count"}
	newCache := func() *unitCache {
		return &unitCache{defs: map[[2]string]*cachedDef{
			revenue: {epoch: 1, filling: true, complete: true,
				units: map[string]cachedUnit{"a": row(1, 1), "b": row(2, 2), "c": row(3, 3)}, unknown: map[string]struct{}{"d": {}}},
			purchase: {epoch: 1, filling: true, complete: true, units: map[string]cachedUnit{"a": row(1, 1), "b": row(2, 2)}},
			other:    {epoch: 7, units: map[string]cachedUnit{"a": row(1, 1)}},
		}}
	}
	// The cycle recomputed a, b, d and n of experiment e: for revenue it
	// changed a, inserted n, found d's row unchanged (an unknown unit stays
	// unknown) and b's too, and removed c's (its exposure gone); purchase
	// did not report its rows.
	pairs := map[string][]string{"e": {"a", "b", "c", "d", "n"}}
	moved := []epochMove{{key: revenue, old: 1, new: 2}, {key: purchase, old: 1, new: 3}, {key: other, old: 1, new: 4}}
	changed := map[[2]string]*changedRows{revenue: {rows: []foldUnit{changedRow("a", 9, 10), changedRow("n", 10, 5)}, gone: []string{"c"}}}
	c := newCache()
	c.recomputed(pairs, moved, changed)

	r := c.defs[revenue]
	if r == nil || r.epoch != 2 || !r.complete {
		t.Fatalf("revenue's copy after the cycle: %+v, want it complete at epoch 2", r)
	}
	want := map[string]cachedUnit{"a": row(9, 10), "b": row(2, 2), "n": row(10, 5)}
	if !maps.Equal(r.units, want) {
		t.Errorf("revenue's copy holds %v, want %v", r.units, want)
	}
	if got := slices.Sorted(maps.Keys(r.unknown)); !slices.Equal(got, []string{"d"}) {
		t.Errorf("revenue's copy has unknown units %v, want [d]", got)
	}
	p := c.defs[purchase]
	if p == nil || p.epoch != 3 || len(p.units) != 0 {
		t.Fatalf("purchase's copy after the cycle: %+v, want it at epoch 3 without the recomputed units", p)
	}
	if got := slices.Sorted(maps.Keys(p.unknown)); !slices.Equal(got, pairs["e"]) {
		t.Errorf("purchase's copy has unknown units %v, want the recomputed ones %v", got, pairs["e"])
	}
	if _, ok := c.defs[other]; ok {
		t.Errorf("a copy at another epoch than the cycle moved was kept")
	}
}
