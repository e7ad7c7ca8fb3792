package sdk

import (
	"fmt"
	"hash/maphash"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestSeenSetBounded(t *testing.T) {
	s := newSeenSet(100) // rounds up to 16 buckets of 8
	if s.capacity() != 128 {
		t.Fatalf("capacity = %d, want 128", s.capacity())
	}
	seed := maphash.MakeSeed()
	key := maphash.String(seed, "exp")
	for i := range 10000 {
		if !s.firstSeen(exposureHash(seed, key, strconv.Itoa(i), 0)) {
			t.Fatalf("unit %d seen before its first insert", i)
		}
	}
	if got := s.evictions.Load(); got != 10000-128 {
		t.Errorf("evictions = %d, want %d", got, 10000-128)
	}
	if len(s.buckets) != 16 {
		t.Errorf("buckets = %d, want 16: the set grew", len(s.buckets))
	}
	// The most recent insert of each bucket is still there.
	if s.firstSeen(exposureHash(seed, key, "9999", 0)) {
		t.Error("the last unit was forgotten at once")
	}
	// The variant is part of the key.
	if !s.firstSeen(exposureHash(seed, key, "9999", 1)) {
		t.Error("a new variant of a seen unit was not new")
	}
}

// TestSeenSetConcurrent: of many goroutines inserting the same hashes at
// once, exactly one sees each hash as new.
func TestSeenSetConcurrent(t *testing.T) {
	s := newSeenSet(1 << 12)
	const goroutines, keys = 16, 2000
	var mu sync.Mutex
	firsts := map[uint64]int{}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			mine := map[uint64]int{}
			for k := range keys {
				h := uint64(k)*0x9e3779b97f4a7c15 + 1
				if s.firstSeen(h) {
					mine[h]++
				}
			}
			mu.Lock()
			for h, n := range mine {
				firsts[h] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for h, n := range firsts {
		if n != 1 {
			t.Fatalf("hash %x seen as new %d times", h, n)
		}
	}
	if len(firsts) != keys || s.evictions.Load() != 0 {
		t.Errorf("%d hashes new, %d evictions; want %d and 0", len(firsts), s.evictions.Load(), keys)
	}
}

func TestQueueDropsOldest(t *testing.T) {
	q := newQueue(3)
	for i := range 5 {
		_, overflowed, ok := q.push([]byte(strconv.Itoa(i)))
		if !ok || overflowed != (i >= 3) {
			t.Fatalf("push %d: overflowed %v ok %v", i, overflowed, ok)
		}
	}
	mark := q.mark()
	got := q.take(10, 1<<20)
	if fmt.Sprintf("%s", got) != "[2 3 4]" {
		t.Fatalf("take = %s, want the newest [2 3 4]", got)
	}
	if done, _ := q.doneUpTo(mark); done {
		t.Fatal("done with events in flight")
	}
	q.resolve(3)
	if done, _ := q.doneUpTo(mark); !done {
		t.Fatal("not done after resolving the flight")
	}
	q.close()
	if _, _, ok := q.push([]byte("x")); ok {
		t.Fatal("push after close succeeded")
	}
}

func TestQueueGrowsAndTakesByBytes(t *testing.T) {
	q := newQueue(1000)
	for i := range 1000 {
		q.push([]byte(fmt.Sprintf("%04d", i)))
	}
	if len(q.buf) != 1000 {
		t.Fatalf("ring of %d, want it grown to the capacity 1000", len(q.buf))
	}
	// 4 bytes + a comma each: at most 3 events in 16 bytes.
	if got := q.take(100, 16); len(got) != 3 || string(got[0]) != "0000" {
		t.Fatalf("take(100, 16) = %s, want 3 events from 0000", got)
	}
	q.resolve(3)
	if got := q.take(100, 1); len(got) != 1 {
		t.Fatalf("take(100, 1) = %d events, want 1: an event larger than the limit still goes alone", len(got))
	}
	q.resolve(1)
	if n := q.dropWaiting(); n != 996 || q.pending() != 0 {
		t.Fatalf("dropWaiting = %d, pending %d; want 996 and 0", n, q.pending())
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{" 30 ", 30 * time.Second},
		{"-5", 0},
		{"86400", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"soon", 0},
	} {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt <= 40; attempt++ {
		b := min(time.Second<<min(attempt-1, 30), 30*time.Second)
		for range 50 {
			if got := backoff(time.Second, 30*time.Second, attempt); got < b/2 || got >= b {
				t.Fatalf("backoff(attempt %d) = %v, want in [%v, %v)", attempt, got, b/2, b)
			}
		}
	}
}

func TestJitter(t *testing.T) {
	for range 100 {
		if got := jitter(30 * time.Second); got < 30*time.Second || got >= 33*time.Second {
			t.Fatalf("jitter(30s) = %v, want in [30s, 33s)", got)
		}
	}
}
