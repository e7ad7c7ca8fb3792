package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
)

// fakeWriter is an in-memory flywheel.EventWriter. It keeps every id it has
// accepted (so a repeat is a duplicate, as in the store), records each call,
// and can be told to fail or to block.
type fakeWriter struct {
	mu     sync.Mutex
	calls  [][]flywheel.Event                         // a copy of the events of every call
	seen   map[[16]byte]bool                          // ids stored
	dupes  map[[16]byte]bool                          // ids to report as already stored
	fail   func(n int, events []flywheel.Event) error // n is the call number (0-based); nil = succeed
	stored []flywheel.Event

	// When gate is set, every call first reports on entered and then waits
	// for gate to be closed.
	entered chan struct{}
	gate    chan struct{}
}

var _ flywheel.EventWriter = (*fakeWriter)(nil)

func newFakeWriter() *fakeWriter {
	return &fakeWriter{seen: map[[16]byte]bool{}, dupes: map[[16]byte]bool{}}
}

// block makes every call wait until release is called; each call entering
// is reported on the returned channel.
func (f *fakeWriter) block() (entered <-chan struct{}, release func()) {
	f.entered = make(chan struct{}, 1024)
	f.gate = make(chan struct{})
	var once sync.Once
	return f.entered, func() { once.Do(func() { close(f.gate) }) }
}

func (f *fakeWriter) WriteEvents(ctx context.Context, events []flywheel.Event) ([]int, error) {
	if f.gate != nil {
		select {
		case f.entered <- struct{}{}:
		default: // nobody counts that many
		}
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, &flywheel.Error{Code: flywheel.CodeUnavailable, Message: "timeout", Err: ctx.Err()}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.calls)
	f.calls = append(f.calls, slices.Clone(events))
	if f.fail != nil {
		if err := f.fail(n, events); err != nil {
			return nil, err
		}
	}
	var accepted []int
	inGroup := map[[16]byte]bool{}
	for i, e := range events {
		if f.seen[e.ID] || f.dupes[e.ID] || inGroup[e.ID] {
			continue
		}
		inGroup[e.ID] = true
		accepted = append(accepted, i)
	}
	for _, i := range accepted {
		f.seen[events[i].ID] = true
		f.stored = append(f.stored, events[i])
	}
	slices.Reverse(accepted) // the contract does not promise an order
	return accepted, nil
}

func (f *fakeWriter) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeWriter) callSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []int
	for _, c := range f.calls {
		s = append(s, len(c))
	}
	return s
}

func newIngester(tb testing.TB, w flywheel.EventWriter, opts Options) *Ingester {
	tb.Helper()
	in := New(w, opts)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := in.Close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return in
}

// testEvents returns n track events with fresh ids for unit.
func testEvents(n int, unit string) []flywheel.Event {
	out := make([]flywheel.Event, n)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range out {
		out[i] = flywheel.Event{
			ID: uuid.Must(uuid.NewV7()), Type: flywheel.EventTrack, UnitType: "customer", UnitID: unit,
			Timestamp: now, ReceivedAt: now, Name: "purchase",
		}
	}
	return out
}

// waitFor polls cond until it holds; there is no event to wait on for
// "a request sits in the queue".
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type submitResult struct {
	accepted []int
	err      error
}

// submitAsync runs Submit in a goroutine; its result arrives on the channel.
func submitAsync(ctx context.Context, in *Ingester, events []flywheel.Event) <-chan submitResult {
	ch := make(chan submitResult, 1)
	go func() {
		acc, err := in.Submit(ctx, events)
		ch <- submitResult{acc, err}
	}()
	return ch
}

func receive(tb testing.TB, ch <-chan submitResult) submitResult {
	tb.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		tb.Fatal("Submit did not return within 10 s")
	}
	return submitResult{}
}

