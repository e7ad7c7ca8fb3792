package store

import (
	"context"
	"hash/maphash"
	"math/bits"
	"sync"

	"github.com/jackc/pgx/v5"
)

// The track owners step resolves each distinct unit of a cycle's track
// events to its identity root (resolveRoots), one index probe of aliases
// a unit: at 50,000 events/s, some 400,000 probes a cycle, most of them
// for customers that were never linked or merged. linkFilter says which
// ids may have an identity link, so that only those are probed.
//
// It holds every id that has a row in aliases (and some that do not: a
// Bloom filter's false positives, and ids whose link an erasure removed),
// so an id it does not hold has no link, and its root is itself for a
// customer, none for another type, as the probe would say. An id gains a
// link only by an ingestion that names it in the queue row it inserts in
// the same transaction (store/events.go). So each cycle that takes queue
// rows takes a number of agg_queue_cycle and records in agg_linked the
// ids of its queue rows that have a link now, and each process's filter
// adds the ids recorded since its last cycle, whichever process's cycles
// recorded them (they run one at a time, under the aggregation lock). A
// filter reads all of aliases when it is new, when its last cycle is
// older than the records kept (linkedKept cycles), or when it holds more
// ids than it was sized for.
type linkFilter struct {
	mu   sync.Mutex
	seed maphash.Seed
	bits bloom // nil: not built
	ids  int   // added since built
	cap  int   // ids it holds at a low false-positive rate
	last int64 // the agg_queue_cycle of the last cycle it was brought up to date in
	off  bool  // aliases had more ids than maxFilterIDs: every id is probed
}

// linkedKept is how many queue cycles' records agg_linked keeps.
const linkedKept = 1_000_000

const (
	// filterBitsPerID and filterHashes give about 0.1 % false positives
	// at the filter's capacity.
	filterBitsPerID = 16
	filterHashes    = 7
	// minFilterIDs is the least capacity a filter is built with, about
	// 128 KB.
	minFilterIDs = 1 << 16
	// maxFilterIDs is the most linked ids a filter is built for (a
	// filter of 64 MB, with room for as many again): beyond it the cycle
	// probes every id, as without one.
	maxFilterIDs = 10_000_000
)

func newLinkFilter() *linkFilter { return &linkFilter{seed: maphash.MakeSeed()} }

// hash is the id's two hashes, for double hashing.
func (f *linkFilter) hash(typ, id string) (h1, h2 uint64) { return idHash(f.seed, typ, id) }

// reset empties the filter, sized for twice n ids, in a power of two of
// bits (16 to 32 bits an id at its capacity).
func (f *linkFilter) reset(n int) {
	f.cap = max(minFilterIDs, 2*n)
	f.bits, f.ids = newBloom(f.cap), 0
}

func (f *linkFilter) add(typ, id string) {
	f.bits.add(f.hash(typ, id))
	f.ids++
}

// may says whether the id may have a link: false only for an id that
// has none, true for every other.
func (f *linkFilter) may(typ, id string) bool {
	if f.bits == nil || f.off {
		return true
	}
	return f.bits.has(f.hash(typ, id))
}

// idHash is a unit id's two hashes, for double hashing.
func idHash(seed maphash.Seed, typ, id string) (h1, h2 uint64) {
	h1 = maphash.String(seed, id) ^ bits.RotateLeft64(maphash.String(seed, typ), 17)
	return h1, h1>>33 | 1 // odd: every bit of a power-of-two filter can be reached
}

// bloom is a Bloom filter's bits, a power of two of them, set by
// filterHashes hashes (double hashing).
type bloom []uint64

// newBloom returns a filter of filterBitsPerID bits an id for n ids,
// rounded up to a power of two (16 to 32 bits an id).
func newBloom(n int) bloom {
	return make(bloom, 1<<bits.Len(uint(max(1, n*filterBitsPerID/64-1))))
}

func (b bloom) add(h1, h2 uint64) {
	mask := uint64(len(b)*64 - 1)
	for i := range uint64(filterHashes) {
		x := (h1 + i*h2) & mask
		b[x/64] |= 1 << (x % 64)
	}
}

// has says whether the key of hashes h1, h2 may have been added: false
// only for a key that was not.
func (b bloom) has(h1, h2 uint64) bool {
	mask := uint64(len(b)*64 - 1)
	for i := range uint64(filterHashes) {
		x := (h1 + i*h2) & mask
		if b[x/64]&(1<<(x%64)) == 0 {
			return false
		}
	}
	return true
}

// sync records which ids of a_dirty (the ids of the queue rows the cycle
// took, under queue cycle number cycle) have a link now (the first steps
// of their walk, a_walk), and brings the
// filter up to date with every id recorded since its last cycle, or with
// all of aliases. It holds f.mu until done.
func (f *linkFilter) sync(ctx context.Context, tx pgx.Tx, cycle int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	since, done := f.last, false
	f.last = 0 // until it is up to date
	defer func() {
		if !done { // built in part, or not at all: read all of aliases next time
			f.bits = nil
		}
	}()
	var linked [][2]string // this cycle's records
	rows, err := tx.Query(ctx, `INSERT INTO agg_linked (cycle, unit_type, unit_id)
		SELECT $1, unit_type, unit_id FROM a_walk WHERE depth = 1 RETURNING unit_type, unit_id`, cycle)
	if err != nil {
		return err
	}
	var typ, id string
	if _, err := pgx.ForEachRow(rows, []any{&typ, &id}, func() error {
		linked = append(linked, [2]string{typ, id})
		return nil
	}); err != nil {
		return err
	}
	if cycle%1024 == 0 { // now and then: the index on cycle finds the old ones
		if _, err := tx.Exec(ctx, `DELETE FROM agg_linked WHERE cycle <= $1`, cycle-linkedKept); err != nil {
			return err
		}
	}
	if f.off {
		f.last, done = cycle, true
		return nil
	}
	sql, args := `SELECT unit_type, unit_id FROM agg_linked WHERE cycle > $1 AND cycle < $2`, []any{since, cycle} // other processes' records
	switch {
	case f.bits == nil || since < cycle-linkedKept || f.ids > f.cap: // records it needs may be gone
		var n int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM aliases`).Scan(&n); err != nil {
			return err
		}
		if f.off = n > maxFilterIDs; f.off {
			f.last, done = cycle, true
			return nil
		}
		f.reset(int(n))
		sql, args = `SELECT unit_type, unit_id FROM aliases`, nil
	case since == cycle-1: // no other process's cycle since this one's last
		sql = ""
	}
	if sql != "" {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		if _, err := pgx.ForEachRow(rows, []any{&typ, &id}, func() error {
			f.add(typ, id)
			return nil
		}); err != nil {
			return err
		}
	}
	for _, l := range linked {
		f.add(l[0], l[1])
	}
	f.last, done = cycle, true
	return nil
}
