package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/sdk"
)

// newTestClient starts a client of f with fast timers.
func newTestClient(t testing.TB, url string, opts ...sdk.Option) *sdk.Client {
	t.Helper()
	base := []sdk.Option{
		sdk.WithFlushInterval(5 * time.Millisecond),
		sdk.WithRetryBackoff(time.Millisecond, 5*time.Millisecond),
		sdk.WithPollInterval(0),
	}
	c, err := sdk.New(context.Background(), sdk.Config{URL: url, Key: "sdk-key"}, append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func closeClient(t testing.TB, c *sdk.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// checkBalance checks that every event recorded is accounted for once.
func checkBalance(t testing.TB, s sdk.Stats) {
	t.Helper()
	if s.Queued != s.Sent+s.Rejected+s.Dropped+uint64(s.Pending) {
		t.Errorf("stats %+v: Queued != Sent + Rejected + Dropped + Pending", s)
	}
}

// refusingTransport fails every dial with "connection refused" while down
// is set, and counts those failures.
type refusingTransport struct {
	down    atomic.Bool
	refused atomic.Int64
	http.RoundTripper
}

func newRefusingTransport() *refusingTransport {
	rt := &refusingTransport{}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if rt.down.Load() {
			rt.refused.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return dial(ctx, network, addr)
	}
	tr.DisableKeepAlives = true // every request dials, so "down" applies at once
	rt.RoundTripper = tr
	return rt
}

// TestOutageThenRecovery sends events through 503s, refused connections
// and answers lost after the server committed the batch: once the server
// recovers, it holds every event exactly once.
func TestOutageThenRecovery(t *testing.T) {
	f := newFakeServer(t, testConfig)
	rt := newRefusingTransport()
	var phase atomic.Int32 // 0: 503, 1: refused, 2: commit then drop the connection, 3: healthy
	var dropped atomic.Int32
	f.fail = func(w http.ResponseWriter, r *http.Request, body []byte, n int) bool {
		switch phase.Load() {
		case 0:
			writeError(w, http.StatusServiceUnavailable, "overloaded", "0")
			return true
		case 2:
			if dropped.Add(1) <= 3 {
				f.commitThenHangUp(w, r, body)
				return true
			}
		}
		return false
	}
	c := newTestClient(t, f.URL(), sdk.WithBatchSize(50), sdk.WithHTTPClient(&http.Client{Transport: rt, Timeout: 10 * time.Second}))
	ctx := context.Background()
	record := func(from, to int) {
		for i := from; i < to; i++ {
			u := sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i)}
			c.Assign(ctx, u, "exp")
			c.Assign(ctx, u, "exp") // deduped
			if err := c.Track(ctx, u, "purchase", float64(i), nil); err != nil {
				t.Fatal(err)
			}
		}
	}

	record(0, 200)
	waitFor(t, "three 503s", func() bool { n, _ := f.counts(); return n >= 3 })
	rt.down.Store(true)
	phase.Store(1)
	record(200, 400)
	waitFor(t, "three refused connections", func() bool { return rt.refused.Load() >= 3 })
	phase.Store(2)
	rt.down.Store(false)
	record(400, 600)
	waitFor(t, "three answers lost", func() bool { return dropped.Load() >= 3 })
	phase.Store(3)
	record(600, 800)
	closeClient(t, c)

	s := c.Stats()
	checkBalance(t, s)
	const want = 800 * 2 // one exposure and one track per unit
	evs := f.events()
	if s.Queued != want || s.Sent != want || s.Dropped != 0 || s.Rejected != 0 || len(evs) != want {
		t.Errorf("queued %d, sent %d, dropped %d, rejected %d, stored %d; want %d sent and stored, none lost",
			s.Queued, s.Sent, s.Dropped, s.Rejected, len(evs), want)
	}
	if s.Retried == 0 || s.Duplicates == 0 {
		t.Errorf("retried %d, duplicates %d; want both > 0 after the outage", s.Retried, s.Duplicates)
	}
	exposures, tracks := map[string]int{}, map[string]int{}
	for _, ev := range evs {
		switch ev.Type {
		case "exposure":
			exposures[ev.UnitID]++
		case "track":
			tracks[ev.UnitID]++
		}
	}
	for i := range 800 {
		id := fmt.Sprintf("c-%d", i)
		if exposures[id] != 1 || tracks[id] != 1 {
			t.Fatalf("unit %s: %d exposures and %d tracks stored, want 1 and 1", id, exposures[id], tracks[id])
		}
	}
	_, redelivered := f.counts()
	if redelivered == 0 {
		t.Error("no event was received twice; the lost answers did not force a retry")
	}
}

// TestAssignNeverWaitsForAHungServer blocks the delivery goroutine inside
// a request to a server that does not answer, then records far more events
// than the buffer holds: Assign, Track and Identify all return, the buffer
// keeps the newest events, and the overflow is counted exactly.
func TestAssignNeverWaitsForAHungServer(t *testing.T) {
	f := newFakeServer(t, testConfig)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	f.fail = func(w http.ResponseWriter, r *http.Request, body []byte, n int) bool {
		once.Do(func() { entered <- struct{}{} })
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	}
	const buffer = 100
	c := newTestClient(t, f.URL(), sdk.WithBatchSize(1), sdk.WithBufferSize(buffer))
	ctx := context.Background()
	if err := c.Track(ctx, sdk.Unit{CustomerID: "first"}, "visit", -1, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered: // the delivery goroutine is now blocked in that request
	case <-time.After(30 * time.Second):
		t.Fatal("the first event never reached the server")
	}

	const units = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range units {
			u := sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i)}
			if a := c.Assign(ctx, u, "exp"); !a.Enrolled {
				t.Errorf("Assign(%s) = %+v, want enrolled", u.CustomerID, a)
			}
			c.Identify(ctx, fmt.Sprintf("d-%d", i), u.CustomerID)
			c.Track(ctx, u, "purchase", float64(i), nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Assign, Track or Identify blocked while the server hung")
	}
	s := c.Stats()
	if want := uint64(3*units - buffer); s.Overflowed != want || s.Dropped != want || s.Pending != buffer+1 {
		t.Errorf("overflowed %d, dropped %d, pending %d; want %d, %d and %d (the buffer plus the event in flight)",
			s.Overflowed, s.Dropped, s.Pending, want, want, buffer+1)
	}

	close(release)
	closeClient(t, c)
	s = c.Stats()
	checkBalance(t, s)
	evs := f.events()
	if len(evs) != buffer+1 || s.Sent != buffer+1 {
		t.Fatalf("stored %d events, sent %d; want the %d kept", len(evs), s.Sent, buffer+1)
	}
	// The oldest were dropped: the server has the first event (in flight
	// when the buffer filled) and the newest 100, in order.
	if evs[0].Event != "visit" {
		t.Errorf("first stored event = %+v, want the visit in flight", evs[0])
	}
	for i, ev := range evs[1:] {
		step := 3*units - buffer + i // the event's position among the 3 per unit
		unit, kind := step/3, []string{"exposure", "identify", "track"}[step%3]
		if ev.Type != kind || (kind != "identify" && ev.UnitID != fmt.Sprintf("c-%d", unit)) {
			t.Fatalf("stored event %d = %s of %s, want the %s of unit c-%d", i+1, ev.Type, ev.UnitID, kind, unit)
		}
	}
}