// TestGroupCommitAttribution: requests queued together are committed in
// one WriteEvents call, and each learns exactly which of its own events
// were new.
func TestGroupCommitAttribution(t *testing.T) {
	f := newFakeWriter()
	entered, release := f.block()
	in := newIngester(t, f, Options{Writers: 1})
	ctx := context.Background()

	// The first request occupies the writer; the rest queue behind it.
	first := submitAsync(ctx, in, testEvents(1, "first"))
	<-entered

	const requests = 40
	shared := testEvents(1, "shared")[0] // sent in two requests: one of them gets it
	batches := make([][]flywheel.Event, requests)
	wantNew := make([][]int, requests)
	for i := range batches {
		batches[i] = testEvents(1+i%7, fmt.Sprintf("u%d", i))
		for j := range batches[i] {
			if (i+j)%3 == 0 {
				f.dupes[batches[i][j].ID] = true // stored before
			} else {
				wantNew[i] = append(wantNew[i], j)
			}
		}
		// An id repeated inside one request: only the first is new.
		batches[i] = append(batches[i], batches[i][0])
	}
	batches[5] = append(batches[5], shared)
	batches[17] = append(batches[17], shared)

	// Each Submit runs in its own goroutine, all at once.
	results := make([]<-chan submitResult, requests)
	for i := range batches {
		results[i] = submitAsync(ctx, in, batches[i])
	}
	waitFor(t, "every request to be queued", func() bool { return len(in.queue) == requests })
	release()

	if r := receive(t, first); r.err != nil || !slices.Equal(r.accepted, []int{0}) {
		t.Fatalf("first Submit = %v, %v; want [0], nil", r.accepted, r.err)
	}
	sharedWinners := 0
	for i, ch := range results {
		r := receive(t, ch)
		if r.err != nil {
			t.Fatalf("Submit(batch %d): %v", i, r.err)
		}
		got := r.accepted
		if n := len(batches[i]) - 1; slices.Contains(got, n) && batches[i][n].ID == shared.ID {
			sharedWinners++
			got = got[:len(got)-1]
		}
		if !slices.Equal(got, wantNew[i]) {
			t.Errorf("Submit(batch %d) accepted %v, want %v", i, got, wantNew[i])
		}
		if !slices.IsSorted(r.accepted) {
			t.Errorf("Submit(batch %d) accepted %v, not in order", i, r.accepted)
		}
	}
	if sharedWinners != 1 {
		t.Errorf("an id sent in two requests was accepted %d times, want 1", sharedWinners)
	}
	total := 0
	for _, b := range batches {
		total += len(b)
	}
	if got, want := f.callSizes(), []int{1, total}; !slices.Equal(got, want) {
		t.Errorf("WriteEvents calls of sizes %v, want %v (one group for the queued requests)", got, want)
	}
	if q := in.queued.Load(); q != 0 {
		t.Errorf("queued = %d after every answer, want 0", q)
	}
}

