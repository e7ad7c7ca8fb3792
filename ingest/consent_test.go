package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
)

// fakeConsent serves one batch of changes per Refresh.
type fakeConsent struct{ batches []flywheel.ConsentChanges }

var _ ConsentSource = (*fakeConsent)(nil)

func (f *fakeConsent) OptedOut(_ context.Context, since time.Time) (flywheel.ConsentChanges, error) {
	if len(f.batches) == 0 {
		return flywheel.ConsentChanges{Until: since}, nil
	}
	b := f.batches[0]
	f.batches = f.batches[1:]
	return b, nil
}

func TestOptOutsTombstones(t *testing.T) {
	c := func(id string) flywheel.UnitRef { return flywheel.UnitRef{UnitType: "customer", UnitID: id} }
	src := &fakeConsent{batches: []flywheel.ConsentChanges{
		{Out: []flywheel.UnitRef{c("live")}, Tombstones: [][32]byte{c("erased").Digest()}},
		{In: []flywheel.UnitRef{c("erased")}}, // the erased unit came back and consented
	}}
	o := NewOptOuts(src)
	if err := o.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		unitType, id string
		want         bool
	}{
		{"customer", "live", true},
		{"customer", "erased", true},
		{"device", "erased", false}, // the unit type is part of the digest
		{"customer", "someone", false},
	} {
		if got := o.Has(tt.unitType, tt.id); got != tt.want {
			t.Errorf("Has(%s, %s) = %v, want %v", tt.unitType, tt.id, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { o.Has("customer", "someone-else") }); n != 0 {
		t.Errorf("Has with tombstones allocates %v times, want 0 (it runs per ingested event)", n)
	}
	if err := o.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o.Has("customer", "erased") {
		t.Error("an erased unit that opted back in is still opted out")
	}
	// A consent given through this process ends the tombstone at once.
	o.tombs[c("again").Digest()] = struct{}{}
	o.Set(c("again"), true)
	if o.Has("customer", "again") {
		t.Error("Set(analytics true) left the tombstone")
	}
}