// TestFailingServerNeverSlowsAssign answers every request with a 500:
// Assign keeps returning, the client retries, and Close gives up when its
// ctx ends, counting the events it drops.
func TestFailingServerNeverSlowsAssign(t *testing.T) {
	f := newFakeServer(t, testConfig)
	f.fail = func(w http.ResponseWriter, r *http.Request, body []byte, n int) bool {
		writeError(w, http.StatusInternalServerError, "internal", "")
		return true
	}
	c := newTestClient(t, f.URL(), sdk.WithBatchSize(10))
	ctx := context.Background()
	for i := range 500 {
		c.Assign(ctx, sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i)}, "exp")
	}
	waitFor(t, "retries", func() bool { return c.Stats().Retried >= 30 })
	closeCtx, cancel := context.WithCancel(ctx)
	cancel() // give up at once
	if err := c.Close(closeCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	s := c.Stats()
	checkBalance(t, s)
	if s.Sent != 0 || s.Dropped != 500 || s.Pending != 0 {
		t.Errorf("sent %d, dropped %d, pending %d; want 0, 500, 0", s.Sent, s.Dropped, s.Pending)
	}
	if err := c.Track(ctx, sdk.Unit{CustomerID: "late"}, "x", 0, nil); !errors.Is(err, sdk.ErrClosed) {
		t.Errorf("Track after Close = %v, want ErrClosed", err)
	}
	if a := c.Assign(ctx, sdk.Unit{CustomerID: "late"}, "exp"); !a.Enrolled {
		t.Errorf("Assign after Close = %+v, want it to keep working", a)
	}
}

