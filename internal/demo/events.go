package demo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// event is one event of POST /v1/events, as the contract spells it.
type event struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Experiment string         `json:"experiment,omitempty"`
	Variant    string         `json:"variant,omitempty"`
	Event      string         `json:"event,omitempty"`
	Value      *float64       `json:"value,omitempty"`
	UnitType   string         `json:"unit_type"`
	UnitID     string         `json:"unit_id"`
	CustomerID string         `json:"customer_id,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// eventID is the id of the demo event called name (unique within the
// demo) at ts: a UUID in version 7's layout, its 48-bit millisecond time
// ts and its other bits from SHA-256 of the name. The same event gets the
// same id in every run, so the server stores it once however often the
// demo runs (every run computes the same ts: see anchor in seed.go).
func eventID(ts time.Time, name string) string {
	h := sha256.Sum256([]byte("flywheel-demo:" + name))
	var u uuid.UUID
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(ts.UnixMilli()))
	copy(u[:6], ms[2:])
	copy(u[6:], h[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}

// exposure, track and identify build the demo's events; name makes the id.
func exposure(name, exp, variant, unitType, unitID string, ts time.Time, attrs map[string]any) event {
	return event{ID: eventID(ts, name), Type: "exposure", Experiment: exp, Variant: variant,
		UnitType: unitType, UnitID: unitID, Timestamp: ts, Attributes: attrs}
}

func track(name, ev string, value *float64, unitType, unitID string, ts time.Time) event {
	return event{ID: eventID(ts, name), Type: "track", Event: ev, Value: value, UnitType: unitType, UnitID: unitID, Timestamp: ts}
}

func identify(name, unitType, unitID, customerID string, ts time.Time) event {
	return event{ID: eventID(ts, name), Type: "identify", UnitType: unitType, UnitID: unitID, CustomerID: customerID, Timestamp: ts}
}

// ptr returns a pointer to v.
func ptr(v float64) *float64 { return &v }

// Sending. A batch is far below the API's limits (10,000 events, 5 MiB);
// a few batches in flight keep the server's group commit busy while the
// demo encodes the next.
const (
	batchEvents   = 5000
	sendWorkers   = 3
	maxAttempts   = 8
	maxRetryPause = 5 * time.Second
)

// sendTotals counts what the server answered.
type sendTotals struct {
	Sent       int // events sent and answered
	Accepted   int // stored now
	Duplicates int // stored already (an earlier run, or a retry)
	Dropped    int // units that opted out
}

// eventsAnswer is the answer of POST /v1/events.
type eventsAnswer struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Dropped    int `json:"dropped"`
	Rejected   []struct {
		Index int `json:"index"`
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	} `json:"rejected"`
}

// send posts events in batches, a few at a time, retrying what the server
// could not take yet (the ids make a retry safe), and calls progress with
// the events answered so far after each batch. A rejected event is an
// error: the demo sends only events the contract accepts.
func (c *client) send(ctx context.Context, events []event, progress func(done int)) (sendTotals, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []event)
	var (
		mu       sync.Mutex
		totals   sendTotals
		firstErr error
		done     atomic.Int64
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	for range sendWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				ans, err := c.postEvents(ctx, b)
				if err != nil {
					fail(err)
					continue
				}
				if len(ans.Rejected) > 0 {
					r := ans.Rejected[0]
					e := b[r.Index]
					fail(fmt.Errorf("the server rejected %d of the demo's events; the first: a %s event of %s %q: %s: %s",
						len(ans.Rejected), e.Type, e.UnitType, e.UnitID, r.Error.Field, r.Error.Message))
					continue
				}
				mu.Lock()
				totals.Sent += len(b)
				totals.Accepted += ans.Accepted
				totals.Duplicates += ans.Duplicates
				totals.Dropped += ans.Dropped
				mu.Unlock()
				if progress != nil {
					progress(int(done.Add(int64(len(b)))))
				}
			}
		}()
	}
feed:
	for start := 0; start < len(events); start += batchEvents {
		select {
		case batches <- events[start:min(start+batchEvents, len(events))]:
		case <-ctx.Done():
			break feed
		}
	}
	close(batches)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return totals, firstErr
}

// postEvents sends one batch, retrying while the server answers that it is
// overloaded or its database unavailable, and a few times when it cannot
// be reached.
func (c *client) postEvents(ctx context.Context, batch []event) (eventsAnswer, error) {
	var ans eventsAnswer
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := c.do(ctx, http.MethodPost, "/v1/events", map[string]any{"events": batch}, &ans)
		if err == nil {
			return ans, nil
		}
		var ae *apiError
		var ue *unreachableError
		retry := errors.As(err, &ae) && ae.retryable() || errors.As(err, &ue)
		if !retry || attempt == maxAttempts {
			return ans, err
		}
		wait := pause
		if ae != nil && ae.RetryAfter > 0 {
			wait = min(ae.RetryAfter, maxRetryPause)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ans, ctx.Err()
		}
		pause = min(2*pause, maxRetryPause)
	}
}
