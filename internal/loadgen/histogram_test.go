package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	// Every value lies in its bucket, buckets are contiguous and ordered,
	// and a bucket is at most 1/128 of its values wide.
	prevHigh := int64(-1)
	for i := 0; i < numBuckets; i++ {
		hi := int64(highest(i))
		lo := prevHigh + 1
		if hi < lo {
			t.Fatalf("bucket %d = [%d, %d], want non-empty after %d", i, lo, hi, prevHigh)
		}
		for _, v := range []int64{lo, hi} {
			if got := bucketOf(uint64(v)); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if lo >= 256 && float64(hi-lo+1)/float64(lo) > 1.0/128+1e-12 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/128 of its values", i, lo, hi)
		}
		prevHigh = hi
	}
	if got := time.Duration(prevHigh + 1); got != maxTracked {
		t.Errorf("last bucket ends at %v, want maxTracked %v", got, maxTracked)
	}
}

func TestQuantileAgainstSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var all []time.Duration
	for range 100000 {
		// Log-uniform from 1 µs to 1 s, like latencies.
		d := time.Duration(1000 * math.Pow(10, r.Float64()*6))
		h.Record(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := int(math.Ceil(q*float64(len(all)))) - 1
		want := all[max(rank, 0)]
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/128+1 {
			t.Errorf("Quantile(%v) = %v, want %v within 1/128 above", q, got, want)
		}
	}
	if h.Max() != all[len(all)-1] {
		t.Errorf("Max() = %v, want %v", h.Max(), all[len(all)-1])
	}
}

func TestMergeAndEdges(t *testing.T) {
	var a, b, empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Errorf("empty histogram: Quantile %v, Mean %v, want 0", empty.Quantile(0.5), empty.Mean())
	}
	a.Record(100)
	a.Record(-5) // counted as 0
	b.Record(300 * time.Hour)
	b.Record(5 * time.Hour) // above maxTracked: last bucket, Max exact
	a.Merge(&b)
	if a.Count() != 4 {
		t.Errorf("Count() = %d, want 4", a.Count())
	}
	if a.Max() != 300*time.Hour || a.Quantile(1) != 300*time.Hour {
		t.Errorf("Max() = %v, Quantile(1) = %v, want 300h", a.Max(), a.Quantile(1))
	}
	if got := a.Quantile(0.25); got != 0 {
		t.Errorf("Quantile(0.25) = %v, want 0", got)
	}
	if got := a.Quantile(0.5); got != 100 {
		t.Errorf("Quantile(0.5) = %v, want 100ns", got)
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i%5000) * time.Microsecond)
	}
}
