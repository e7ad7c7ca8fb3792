package ingest

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/flywheel-oss/flywheel"
)

// ConsentSource is where opt-outs are read from.
type ConsentSource interface {
	OptedOut(ctx context.Context, since time.Time) (flywheel.ConsentChanges, error)
}

// OptOuts keeps the set of opted-out units in memory so that assignment and
// ingestion check consent without a database query. Ids are in their stored
// (possibly pseudonymised) form. Opt-outs of erased units are kept as
// digests (flywheel.UnitRef.Digest), which hold no id. Opt-outs are expected
// to be a small share of units; each costs about a hundred bytes.
type OptOuts struct {
	src   ConsentSource
	mu    sync.RWMutex
	set   map[flywheel.UnitRef]struct{}
	tombs map[[32]byte]struct{}
	since time.Time
}

// NewOptOuts returns an empty set; call Refresh to load it.
func NewOptOuts(src ConsentSource) *OptOuts {
	return &OptOuts{src: src, set: map[flywheel.UnitRef]struct{}{}, tombs: map[[32]byte]struct{}{}}
}

// Has reports whether the unit has opted out, before or after an erasure.
// It hashes the id only when some erased unit had opted out.
func (o *OptOuts) Has(unitType, unitID string) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if _, ok := o.set[flywheel.UnitRef{UnitType: unitType, UnitID: unitID}]; ok {
		return true
	}
	if len(o.tombs) == 0 {
		return false
	}
	_, ok := o.tombs[digest(unitType, unitID)]
	return ok
}

// digest is flywheel.UnitRef.Digest without building the string on the
// heap (Has runs for every ingested event).
func digest(unitType, unitID string) [32]byte {
	var buf [32 + 1 + 256]byte
	b := append(buf[:0], unitType...)
	b = append(b, ':')
	b = append(b, unitID...)
	return sha256.Sum256(b)
}

// Set records a consent change made through this process at once.
func (o *OptOuts) Set(u flywheel.UnitRef, analytics bool) {
	o.mu.Lock()
	o.apply(u, analytics)
	o.mu.Unlock()
}

// apply records one change; o.mu is held. Opting in also ends a tombstone
// of the unit.
func (o *OptOuts) apply(u flywheel.UnitRef, analytics bool) {
	if !analytics {
		o.set[u] = struct{}{}
		return
	}
	delete(o.set, u)
	if len(o.tombs) > 0 {
		delete(o.tombs, u.Digest())
	}
}

// Refresh applies the changes made since the last refresh (by any process).
func (o *OptOuts) Refresh(ctx context.Context) error {
	o.mu.RLock()
	since := o.since
	o.mu.RUnlock()
	ch, err := o.src.OptedOut(ctx, since)
	if err != nil {
		return err
	}
	o.mu.Lock()
	for _, d := range ch.Tombstones {
		o.tombs[d] = struct{}{}
	}
	for _, u := range ch.Out {
		o.apply(u, false)
	}
	for _, u := range ch.In {
		o.apply(u, true)
	}
	o.since = ch.Until
	o.mu.Unlock()
	return nil
}
