package sdk

import (
	"context"
	"testing"
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