// TestRefusedRequests: a 4xx on a whole request drops the batch without
// retrying it; a 413 splits the batch until it fits.
func TestRefusedRequests(t *testing.T) {
	for _, tt := range []struct {
		name       string
		fail       func(w http.ResponseWriter, body []byte) bool
		wantSent   uint64
		wantDrop   uint64
		wantSizes  []int // events per request the fake saw, when it stores
		wantMaxReq int
	}{
		{"401", func(w http.ResponseWriter, body []byte) bool {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "")
			return true
		}, 0, 40, nil, 4},
		{"403", func(w http.ResponseWriter, body []byte) bool {
			writeError(w, http.StatusForbidden, "permission_denied", "")
			return true
		}, 0, 40, nil, 4},
		{"413 above 5 events", func(w http.ResponseWriter, body []byte) bool {
			if countEvents(body) > 5 {
				writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", "")
				return true
			}
			return false
		}, 40, 0, []int{5, 5, 5, 5, 5, 5, 5, 5}, 0},
		{"413 always", func(w http.ResponseWriter, body []byte) bool {
			writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", "")
			return true
		}, 0, 40, nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t, testConfig)
			f.fail = func(w http.ResponseWriter, r *http.Request, body []byte, n int) bool { return tt.fail(w, body) }
			c := newTestClient(t, f.URL(), sdk.WithBatchSize(10), sdk.WithFlushInterval(time.Hour))
			ctx := context.Background()
			for i := range 40 {
				c.Track(ctx, sdk.Unit{DeviceID: fmt.Sprintf("d-%d", i)}, "visit", 1, nil)
			}
			closeClient(t, c)
			s := c.Stats()
			checkBalance(t, s)
			if s.Sent != tt.wantSent || s.Dropped != tt.wantDrop || s.Retried != 0 {
				t.Errorf("sent %d, dropped %d, retried %d; want %d, %d, 0", s.Sent, s.Dropped, s.Retried, tt.wantSent, tt.wantDrop)
			}
			requests, _ := f.counts()
			if tt.wantMaxReq > 0 && requests != tt.wantMaxReq {
				t.Errorf("the server got %d requests, want %d (one per batch, no retry)", requests, tt.wantMaxReq)
			}
			if sizes := f.batchSizes(); tt.wantSizes != nil && fmt.Sprint(sizes) != fmt.Sprint(tt.wantSizes) {
				t.Errorf("stored batches of %v events, want %v", sizes, tt.wantSizes)
			}
		})
	}
}

// countEvents counts the events of a request body.
func countEvents(body []byte) int {
	n := 0
	for i := range len(body) - 5 {
		if string(body[i:i+5]) == `"id":` {
			n++
		}
	}
	return n
}

// TestRejectedEvents: events the server rejects one by one are counted and
// never sent again; the rest of their batch is delivered.
func TestRejectedEvents(t *testing.T) {
	f := newFakeServer(t, testConfig)
	f.reject = func(ev fakeEvent) bool { return ev.Event == "bad" }
	c := newTestClient(t, f.URL(), sdk.WithBatchSize(10))
	ctx := context.Background()
	for i := range 30 {
		name := "good"
		if i%3 == 0 {
			name = "bad"
		}
		c.Track(ctx, sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i)}, name, 0, nil)
	}
	closeClient(t, c)
	s := c.Stats()
	checkBalance(t, s)
	requests, redelivered := f.counts()
	if s.Rejected != 10 || s.Sent != 20 || s.Retried != 0 || redelivered != 0 || len(f.events()) != 20 {
		t.Errorf("rejected %d, sent %d, retried %d, redelivered %d, stored %d; want 10, 20, 0, 0, 20",
			s.Rejected, s.Sent, s.Retried, redelivered, len(f.events()))
	}
	if requests > 3 {
		t.Errorf("%d requests for 30 events in batches of 10: rejected events were retried", requests)
	}
}

