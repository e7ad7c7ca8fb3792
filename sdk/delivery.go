package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// delivery is the one goroutine that sends queued events: a batch when
// batchSize events wait, everything every flush interval or on Flush and
// Close. It retries a failed batch with backoff and holds it meanwhile (the
// buffer keeps filling, dropping its oldest events when full), so the app
// never waits for it.
type delivery struct {
	c       *Client
	q       *queue
	kickCh  chan struct{} // a batch is full
	flushCh chan struct{} // Flush wants everything sent
	closing chan struct{} // closed by Close: send everything, then stop
	ctx     context.Context
	cancel  context.CancelFunc // aborts requests and waits: Close gave up
	done    chan struct{}      // closed when run returns
	b       batches
}

func newDelivery(c *Client) *delivery {
	ctx, cancel := context.WithCancel(context.Background())
	return &delivery{
		c: c, q: c.queue,
		kickCh: make(chan struct{}, 1), flushCh: make(chan struct{}, 1), closing: make(chan struct{}),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// kick wakes the loop to send a full batch; it never blocks.
func (d *delivery) kick() {
	select {
	case d.kickCh <- struct{}{}:
	default:
	}
}

func (d *delivery) run() {
	defer close(d.done)
	interval := d.c.opts.flushInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	closing := d.closing
	for {
		force := false
		select {
		case <-d.kickCh:
		case <-d.flushCh:
			force = true
		case <-timer.C:
			force = true
		case <-closing:
			force, closing = true, nil
		case <-d.ctx.Done():
		}
		if d.ctx.Err() == nil {
			d.drain(force)
		}
		if d.ctx.Err() != nil {
			d.abandon()
			return
		}
		if closing == nil {
			return // the queue is closed and drained
		}
		timer.Reset(interval)
	}
}

// drain sends full batches, or everything waiting when force is set.
func (d *delivery) drain(force bool) {
	for d.ctx.Err() == nil {
		n := d.q.len()
		if n == 0 || (!force && n < d.c.opts.batchSize) {
			return
		}
		d.b.recs = d.q.take(d.b.recs[:0], d.c.opts.batchSize, maxBatchBytes)
		batch := d.b.encode(d.b.recs)
		clear(d.b.recs) // they point into the queue's blocks
		d.q.doneReading()
		d.deliver(batch)
	}
}

// abandon drops the batch in flight and every waiting event: Close gave
// up.
func (d *delivery) abandon() {
	d.q.close()
	n := d.q.pending()
	d.q.resolve(n)
	d.q.dropWaiting()
	if n > 0 {
		d.c.stats.dropped.Add(uint64(n))
		d.c.log.Warn("flywheel: events dropped: close gave up before they were delivered", "events", n)
	}
}

// deliver sends one batch until the server has taken or refused it, or the
// client gives up. A batch the server finds too large (413) is split in
// halves.
func (d *delivery) deliver(batch [][]byte) {
	parts := [][][]byte{batch}
	for len(parts) > 0 && d.ctx.Err() == nil {
		part := parts[0]
		parts = parts[1:]
		for attempt := 1; ; attempt++ {
			res, err := d.post(part)
			if err == nil {
				d.account(part, res, attempt)
				break
			}
			var se *ServerError
			isServer := errors.As(err, &se)
			if isServer && se.Status == http.StatusRequestEntityTooLarge && len(part) > 1 {
				h := len(part) / 2
				parts = append([][][]byte{part[:h], part[h:]}, parts...)
				break
			}
			if isServer && !se.Retryable() {
				d.c.stats.dropped.Add(uint64(len(part)))
				d.q.resolve(len(part))
				d.c.log.Error("flywheel: events dropped: the server refused the request", "events", len(part), "status", se.Status, "code", se.Code, "message", se.Message)
				break
			}
			wait := backoff(d.c.opts.backoffMin, d.c.opts.backoffMax, attempt)
			if isServer {
				wait = max(wait, se.RetryAfter)
			}
			if attempt == 1 {
				d.c.log.Warn("flywheel: sending events failed; retrying", "events", len(part), "err", err, "wait", wait.String())
			} else {
				d.c.log.Debug("flywheel: sending events failed again", "events", len(part), "attempt", attempt, "err", err, "wait", wait.String())
			}
			t := time.NewTimer(wait)
			select {
			case <-d.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			d.c.stats.retried.Add(uint64(len(part)))
		}
	}
}

// eventsAnswer is the 200 answer of POST /v1/events.
type eventsAnswer struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Dropped    int `json:"dropped"`
	Rejected   []struct {
		Index int `json:"index"`
		Error struct {
			Code    string `json:"code"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"rejected"`
}

// post sends one request. A non-2xx answer is a *ServerError; a transport
// failure is any other error (retryable).
func (d *delivery) post(part [][]byte) (*eventsAnswer, error) {
	// The body points into the events' JSON instead of copying it; see
	// batches for when that is written again.
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, d.c.url+"/v1/events", d.b.body(part))
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(bodySize(part))
	req.GetBody = func() (io.ReadCloser, error) { return d.b.body(part), nil }
	d.c.setHeaders(req)
	req.Header.Set("Content-Type", "application/json")
	res, err := d.c.opts.httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer drain(res)
	if res.StatusCode/100 != 2 {
		return nil, serverError(res)
	}
	var ans eventsAnswer
	raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		// The server committed the batch before answering; a retry would
		// only find duplicates, so count it as sent.
		d.c.log.Warn("flywheel: reading the events answer failed; counting the batch as sent", "err", err)
		return &ans, nil
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		d.c.log.Warn("flywheel: the events answer is not JSON; counting the batch as sent", "err", err)
	}
	return &ans, nil
}

// account records a 200 answer for part.
func (d *delivery) account(part [][]byte, ans *eventsAnswer, attempt int) {
	rejected := 0
	seen := make(map[int]bool, len(ans.Rejected))
	for _, r := range ans.Rejected {
		if r.Index >= 0 && r.Index < len(part) && !seen[r.Index] {
			seen[r.Index] = true
			rejected++
		}
	}
	st := &d.c.stats
	st.sent.Add(uint64(len(part) - rejected))
	st.rejected.Add(uint64(rejected))
	st.duplicates.Add(uint64(max(ans.Duplicates, 0)))
	st.serverDropped.Add(uint64(max(ans.Dropped, 0)))
	d.q.resolve(len(part))
	d.c.overflowing.Store(false) // the next overflow is a new episode, logged again
	if attempt > 1 {
		d.c.log.Info("flywheel: events delivered after retrying", "events", len(part), "attempts", attempt)
	}
	if rejected > 0 {
		first := ans.Rejected[0]
		d.c.log.Error("flywheel: the server rejected events; they will not be retried",
			"events", len(part), "rejected", rejected,
			"first_index", first.Index, "code", first.Error.Code, "field", first.Error.Field, "message", first.Error.Message)
	}
}

// backoff returns the wait before the attempt-th retry: drawn from [b/2,
// b) with b = min(maxWait, minWait·2^(attempt-1)).
func backoff(minWait, maxWait time.Duration, attempt int) time.Duration {
	b := minWait
	for i := 1; i < attempt && b < maxWait; i++ {
		b *= 2
	}
	b = min(b, maxWait)
	if b < 2 {
		return b
	}
	return b/2 + rand.N(b/2)
}

// flush waits until every event recorded before the call has left the
// queue.
func (d *delivery) flush(ctx context.Context) error {
	target := d.q.mark()
	select {
	case d.flushCh <- struct{}{}:
	default:
	}
	for {
		done, progress := d.q.doneUpTo(target)
		if done {
			return nil
		}
		select {
		case <-progress:
		case <-d.done:
			if done, _ := d.q.doneUpTo(target); done {
				return nil
			}
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("sdk: flush: %w", ctx.Err())
		}
	}
}

// close closes the queue, lets the loop send everything and waits for it,
// or for ctx; then it aborts whatever is left.
func (d *delivery) close(ctx context.Context) error {
	d.q.close()
	close(d.closing)
	select {
	case <-d.done:
		d.cancel()
		return nil
	case <-ctx.Done():
	}
	d.cancel()
	<-d.done
	return fmt.Errorf("sdk: close: events left undelivered: %w", ctx.Err())
}
