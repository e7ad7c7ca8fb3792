package sdk

import (
	"math/bits"
	"sync/atomic"
)

// seenWays is the number of entries of one bucket: 8 × 8 bytes, one cache
// line.
const seenWays = 8

// seenSet is the bounded exposure cache: a fixed, set-associative table of
// 64-bit hashes of (experiment, unit, variant), allocated once. A hash picks
// a bucket of seenWays slots; a new hash takes a free slot, or evicts the
// slot its high bits choose when the bucket is full. Lookups and inserts are
// lock-free (atomic loads and one compare-and-swap) and never allocate.
//
// Two goroutines inserting the same hash at once cannot both see it as new:
// slots only ever change from empty to a hash or from one hash to another,
// and each insert is a compare-and-swap against the state it scanned, so the
// loser rescans and finds the winner's entry.
type seenSet struct {
	buckets   [][seenWays]atomic.Uint64
	mask      uint64
	evictions atomic.Uint64
}

// newSeenSet returns a set of at least n entries (a power of two, at least
// seenWays).
func newSeenSet(n int) *seenSet {
	nb := max((n+seenWays-1)/seenWays, 1)
	nb = 1 << bits.Len(uint(nb-1)) // next power of two
	return &seenSet{buckets: make([][seenWays]atomic.Uint64, nb), mask: uint64(nb - 1)}
}

// capacity returns the number of entries the set holds at most.
func (s *seenSet) capacity() int { return len(s.buckets) * seenWays }

// firstSeen records h and reports whether it was absent (true the first time
// a hash is seen, and again after its entry was evicted).
func (s *seenSet) firstSeen(h uint64) bool {
	if h == 0 {
		h = 1 // 0 marks a free slot
	}
	b := &s.buckets[h&s.mask]
	for {
		slot := -1
		for i := range b {
			v := b[i].Load()
			if v == h {
				return false
			}
			if v == 0 && slot < 0 {
				slot = i
			}
		}
		var old uint64
		if slot < 0 {
			slot = int(h >> 61) // the top bits, independent of the bucket's
			old = b[slot].Load()
			if old == h {
				return false
			}
		}
		if b[slot].CompareAndSwap(old, h) {
			if old != 0 {
				s.evictions.Add(1)
			}
			return true
		}
	}
}
