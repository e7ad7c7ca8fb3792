package sdk

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
)

// TestAssignDoesNotAllocateAfterFirstCall pins the target that
// BenchmarkAssign only shows: once a unit's exposure is logged, Assign for
// it allocates nothing, exposure logging on.
func TestAssignDoesNotAllocateAfterFirstCall(t *testing.T) {
	c := benchClient(t, benchServer(t, benchConfig))
	ctx := context.Background()
	u := Unit{CustomerID: benchUnit, Attributes: benchAttrs}
	if a := c.Assign(ctx, u, benchKey); !a.Enrolled {
		t.Fatalf("Assign = %+v, want enrolled", a)
	}
	if n := testing.AllocsPerRun(200, func() { sinkAssign = c.Assign(ctx, u, benchKey) }); n != 0 {
		t.Errorf("Assign after the first call: %v allocs, want 0", n)
	}
	if s := c.Stats(); s.Exposures != 1 {
		t.Errorf("%d exposures logged, want 1", s.Exposures)
	}
}

// TestFirstCallAndTrackAllocations pins the app-side cost of a unit's first
// assignment (its exposure recorded and queued) and of Track, delivery
// held back: no allocation but the queue's blocks (one per few hundred
// events), so at most 0.1 per call on average, whatever the number of
// attributes; at most 2 for a record larger than its estimate, which
// outgrows the caller's stack.
func TestFirstCallAndTrackAllocations(t *testing.T) {
	c := benchClient(t, benchServer(t, benchConfig), WithBufferSize(1<<16), WithFlushInterval(time.Hour), WithBatchSize(1<<16))
	ctx := context.Background()
	attrs := func(n, size int) map[string]any {
		m := map[string]any{"country": "FR", "stage": "prospect"}
		for k := range n {
			m[fmt.Sprintf("attribute-%02d", k)] = strings.Repeat("v", size)
		}
		return m
	}
	for _, tt := range []struct {
		name   string
		attrs  map[string]any
		max    float64
		pooled bool // not checked under the race detector, whose pools drop buffers
	}{
		{"the contract's four attributes", benchAttrs, 0.1, false},
		{"12 attributes, in a pooled buffer", attrs(10, 20), 0.1, true},
		{"102 attributes, over 16 KiB at 6 bytes a byte: the exact size", attrs(100, 20), 0.1, true},
		{"a few long attributes: larger than estimated", attrs(3, 100), 2, false},
	} {
		if tt.pooled && raceEnabled {
			continue
		}
		units := make([]Unit, 2000)
		for i := range units {
			units[i] = Unit{CustomerID: fmt.Sprintf("%s-%07d", tt.name, i), Attributes: tt.attrs}
		}
		before := c.Stats().Exposures
		i := 0
		if n := testing.AllocsPerRun(1000, func() { sinkAssign = c.Assign(ctx, units[i], benchKey); i++ }); n > tt.max {
			t.Errorf("%s: a unit's first Assign: %v allocs, want at most %v", tt.name, n, tt.max)
		}
		if got := c.Stats().Exposures - before; got != uint64(i) {
			t.Errorf("%s: %d exposures logged for %d first calls", tt.name, got, i)
		}
	}
	for _, tt := range []struct {
		name   string
		props  map[string]any
		pooled bool
	}{
		{"one property", map[string]any{"currency": "EUR"}, false},
		{"50 properties", attrs(48, 20), true},
	} {
		if tt.pooled && raceEnabled {
			continue
		}
		if n := testing.AllocsPerRun(1000, func() { _ = c.Track(ctx, Unit{CustomerID: "c"}, "purchase", 59.9, tt.props) }); n > 0.1 {
			t.Errorf("Track, %s: %v allocs, want at most 0.1", tt.name, n)
		}
	}
}

// TestAssignWithHoldoutsDoesNotAllocate: with two running holdouts (one
// on another unit type) covering the experiment, Assign allocates nothing
// once the unit's exposures are logged, for a unit held out and for one
// exposed to the program.
func TestAssignWithHoldoutsDoesNotAllocate(t *testing.T) {
	cfg := benchConfig
	cfg.Holdouts = []assign.Holdout{
		{Key: "prog", UnitType: "customer", Fraction: 0.1, Experiments: []string{benchKey}, Running: true},
		{Key: "devices", UnitType: "device", Fraction: 0.1, Experiments: []string{benchKey}, Running: true},
	}
	c := benchClient(t, benchServer(t, cfg))
	ctx := context.Background()
	var held, kept string
	for i := 0; held == "" || kept == ""; i++ {
		id := fmt.Sprintf("c-%d", i)
		if assign.Bucket("holdout:prog:"+id) < 1000 {
			held = cmp.Or(held, id)
		} else {
			kept = cmp.Or(kept, id)
		}
	}
	for _, id := range []string{held, kept} {
		u := Unit{CustomerID: id, DeviceID: "d-" + id, Attributes: benchAttrs}
		first := c.Assign(ctx, u, benchKey)
		if (first.Reason == ReasonHoldout) != (id == held) {
			t.Fatalf("Assign(%s) = %+v", id, first)
		}
		if n := testing.AllocsPerRun(200, func() { sinkAssign = c.Assign(ctx, u, benchKey) }); n != 0 {
			t.Errorf("Assign(%s) after the first call: %v allocs, want 0", id, n)
		}
	}
}