// TestRetryAfter: a 429's Retry-After is honoured even when the backoff
// is shorter.
func TestRetryAfter(t *testing.T) {
	f := newFakeServer(t, testConfig)
	var mu sync.Mutex
	var first, second time.Time
	f.fail = func(w http.ResponseWriter, r *http.Request, body []byte, n int) bool {
		mu.Lock()
		defer mu.Unlock()
		switch n {
		case 1:
			first = time.Now()
			writeError(w, http.StatusTooManyRequests, "rate_limited", "1")
			return true
		case 2:
			second = time.Now()
		}
		return false
	}
	c := newTestClient(t, f.URL())
	c.Track(context.Background(), sdk.Unit{CustomerID: "c-1"}, "visit", 0, nil)
	closeClient(t, c)
	if s := c.Stats(); s.Sent != 1 || s.Retried != 1 {
		t.Fatalf("sent %d, retried %d; want 1 and 1", s.Sent, s.Retried)
	}
	mu.Lock()
	defer mu.Unlock()
	if gap := second.Sub(first); gap < time.Second {
		t.Errorf("retried after %v, want at least the 1 s of Retry-After", gap)
	}
}

// TestConsent: nothing about an opted-out unit is sent.
func TestConsent(t *testing.T) {
	f := newFakeServer(t, testConfig)
	c := newTestClient(t, f.URL(), sdk.WithConsent(func(u sdk.Unit) bool {
		return u.CustomerID != "c-no" && u.DeviceID != "d-no"
	}))
	ctx := context.Background()
	for _, u := range []sdk.Unit{{CustomerID: "c-no"}, {CustomerID: "c-flag", OptedOut: true}, {DeviceID: "d-no", CustomerID: "c-yes"}} {
		if a := c.Assign(ctx, u, "exp"); a.Enrolled || a.Reason != sdk.ReasonOptedOut {
			t.Errorf("Assign(%+v) = %+v, want opted_out", u, a)
		}
		if err := c.Track(ctx, u, "purchase", 1, nil); err != nil {
			t.Errorf("Track(%+v) = %v, want nil", u, err)
		}
	}
	c.Identify(ctx, "d-no", "c-yes")
	c.Assign(ctx, sdk.Unit{CustomerID: "c-yes"}, "exp")
	closeClient(t, c)
	evs := f.events()
	if len(evs) != 1 || evs[0].UnitID != "c-yes" || evs[0].Type != "exposure" {
		t.Errorf("stored %+v, want only the exposure of c-yes", evs)
	}
}

// TestExposureDedup: one exposure per unit and experiment, whatever the
// number of calls; a full cache evicts, counts, and keeps its size.
func TestExposureDedup(t *testing.T) {
	f := newFakeServer(t, testConfig)
	c := newTestClient(t, f.URL(), sdk.WithExposureCacheSize(1000))
	ctx := context.Background()
	attrs := map[string]any{"plan": "pro"}
	for range 5 {
		for i := range 50 {
			c.Assign(ctx, sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i), Attributes: attrs}, "exp")
		}
	}
	closeClient(t, c)
	if s := c.Stats(); s.Exposures != 50 || s.Sent != 50 || s.CacheSize != 1024 || s.CacheEvictions != 0 {
		t.Errorf("exposures %d, sent %d, cache size %d, evictions %d; want 50, 50, 1024, 0", s.Exposures, s.Sent, s.CacheSize, s.CacheEvictions)
	}
	for _, ev := range f.events() {
		if string(ev.Attributes) != `{"plan":"pro"}` || ev.Experiment != "exp" || ev.UnitType != "customer" {
			t.Fatalf("exposure = %+v, want experiment exp, unit type customer and the unit's attributes", ev)
		}
	}

	// A cache of 64 entries (8 buckets of 8) and 10,000 units: every
	// bucket fills, then each new unit evicts one entry.
	small := newTestClient(t, f.URL(), sdk.WithExposureCacheSize(64), sdk.WithBufferSize(20000))
	for i := range 10000 {
		small.Assign(ctx, sdk.Unit{CustomerID: fmt.Sprintf("u-%d", i)}, "exp")
	}
	closeClient(t, small)
	if s := small.Stats(); s.CacheSize != 64 || s.CacheEvictions != 10000-64 || s.Exposures != 10000 {
		t.Errorf("cache size %d, evictions %d, exposures %d; want 64, %d, 10000", s.CacheSize, s.CacheEvictions, s.Exposures, 10000-64)
	}
}
