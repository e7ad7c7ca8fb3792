package sdk

import (
	"context"
	"fmt"
	"testing"
	"time"
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
// assignment (its exposure encoded and queued) and of Track: no allocation
// but the queue's blocks (one per few hundred events), so at most 1 per
// call on average, delivery held back.
func TestFirstCallAndTrackAllocations(t *testing.T) {
	c := benchClient(t, benchServer(t, benchConfig), WithBufferSize(1<<16), WithFlushInterval(time.Hour), WithBatchSize(1<<16))
	ctx := context.Background()
	units := make([]Unit, 2000)
	for i := range units {
		units[i] = Unit{CustomerID: fmt.Sprintf("customer-%07d", i), Attributes: benchAttrs}
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { sinkAssign = c.Assign(ctx, units[i], benchKey); i++ }); n > 0.1 {
		t.Errorf("a unit's first Assign: %v allocs, want at most 0.1 (the queue's blocks)", n)
	}
	if s := c.Stats(); s.Exposures != uint64(i) {
		t.Errorf("%d exposures logged for %d first calls", s.Exposures, i)
	}
	props := map[string]any{"currency": "EUR"}
	if n := testing.AllocsPerRun(1000, func() { _ = c.Track(ctx, units[0], "purchase", 59.9, props) }); n > 0.1 {
		t.Errorf("Track: %v allocs, want at most 0.1", n)
	}
}
