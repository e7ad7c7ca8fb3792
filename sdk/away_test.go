package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/sdk"
)

// awayTransport refuses every request at once while away is set, as a
// server that is down does, and counts the attempts to send events.
type awayTransport struct {
	away     atomic.Bool
	attempts atomic.Int64 // POST /v1/events refused
	next     http.RoundTripper
}

func (a *awayTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.away.Load() {
		if r.Body != nil {
			r.Body.Close()
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/v1/events") {
			a.attempts.Add(1)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return a.next.RoundTrip(r)
}

// logLines is a slog destination that keeps each record, one JSON line.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the records at level or above.
func (l *logLines) records(t *testing.T, level slog.Level) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(rec["level"].(string))); err != nil {
			t.Fatal(err)
		}
		if lv >= level {
			out = append(out, rec)
		}
	}
	return out
}

// count returns how many records' message contains s.
func count(recs []map[string]any, s string) int {
	n := 0
	for _, r := range recs {
		if strings.Contains(r["msg"].(string), s) {
			n++
		}
	}
	return n
}

// heapLive returns the bytes of live heap objects after a full collection.
func heapLive() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestServerAwayForAnHour: the server is away for an hour of events (50 a
// second: 180,000 Track calls) and more retries than an hour of the default
// backoff makes (it waits at most 30 s: about 120 attempts). A fake
// transport refuses each request at once, so nothing sleeps for real.
// With the default buffer (10,000 events) and batch (500): the client
// holds at most those 10,500 events and no more memory than they take; it
// drops the oldest of the rest, counts each in Stats and logs the first
// once; when the server is back it delivers each event it kept exactly
// once: the batch it was retrying and the newest 10,000. The test waits
// for the first batch to be sent before it records more: which events are
// kept depends on it, and a loaded machine may run the delivery goroutine
// late.
func TestServerAwayForAnHour(t *testing.T) {
	const (
		hour   = 50 * 3600
		buffer = 10000 // the documented defaults
		batch  = 500
		kept   = buffer + batch
	)
	f := newFakeServer(t, testConfig)
	tr := &awayTransport{next: http.DefaultTransport}
	tr.away.Store(true)
	logs := &logLines{}
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: f.URL(), Key: "sdk-key"},
		sdk.WithHTTPClient(&http.Client{Transport: tr, Timeout: 10 * time.Second}),
		sdk.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		sdk.WithRetryBackoff(2*time.Millisecond, 10*time.Millisecond),
		sdk.WithFlushInterval(time.Hour), // batches go when full, as they do under load
		sdk.WithPollInterval(0), sdk.WithStartupTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })

	units := make([]sdk.Unit, 1000)
	for i := range units {
		units[i] = sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i)}
	}
	before := heapLive()
	maxPending := 0
	for i := range hour {
		if err := c.Track(ctx, units[i%len(units)], "visit", float64(i), nil); err != nil {
			t.Fatal(err)
		}
		if i == batch-1 { // the first batch goes into flight before the buffer fills
			waitFor(t, "the first batch to be sent", func() bool { return tr.attempts.Load() > 0 })
		}
		if i%1000 == 0 {
			maxPending = max(maxPending, c.Stats().Pending)
		}
	}
	waitFor(t, "150 attempts to send", func() bool { return tr.attempts.Load() >= 150 })
	grown := int64(heapLive()) - int64(before)

	s := c.Stats()
	checkBalance(t, s)
	if s.Queued != hour || s.Pending != kept || maxPending > kept || s.Sent != 0 {
		t.Errorf("while away: queued %d, pending %d (at most %d seen), sent %d; want %d, %d (buffer and batch), never more, 0",
			s.Queued, s.Pending, maxPending, s.Sent, hour, kept)
	}
	if s.Overflowed != hour-kept || s.Dropped != s.Overflowed {
		t.Errorf("overflowed %d, dropped %d; want %d each: every event pushed out is counted", s.Overflowed, s.Dropped, hour-kept)
	}
	// 10,500 events of about 200 bytes, their slices and the ring take
	// about 3 MB; 16 MB leaves room for the runtime and is far below the
	// 35 MB an unbounded buffer would hold.
	if grown > 16<<20 {
		t.Errorf("the heap grew by %d MB while the server was away; want at most 16 MB (the buffer's 10,500 events take about 3)", grown>>20)
	}
	t.Logf("while away: %d attempts to send, the heap grew by %.1f MB, %d events dropped", tr.attempts.Load(), float64(grown)/(1<<20), s.Overflowed)
	warnings := logs.records(t, slog.LevelWarn)
	if n := count(warnings, "buffer full"); n != 1 {
		t.Errorf("%d log lines about the full buffer, want 1 for %d events dropped", n, s.Overflowed)
	}
	// Beside the config's start-up warnings: the first failed attempt and
	// the first dropped event, nothing per attempt or per event.
	if n := len(warnings) - count(warnings, "config"); n != 2 {
		t.Errorf("%d warnings about events while away, want 2 (the first failed attempt, the first drop): %v", n, warnings)
	}

	tr.away.Store(false)
	flushCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.Flush(flushCtx); err != nil {
		t.Fatalf("Flush after the server came back: %v", err)
	}
	s = c.Stats()
	checkBalance(t, s)
	if s.Sent != kept || s.Pending != 0 || s.Duplicates != 0 || s.Dropped != hour-kept {
		t.Errorf("after: sent %d, pending %d, duplicates %d, dropped %d; want %d, 0, 0, %d", s.Sent, s.Pending, s.Duplicates, s.Dropped, kept, hour-kept)
	}
	evs := f.events()
	_, redelivered := f.counts()
	got := map[int]int{}
	for _, ev := range evs {
		got[int(*ev.Value)]++
	}
	missing := 0
	for i := range hour {
		if want := i < batch || i >= hour-buffer; want && got[i] != 1 {
			missing++
		} else if !want && got[i] != 0 {
			t.Fatalf("event %d was stored, but the buffer dropped it", i)
		}
	}
	if len(evs) != kept || missing > 0 || redelivered > 0 {
		t.Errorf("stored %d events (%d of those kept missing), %d received twice; want the %d kept (the first batch and the newest %d), each once",
			len(evs), missing, redelivered, kept, buffer)
	}
	if n := count(logs.records(t, slog.LevelWarn), "buffer full"); n != 1 {
		t.Errorf("%d log lines about the full buffer after recovery, want still 1", n)
	}

	// The next outage that fills the buffer is logged again, once.
	tr.away.Store(true)
	attempts := tr.attempts.Load()
	for i := range kept + 100 {
		if err := c.Track(ctx, units[i%len(units)], "visit", float64(hour+i), nil); err != nil {
			t.Fatal(err)
		}
		if i == batch-1 {
			waitFor(t, "the first batch to be sent again", func() bool { return tr.attempts.Load() > attempts })
		}
	}
	if s := c.Stats(); s.Overflowed != hour-kept+100 {
		t.Errorf("second outage: overflowed %d in all, want %d", s.Overflowed, hour-kept+100)
	}
	if n := count(logs.records(t, slog.LevelWarn), "buffer full"); n != 2 {
		t.Errorf("%d log lines about the full buffer after a second outage, want 2 (one each)", n)
	}
	tr.away.Store(false)
}
