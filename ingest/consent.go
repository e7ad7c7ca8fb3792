package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/flywheel-oss/flywheel"
)

// ConsentSource is where opt-outs are read from.
type ConsentSource interface {
	OptedOut(ctx context.Context, since time.Time) (out, in []flywheel.UnitRef, until time.Time, err error)
}

// OptOuts keeps the set of opted-out units in memory so that assignment and
// ingestion check consent without a database query. Ids are in their stored
// (possibly pseudonymised) form. Opt-outs are expected to be a small share
// of units; each costs about a hundred bytes.
type OptOuts struct {
	src   ConsentSource
	mu    sync.RWMutex
	set   map[flywheel.UnitRef]struct{}
	since time.Time
}

// NewOptOuts returns an empty set; call Refresh to load it.
func NewOptOuts(src ConsentSource) *OptOuts {
	return &OptOuts{src: src, set: map[flywheel.UnitRef]struct{}{}}
}

// Has reports whether the unit has opted out.
func (o *OptOuts) Has(unitType, unitID string) bool {
	o.mu.RLock()
	_, ok := o.set[flywheel.UnitRef{UnitType: unitType, UnitID: unitID}]
	o.mu.RUnlock()
	return ok
}

// Set records a consent change made through this process at once.
func (o *OptOuts) Set(u flywheel.UnitRef, analytics bool) {
	o.mu.Lock()
	if analytics {
		delete(o.set, u)
	} else {
		o.set[u] = struct{}{}
	}
	o.mu.Unlock()
}

// Refresh applies the changes made since the last refresh (by any process).
func (o *OptOuts) Refresh(ctx context.Context) error {
	o.mu.RLock()
	since := o.since
	o.mu.RUnlock()
	out, in, until, err := o.src.OptedOut(ctx, since)
	if err != nil {
		return err
	}
	o.mu.Lock()
	for _, u := range out {
		o.set[u] = struct{}{}
	}
	for _, u := range in {
		delete(o.set, u)
	}
	o.since = until
	o.mu.Unlock()
	return nil
}
