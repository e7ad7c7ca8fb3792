package ingest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flywheel-oss/flywheel"
)

// Options tune the Ingester; zero values take the defaults.
type Options struct {
	// MaxQueuedEvents bounds the events waiting for a writer; past it a
	// request is refused with overloaded (503, Retry-After). Default 200,000.
	MaxQueuedEvents int
	// MaxGroupEvents bounds the events of one transaction. Default 20,000.
	MaxGroupEvents int
	// Writers is the number of transactions in flight at once. Default 2.
	Writers int
	// Registry receives the ingestion metrics; nil registers none.
	Registry prometheus.Registerer
}

// Ingester commits events in groups. Submit blocks until the events are
// committed (or have failed); nothing is acknowledged early.
type Ingester struct {
	w       flywheel.EventWriter
	opts    Options
	queue   chan *request
	queued  atomic.Int64
	mu      sync.RWMutex // guards closed against sends on a closed queue
	closed  bool
	wg      sync.WaitGroup
	metrics *metrics
}

type request struct {
	events []flywheel.Event
	done   chan outcome
}

type outcome struct {
	accepted []int // positions in request.events
	err      error
}

// New starts the writers.
func New(w flywheel.EventWriter, opts Options) *Ingester {
	if opts.MaxQueuedEvents <= 0 {
		opts.MaxQueuedEvents = 200_000
	}
	if opts.MaxGroupEvents <= 0 {
		opts.MaxGroupEvents = 20_000
	}
	if opts.Writers <= 0 {
		opts.Writers = 2
	}
	in := &Ingester{w: w, opts: opts, queue: make(chan *request, opts.MaxQueuedEvents), metrics: newMetrics(opts.Registry)}
	for range opts.Writers {
		in.wg.Add(1)
		go in.writer()
	}
	return in
}

// Count records n events of a type whose outcome was decided before the
// ingester saw them (rejected, dropped_opted_out), in the same metric.
func (in *Ingester) Count(eventType, outcome string, n int) { in.metrics.count(eventType, outcome, n) }

// ErrClosed is returned by Submit after Close.
var ErrClosed = &flywheel.Error{Code: flywheel.CodeUnavailable, Message: "the server is shutting down; retry"}

// Submit queues events for the next group and waits for its commit. The
// ingester reads events until the group is written, which may be after a
// cancelled Submit returns: callers must not modify the slice. It
// returns which events were new (positions in events); the rest were
// duplicates. An error means none of them is known to be stored: the
// client should retry the whole request (ids make that safe).
func (in *Ingester) Submit(ctx context.Context, events []flywheel.Event) ([]int, error) {
	if len(events) == 0 {
		return nil, nil
	}
	n := int64(len(events))
	if in.queued.Add(n) > int64(in.opts.MaxQueuedEvents) {
		in.queued.Add(-n)
		in.metrics.overloaded.Inc()
		return nil, flywheel.Errorf(flywheel.CodeOverloaded, "ingestion queue is full; retry later")
	}
	r := &request{events: events, done: make(chan outcome, 1)}
	in.mu.RLock()
	if in.closed {
		in.mu.RUnlock()
		in.queued.Add(-n)
		return nil, ErrClosed
	}
	in.queue <- r // never blocks: capacity is MaxQueuedEvents and every request holds ≥ 1
	in.mu.RUnlock()
	in.metrics.queued.Set(float64(in.queued.Load()))
	select {
	case o := <-r.done:
		return o.accepted, o.err
	case <-ctx.Done():
		// The group may still commit; a retry will then see duplicates.
		return nil, &flywheel.Error{Code: flywheel.CodeUnavailable, Message: "timed out waiting for the database; retry", Err: ctx.Err()}
	}
}

// Close stops taking events, commits every queued one, and waits for the
// writers (or ctx).
func (in *Ingester) Close(ctx context.Context) error {
	in.mu.Lock()
	if !in.closed {
		in.closed = true
		close(in.queue)
	}
	in.mu.Unlock()
	done := make(chan struct{})
	go func() { in.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer takes a request, adds every request already waiting (up to the
// group limit) and commits them together.
func (in *Ingester) writer() {
	defer in.wg.Done()
	var group []*request
	var events []flywheel.Event
	for r := range in.queue {
		group, events = append(group[:0], r), append(events[:0], r.events...)
	drain:
		for len(events) < in.opts.MaxGroupEvents {
			select {
			case r2, ok := <-in.queue:
				if !ok {
					break drain
				}
				group, events = append(group, r2), append(events, r2.events...)
			default:
				break drain
			}
		}
		in.commit(group, events)
		clear(group) // drop references to answered requests
	}
}

// commit writes one group and answers its requests. If the group fails for
// a reason other than the database being unavailable, each request is
// written alone, so one bad request cannot fail the others.
func (in *Ingester) commit(group []*request, events []flywheel.Event) {
	start := time.Now()
	accepted, err := in.write(events)
	in.metrics.commit.Observe(time.Since(start).Seconds())
	in.metrics.groupSize.Observe(float64(len(events)))
	// The group leaves the queue before any request is answered: a client
	// answered may send again at once, and must find the room it freed.
	in.queued.Add(-int64(len(events)))
	in.metrics.queued.Set(float64(in.queued.Load()))
	if err != nil && len(group) > 1 && !flywheel.Retryable(err) {
		for _, r := range group {
			acc, err := in.write(r.events)
			in.answer(r, acc, err)
		}
		return
	}
	if err != nil {
		for _, r := range group {
			in.answer(r, nil, err)
		}
		return
	}
	// accepted holds positions in events; split them by request.
	per := make([][]int, len(group))
	offsets := make([]int, len(group)+1)
	for i, r := range group {
		offsets[i+1] = offsets[i] + len(r.events)
	}
	j := 0
	for _, pos := range accepted { // sorted by write
		for pos >= offsets[j+1] {
			j++
		}
		per[j] = append(per[j], pos-offsets[j])
	}
	for i, r := range group {
		in.answer(r, per[i], nil)
	}
}

// write stores events, retrying twice when the database was unavailable
// or the transaction lost a deadlock race (safe: nothing was committed, and
// ids make a repeat exactly-once anyway).
func (in *Ingester) write(events []flywheel.Event) ([]int, error) {
	var err error
	for attempt, pause := 0, 50*time.Millisecond; attempt < 3; attempt, pause = attempt+1, pause*4 {
		if attempt > 0 {
			time.Sleep(pause)
		}
		var acc []int
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		acc, err = in.w.WriteEvents(ctx, events)
		cancel()
		if err == nil {
			slices.Sort(acc) // writers return positions in any order
			return acc, nil
		}
		if !flywheel.Retryable(err) {
			break
		}
	}
	return nil, err
}

func (in *Ingester) answer(r *request, accepted []int, err error) {
	if err == nil {
		for _, pos := range accepted {
			in.metrics.events.WithLabelValues(string(r.events[pos].Type), "accepted").Inc()
		}
		if d := len(r.events) - len(accepted); d > 0 {
			in.metrics.events.WithLabelValues("any", "duplicate").Add(float64(d))
		}
	}
	r.done <- outcome{accepted: accepted, err: err}
}
