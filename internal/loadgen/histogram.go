package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram counts durations in log-linear buckets, like an HDR histogram
// with 8 significant bits: exact below 256 ns, then 128 buckets per power of
// two, so every recorded value is known to within 0.8%. Values of maxTracked
// or more land in the last bucket; Max keeps the exact largest. The zero
// value is ready to use. It is not safe for concurrent use: each worker
// records into its own and Merge adds them up afterwards.
type Histogram struct {
	counts [numBuckets]uint64
	total  uint64
	max    time.Duration
	sum    time.Duration
}

const (
	subBits    = 8                  // significant bits kept
	subCount   = 1 << (subBits - 1) // buckets per power of two (128)
	maxShift   = 36                 // values up to 2^44 ns (about 4.9 hours)
	numBuckets = (maxShift + 2) * subCount
	maxTracked = time.Duration(1) << (maxShift + subBits)
)

// bucketOf returns the bucket index of v >= 0.
func bucketOf(v uint64) int {
	l := bits.Len64(v)
	if l <= subBits {
		return int(v)
	}
	shift := l - subBits
	return shift*subCount + int(v>>shift)
}

// highest returns the largest value that falls in bucket i.
func highest(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	mant := uint64(i - shift*subCount)
	return (mant+1)<<shift - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if d > h.max {
		h.max = d
	}
	h.sum += d
	h.total++
	if d >= maxTracked {
		d = maxTracked - 1
	}
	h.counts[bucketOf(uint64(d))]++
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the average recorded value (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return h.sum / time.Duration(h.total)
}

// Quantile returns the value below or at which a fraction q of the recorded
// values lie, as the highest value of its bucket (never more than Max), the
// same convention as HdrHistogram. q is clamped to [0, 1]; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	// rank is the 1-based position of the wanted value in sorted order.
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == numBuckets-1 {
				return h.max // values past maxTracked were clamped into it
			}
			return min(time.Duration(highest(i)), h.max)
		}
	}
	return h.max
}
