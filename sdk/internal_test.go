package sdk

import (
	"bytes"
	"encoding/binary"
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
	q := newQueue(3, byLen)
	for i := range 5 {
		_, overflowed, ok := q.push([]byte(strconv.Itoa(i)))
		if !ok || overflowed != (i >= 3) {
			t.Fatalf("push %d: overflowed %v ok %v", i, overflowed, ok)
		}
	}
	if pushed, overflowed, pending := q.counts(); pushed != 5 || overflowed != 2 || pending != 3 {
		t.Fatalf("counts = %d pushed, %d overflowed, %d pending; want 5, 2, 3", pushed, overflowed, pending)
	}
	mark := q.mark()
	got := q.take(nil, 10, 1<<20)
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
	q := newQueue(1000, byLen)
	for i := range 1000 {
		q.push([]byte(fmt.Sprintf("%04d", i)))
	}
	if len(q.buf) != 1000 {
		t.Fatalf("ring of %d, want it grown to the capacity 1000", len(q.buf))
	}
	// 4 bytes + a comma each: at most 3 events in 16 bytes.
	if got := q.take(nil, 100, 16); len(got) != 3 || string(got[0]) != "0000" {
		t.Fatalf("take(100, 16) = %s, want 3 events from 0000", got)
	}
	q.resolve(3)
	if got := q.take(nil, 100, 1); len(got) != 1 {
		t.Fatalf("take(100, 1) = %d events, want 1: an event larger than the limit still goes alone", len(got))
	}
	q.resolve(1)
	if n := q.dropWaiting(); n != 996 || q.pending() != 0 {
		t.Fatalf("dropWaiting = %d, pending %d; want 996 and 0", n, q.pending())
	}
}

// TestQueueProgress: a Flush waiting on the queue wakes whenever events
// leave it, dropped or resolved, and an overflowing buffer allocates
// nothing for waiters that do not exist.
func TestQueueProgress(t *testing.T) {
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	q := newQueue(2, byLen)
	q.push([]byte("a"))
	q.push([]byte("b"))
	if n := testing.AllocsPerRun(100, func() { q.push([]byte("c")) }); n != 0 {
		t.Errorf("push into a full buffer, nobody waiting: %v allocs, want 0", n)
	}
	mark := q.mark()
	done, progress := q.doneUpTo(mark)
	if done || closed(progress) {
		t.Fatalf("doneUpTo = %v, progress closed %v; want not done, open", done, closed(progress))
	}
	q.push([]byte("d")) // pushes out the oldest
	if !closed(progress) {
		t.Fatal("an event pushed out of the buffer did not wake the waiter")
	}
	_, progress = q.doneUpTo(mark)
	batch := q.take(nil, 10, 1<<20)
	q.doneReading()
	if closed(progress) {
		t.Fatal("progress before the batch was resolved")
	}
	q.resolve(len(batch))
	if !closed(progress) {
		t.Fatal("a resolved batch did not wake the waiter")
	}
	if done, _ := q.doneUpTo(mark); !done {
		t.Error("not done once every event before the mark left")
	}
}

// byLen measures a queued item by its length, for tests that queue plain
// bytes.
func byLen(b []byte) int { return len(b) }

// TestQueueReusesBlocks: records are copied into blocks that are reused
// once nothing can read them, so a steady flow and an overflowing buffer
// allocate a few blocks in all, and the records of a batch being read are
// never written over, even when every other record is gone.
func TestQueueReusesBlocks(t *testing.T) {
	const size = 1000 // 65 records a block
	rec := func(i int) []byte {
		b := bytes.Repeat([]byte{byte(i)}, size)
		binary.LittleEndian.PutUint64(b, uint64(i))
		return b
	}
	check := func(t *testing.T, what string, got [][]byte, first int) {
		t.Helper()
		for k, r := range got {
			if !bytes.Equal(r, rec(first+k)) {
				t.Fatalf("%s: record %d of %d holds %d..., want record %d", what, k, len(got), binary.LittleEndian.Uint64(r), first+k)
			}
		}
	}
	const records = 100_000 // 1,539 blocks' worth

	t.Run("a steady flow", func(t *testing.T) {
		q := newQueue(10_000, byLen)
		for i := range records {
			q.push(rec(i))
			if i%100 == 99 {
				batch := q.take(nil, 500, 1<<20)
				check(t, "batch", batch, i-99)
				q.doneReading()
				q.resolve(len(batch))
			}
		}
		if q.made > 3 {
			t.Errorf("%d blocks made for %d records taken 100 at a time, want at most 3", q.made, records)
		}
	})

	t.Run("an overflowing buffer", func(t *testing.T) {
		q := newQueue(200, byLen)
		for i := range records {
			q.push(rec(i))
		}
		check(t, "the newest 200", q.take(nil, 1000, 1<<30), records-200)
		if want := 200/(arenaSize/size) + 3; q.made > want {
			t.Errorf("%d blocks made for a buffer of 200 records, want at most %d", q.made, want)
		}
	})

	t.Run("after a burst", func(t *testing.T) {
		q := newQueue(records, byLen)
		for i := range records {
			q.push(rec(i))
		}
		for q.len() > 0 {
			q.resolve(len(q.take(nil, 10_000, 1<<30)))
			q.doneReading()
		}
		held := len(q.retired)
		for i := range 1000 {
			q.push(rec(i))
			if i%100 == 99 {
				q.take(nil, 500, 1<<20)
				q.doneReading()
				q.resolve(100)
			}
		}
		if len(q.retired) > 6 {
			t.Errorf("%d blocks held in a flow of 100 records at a time after a burst (%d held after it), want at most 6", len(q.retired), held)
		}
	})

	t.Run("a batch being read", func(t *testing.T) {
		q := newQueue(100, byLen)
		for i := range 300 {
			q.push(rec(i))
		}
		batch := q.take(nil, 100, 1<<30) // records 200 to 299, being read
		for i := 300; i < records; i++ {
			q.push(rec(i)) // the buffer overflows: every waiting record dies
		}
		check(t, "the batch read while the buffer overflowed", batch, 200)
		q.doneReading()
		q.resolve(len(batch))
		made := q.made
		for i := range records {
			q.push(rec(i))
		}
		if q.made > made+3 {
			t.Errorf("%d more blocks made after the batch was read, want its blocks reused", q.made-made)
		}
	})
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