// TestGroupCommitManyConcurrent: many goroutines submit at once without
// coordination; every event is accepted exactly once and attributed to the
// request that sent it.
func TestGroupCommitManyConcurrent(t *testing.T) {
	f := newFakeWriter()
	in := newIngester(t, f, Options{Writers: 3, MaxGroupEvents: 50})
	ctx := context.Background()
	const clients, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				batch := testEvents(1+(c+r)%9, fmt.Sprintf("c%d", c))
				acc, err := in.Submit(ctx, batch)
				if err != nil {
					errs <- err
					return
				}
				if want := seq(len(batch)); !slices.Equal(acc, want) {
					errs <- fmt.Errorf("client %d round %d: accepted %v, want %v", c, r, acc, want)
					return
				}
				// A retry of the same batch is all duplicates.
				if acc, err := in.Submit(ctx, batch); err != nil || len(acc) != 0 {
					errs <- fmt.Errorf("client %d round %d: retry accepted %v, %v; want none", c, r, acc, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, size := range f.callSizes() {
		if size > 50+8 { // a group stops growing once it reaches the limit
			t.Errorf("a group of %d events, want at most MaxGroupEvents plus one request", size)
		}
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// TestPoisonRequestFailsAlone: a group failing with a non-retryable error
// is written again request by request, so only the bad request fails.
func TestPoisonRequestFailsAlone(t *testing.T) {
	f := newFakeWriter()
	poisonErr := errors.New("value overflows numeric format")
	f.fail = func(_ int, events []flywheel.Event) error {
		for _, e := range events {
			if e.UnitID == "poison" {
				return poisonErr
			}
		}
		return nil
	}
	entered, release := f.block()
	in := newIngester(t, f, Options{Writers: 1})
	ctx := context.Background()

	first := submitAsync(ctx, in, testEvents(1, "first"))
	<-entered
	batches := [][]flywheel.Event{testEvents(3, "a"), testEvents(2, "poison"), testEvents(4, "b"), testEvents(1, "c")}
	var results []<-chan submitResult
	for i, b := range batches {
		results = append(results, submitAsync(ctx, in, b))
		waitFor(t, "the request to be queued", func() bool { return len(in.queue) == i+1 })
	}
	release()
	if r := receive(t, first); r.err != nil {
		t.Fatalf("first Submit: %v", r.err)
	}
	for i, ch := range results {
		r := receive(t, ch)
		if i == 1 {
			if !errors.Is(r.err, poisonErr) || flywheel.Retryable(r.err) {
				t.Errorf("poison Submit = %v, %v; want the writer's non-retryable error", r.accepted, r.err)
			}
			continue
		}
		if r.err != nil || !slices.Equal(r.accepted, seq(len(batches[i]))) {
			t.Errorf("Submit(batch %d) = %v, %v; want all accepted", i, r.accepted, r.err)
		}
	}
	// The group once, then each request alone; no retries of a
	// non-retryable error.
	if got, want := f.callSizes(), []int{1, 10, 3, 2, 4, 1}; !slices.Equal(got, want) {
		t.Errorf("WriteEvents calls of sizes %v, want %v", got, want)
	}
}

// TestRetryableErrorFailsGroup: when the database stays unavailable, every
// request of the group fails with a retryable error after the ingester's
// own retries, and nothing is split or half-answered.
func TestRetryableErrorFailsGroup(t *testing.T) {
	f := newFakeWriter()
	down := &flywheel.Error{Code: flywheel.CodeUnavailable, Message: "the database is unavailable; retry later"}
	f.fail = func(n int, _ []flywheel.Event) error {
		if n == 0 {
			return nil // the request that holds the writer
		}
		return down
	}
	entered, release := f.block()
	in := newIngester(t, f, Options{Writers: 1})
	ctx := context.Background()

	first := submitAsync(ctx, in, testEvents(1, "first"))
	<-entered
	var results []<-chan submitResult
	for i := range 3 {
		results = append(results, submitAsync(ctx, in, testEvents(2+i, "u")))
		waitFor(t, "the request to be queued", func() bool { return len(in.queue) == i+1 })
	}
	release()
	receive(t, first)
	for i, ch := range results {
		r := receive(t, ch)
		if !flywheel.Retryable(r.err) || r.accepted != nil {
			t.Errorf("Submit(batch %d) = %v, %v; want a retryable error", i, r.accepted, r.err)
		}
	}
	// The group is tried three times in all (two retries), never split.
	if got, want := f.callSizes(), []int{1, 9, 9, 9}; !slices.Equal(got, want) {
		t.Errorf("WriteEvents calls of sizes %v, want %v", got, want)
	}
}

// TestTransientErrorRetried: a database that comes back within the
// ingester's retries loses nothing and fails nothing.
func TestTransientErrorRetried(t *testing.T) {
	f := newFakeWriter()
	f.fail = func(n int, _ []flywheel.Event) error {
		if n < 2 {
			return &flywheel.Error{Code: flywheel.CodeUnavailable, Message: "down"}
		}
		return nil
	}
	in := newIngester(t, f, Options{Writers: 1})
	batch := testEvents(5, "u")
	acc, err := in.Submit(context.Background(), batch)
	if err != nil || !slices.Equal(acc, seq(5)) {
		t.Fatalf("Submit = %v, %v; want all accepted after two retries", acc, err)
	}
	if n := f.callCount(); n != 3 {
		t.Errorf("WriteEvents called %d times, want 3", n)
	}
}

// TestOverloaded: with the writer stuck and the queue full, Submit refuses
// at once with overloaded (retryable) instead of queueing without bound.
func TestOverloaded(t *testing.T) {
	f := newFakeWriter()
	entered, release := f.block()
	defer release()
	in := newIngester(t, f, Options{Writers: 1, MaxQueuedEvents: 10})
	ctx := context.Background()

	held := submitAsync(ctx, in, testEvents(6, "held")) // taken by the writer
	<-entered
	queued := submitAsync(ctx, in, testEvents(4, "queued")) // waits in the queue
	waitFor(t, "the request to be queued", func() bool { return len(in.queue) == 1 })

	for _, n := range []int{1, 3, 11} {
		r := receive(t, submitAsync(ctx, in, testEvents(n, "late")))
		if flywheel.ErrorCode(r.err) != flywheel.CodeOverloaded || !flywheel.Retryable(r.err) {
			t.Errorf("Submit(%d events) with a full queue = %v, %v; want overloaded", n, r.accepted, r.err)
		}
	}
	if got := len(in.queue); got != 1 {
		t.Errorf("queue holds %d requests after refusals, want 1", got)
	}
	if got := in.queued.Load(); got != 10 {
		t.Errorf("queued = %d, want 10", got)
	}

	release()
	for _, ch := range []<-chan submitResult{held, queued} {
		if r := receive(t, ch); r.err != nil {
			t.Errorf("Submit: %v", r.err)
		}
	}
	// Room again once the writer has caught up.
	if _, err := in.Submit(ctx, testEvents(10, "after")); err != nil {
		t.Errorf("Submit after the queue drained: %v", err)
	}
}

// TestCloseFlushes: Close returns only after every queued request is
// committed and answered; Submit after Close is a retryable error.
func TestCloseFlushes(t *testing.T) {
	f := newFakeWriter()
	entered, release := f.block()
	in := New(f, Options{Writers: 1})
	ctx := context.Background()

	held := submitAsync(ctx, in, testEvents(2, "held"))
	<-entered
	var results []<-chan submitResult
	for i := range 5 {
		results = append(results, submitAsync(ctx, in, testEvents(3, "q")))
		waitFor(t, "the request to be queued", func() bool { return len(in.queue) == i+1 })
	}

	closed := make(chan error, 1)
	go func() { closed <- in.Close(ctx) }()
	waitFor(t, "Close to stop intake", func() bool {
		in.mu.RLock()
		defer in.mu.RUnlock()
		return in.closed
	})
	if _, err := in.Submit(ctx, testEvents(1, "late")); !errors.Is(err, ErrClosed) || !flywheel.Retryable(err) {
		t.Errorf("Submit after Close = %v, want ErrClosed (retryable)", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the queued events were committed", err)
	default:
	}

	release()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	// Every request was answered before Close returned.
	for i, ch := range append([]<-chan submitResult{held}, results...) {
		select {
		case r := <-ch:
			if r.err != nil || len(r.accepted) == 0 {
				t.Errorf("request %d = %v, %v; want accepted", i, r.accepted, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("request %d not answered", i)
		}
	}
	f.mu.Lock()
	stored := len(f.stored)
	f.mu.Unlock()
	if stored != 2+5*3 {
		t.Errorf("stored %d events, want %d", stored, 2+5*3)
	}
	if err := in.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseTimeout: Close gives up when its context ends while a commit
// is stuck.
func TestCloseTimeout(t *testing.T) {
	f := newFakeWriter()
	entered, release := f.block()
	in := New(f, Options{Writers: 1})
	held := submitAsync(context.Background(), in, testEvents(1, "held"))
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := in.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close(cancelled) = %v, want context.Canceled", err)
	}
	release()
	receive(t, held)
	if err := in.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestSubmitContextCancelled: Submit returns when its context ends, with a
// retryable error; the events may still commit, and a retry then sees them
// as duplicates.
func TestSubmitContextCancelled(t *testing.T) {
	f := newFakeWriter()
	entered, release := f.block()
	in := newIngester(t, f, Options{Writers: 1})
	batch := testEvents(3, "u")

	ctx, cancel := context.WithCancel(context.Background())
	ch := submitAsync(ctx, in, batch)
	<-entered
	cancel()
	r := receive(t, ch)
	if !errors.Is(r.err, context.Canceled) || !flywheel.Retryable(r.err) {
		t.Fatalf("Submit with a cancelled context = %v, %v; want a retryable error wrapping context.Canceled", r.accepted, r.err)
	}
	release()
	acc, err := in.Submit(context.Background(), batch)
	if err != nil || len(acc) != 0 {
		t.Errorf("retry = %v, %v; want every event a duplicate", acc, err)
	}
	if got := f.callSizes(); !slices.Equal(got, []int{3, 3}) {
		t.Errorf("WriteEvents calls of sizes %v, want [3 3]", got)
	}
}

// TestSubmitEmpty: nothing to write is not a call to the writer.
func TestSubmitEmpty(t *testing.T) {
	f := newFakeWriter()
	in := newIngester(t, f, Options{})
	if acc, err := in.Submit(context.Background(), nil); acc != nil || err != nil {
		t.Errorf("Submit(nil) = %v, %v; want nil, nil", acc, err)
	}
	if n := f.callCount(); n != 0 {
		t.Errorf("WriteEvents called %d times, want 0", n)
	}
}
