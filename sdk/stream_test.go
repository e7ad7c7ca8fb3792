package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/sdk"
)

// revConfig is a config at revision rev whose one experiment is named
// after it, so that an assignment tells which revision the client uses.
func revConfig(rev int64) []byte {
	return fmt.Appendf(nil, `{"revision":%d,"experiments":[{"key":"exp-%d","unit_type":"customer","traffic":1,"running":true,
 "variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5}]}]}`, rev, rev)
}

// newStreamingClient starts a client on f with polling so slow (an hour)
// that only the stream can bring a change within a test.
func newStreamingClient(t *testing.T, f *fakeServer, opts ...sdk.Option) *sdk.Client {
	t.Helper()
	ctx := context.Background()
	opts = append([]sdk.Option{sdk.WithPollInterval(time.Hour), sdk.WithStartupTimeout(30 * time.Second)}, opts...)
	c, err := sdk.New(ctx, sdk.Config{URL: f.URL(), Key: "sdk-key"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(ctx) })
	return c
}

func (f *fakeServer) streamCounts() (opens int, lastEventIDs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streamOpens, append([]string(nil), f.lastEventIDs...)
}

func (f *fakeServer) configCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.configRequests
}

// TestStreamDeliversEachChange: with the stream on, a change reaches the
// client although it would not poll for an hour; the stream resumes from
// the revision the client has.
func TestStreamDeliversEachChange(t *testing.T) {
	f := newFakeServer(t, revConfig(1))
	f.setStream(streamOn)
	c := newStreamingClient(t, f)
	waitFor(t, "the stream", func() bool { return c.Stats().Streaming })
	for rev := int64(2); rev <= 4; rev++ {
		f.setConfig(rev, revConfig(rev))
		waitFor(t, fmt.Sprintf("revision %d", rev), func() bool { return c.Stats().ConfigRevision == rev })
		if a := c.Assign(context.Background(), sdk.Unit{CustomerID: "c-1"}, fmt.Sprintf("exp-%d", rev)); !a.Enrolled {
			t.Errorf("revision %d: Assign = %+v, want enrolled", rev, a)
		}
	}
	opens, ids := f.streamCounts()
	if opens != 1 || ids[0] != "1" {
		t.Errorf("stream opened %d times with Last-Event-ID %q, want once with 1 (the revision of the first fetch)", opens, ids)
	}
	if n := f.configCount(); n != 1 {
		t.Errorf("%d config fetches, want only the first one", n)
	}
	f.mu.Lock()
	h := f.streamHeaders
	f.mu.Unlock()
	if h.Get("Accept") != "text/event-stream" || h.Get("User-Agent") == "" {
		t.Errorf("stream request headers %v, want Accept: text/event-stream and a User-Agent", h)
	}
	if s := c.Stats(); s.StreamConnects != 1 || s.ConfigStale != 0 {
		t.Errorf("stats %+v, want one stream connect and no stale config", s)
	}
}

// TestStreamNeverOlderConfig: a server that serves an older revision after
// a newer one (a lagging replica behind a load balancer), by the stream or
// by polling, never takes the client back.
func TestStreamNeverOlderConfig(t *testing.T) {
	for _, mode := range []struct {
		name   string
		stream streamMode
	}{{"stream", streamOn}, {"polling", streamOff}} {
		t.Run(mode.name, func(t *testing.T) {
			f := newFakeServer(t, revConfig(5))
			f.revision = 5
			f.setStream(mode.stream)
			opts := []sdk.Option{sdk.WithPollInterval(5 * time.Millisecond)}
			if mode.stream == streamOn {
				opts = nil
			}
			c := newStreamingClient(t, f, opts...)
			if s := c.Stats(); s.ConfigRevision != 5 {
				t.Fatalf("revision %d, want 5", s.ConfigRevision)
			}
			f.setConfig(3, revConfig(3))
			waitFor(t, "the older config refused", func() bool { return c.Stats().ConfigStale >= 1 })
			if s := c.Stats(); s.ConfigRevision != 5 {
				t.Errorf("revision %d after the server went back to 3, want 5", s.ConfigRevision)
			}
			if a := c.Assign(context.Background(), sdk.Unit{CustomerID: "c-1"}, "exp-5"); !a.Enrolled {
				t.Errorf("Assign(exp-5) = %+v, want enrolled from revision 5", a)
			}
			f.setConfig(6, revConfig(6))
			waitFor(t, "revision 6", func() bool { return c.Stats().ConfigRevision == 6 })
		})
	}
}

// TestStreamFallsBackToPolling: a server without the stream, or a proxy
// that cuts, buffers or replaces it, still gets every change to the client
// by polling, and the client tries the stream again.
func TestStreamFallsBackToPolling(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode streamMode
	}{
		{"no stream route (404)", streamOff},
		{"proxy cuts the stream", streamCut},
		{"proxy buffers the stream", streamBuffer},
		{"proxy answers a page", streamHTML},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t, revConfig(1))
			f.setStream(tt.mode)
			c := newStreamingClient(t, f, sdk.WithPollInterval(10*time.Millisecond), sdk.WithStreamIdleTimeout(20*time.Millisecond))
			waitFor(t, "a stream attempt", func() bool { n, _ := f.streamCounts(); return n >= 1 })
			f.setConfig(2, revConfig(2))
			waitFor(t, "revision 2 by polling", func() bool { return c.Stats().ConfigRevision == 2 })
			if tt.mode == streamOff {
				return // retried after minutes
			}
			// The stream is tried again (the backoff is at most 30 s; a
			// cut stream is reconnected at once).
			if tt.mode == streamCut {
				waitFor(t, "a second stream attempt", func() bool { n, _ := f.streamCounts(); return n >= 2 })
			}
			// Once the proxy is fixed, the stream takes over.
			f.setStream(streamOn)
			waitFor(t, "the stream", func() bool { return c.Stats().Streaming })
			if s := c.Stats(); s.ConfigRevision != 2 {
				t.Errorf("revision %d, want 2", s.ConfigRevision)
			}
		})
	}
}

// TestStreamSilentIsDropped: a stream that worked and then goes silent
// (no heartbeat for the idle timeout: a dead connection) is dropped and
// opened again.
func TestStreamSilentIsDropped(t *testing.T) {
	f := newFakeServer(t, revConfig(1))
	f.setStream(streamSilent)
	c := newStreamingClient(t, f, sdk.WithStreamIdleTimeout(20*time.Millisecond))
	waitFor(t, "three streams", func() bool { return c.Stats().StreamConnects >= 3 })
	if n, ids := f.streamCounts(); n < 3 || ids[len(ids)-1] != "1" {
		t.Errorf("stream opened %d times, last with Last-Event-ID %q; want at least 3, with 1", n, ids[len(ids)-1])
	}
}

// TestStreamOff: WithStreaming(false) never opens the stream.
func TestStreamOff(t *testing.T) {
	f := newFakeServer(t, revConfig(1))
	f.setStream(streamOn)
	c := newStreamingClient(t, f, sdk.WithStreaming(false), sdk.WithPollInterval(5*time.Millisecond))
	f.setConfig(2, revConfig(2))
	waitFor(t, "revision 2 by polling", func() bool { return c.Stats().ConfigRevision == 2 })
	waitFor(t, "more polls", func() bool { return f.configCount() >= 5 })
	if n, _ := f.streamCounts(); n != 0 || c.Stats().StreamConnects != 0 {
		t.Errorf("stream opened %d times with streaming off", n)
	}
}

// runningExperiment is the body of an experiment every customer is in.
func runningExperiment(key string) map[string]any {
	return map[string]any{"key": key, "name": key, "unit_type": "customer",
		"variants": []map[string]any{{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}}}
}

// adminInProcess sends an admin request to a handler without a listener.
func adminInProcess(t testing.TB, h http.Handler, want int, method, path string, body any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+apptest.AdminKey)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		t.Fatalf("%s %s = %d, want %d: %s", method, path, rec.Code, want, rec.Body)
	}
}

// TestStreamAgainstServer: against the real server, a change reaches the
// client by the stream (it would not poll for an hour).
func TestStreamAgainstServer(t *testing.T) {
	ctx := context.Background()
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	c, err := sdk.New(ctx, sdk.Config{URL: srv.URL, Key: apptest.SDKKey}, sdk.WithPollInterval(time.Hour), sdk.WithStartupTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	waitFor(t, "the stream", func() bool { return c.Stats().Streaming })
	admin(t, srv, 201, "POST", "/v1/experiments", runningExperiment("live"))
	admin(t, srv, 200, "POST", "/v1/experiments/live/start", nil)
	waitFor(t, "the started experiment", func() bool { return c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "live").Enrolled })
	if s := c.Stats(); s.StreamConnects != 1 {
		t.Errorf("stream connects = %d, want 1", s.StreamConnects)
	}
}

// TestStreamReconnectsAfterServerKilled kills the server under an open
// stream, changes the configuration while no server listens (through
// another app on the same database), then starts a new server on the same
// address: the client reconnects, catches up with the change, and follows
// the new server's stream.
func TestStreamReconnectsAfterServerKilled(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	cfg := app.Config{DatabaseURL: db, AggregateEvery: -1}
	first := apptest.Start(t, cfg)
	addr := first.HTTP.Listener.Addr().String()
	admin(t, first, 201, "POST", "/v1/experiments", runningExperiment("before"))
	admin(t, first, 200, "POST", "/v1/experiments/before/start", nil)

	c, err := sdk.New(ctx, sdk.Config{URL: first.URL, Key: apptest.SDKKey}, sdk.WithPollInterval(time.Hour), sdk.WithStartupTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	waitFor(t, "the stream", func() bool { return c.Stats().Streaming })
	before := c.Stats()

	first.Kill()
	waitFor(t, "the stream to break", func() bool { return !c.Stats().Streaming })

	other, err := app.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	adminInProcess(t, other.Handler, 201, "POST", "/v1/experiments", runningExperiment("during"))
	adminInProcess(t, other.Handler, 200, "POST", "/v1/experiments/during/start", nil)
	if err := other.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if a := c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "during"); a.Enrolled {
		t.Fatalf("Assign(during) = %+v before any server is back", a)
	}

	second := apptest.StartAt(t, cfg, addr)
	waitFor(t, "the change made while the server was down", func() bool {
		return c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "during").Enrolled
	})
	waitFor(t, "a new stream", func() bool { s := c.Stats(); return s.Streaming && s.StreamConnects > before.StreamConnects })
	if s := c.Stats(); s.ConfigRevision <= before.ConfigRevision || s.ConfigStale != 0 {
		t.Errorf("stats %+v, want a newer revision than %d and no stale config", s, before.ConfigRevision)
	}
	admin(t, second, 201, "POST", "/v1/experiments", runningExperiment("after"))
	admin(t, second, 200, "POST", "/v1/experiments/after/start", nil)
	waitFor(t, "the change on the new server", func() bool {
		return c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "after").Enrolled
	})
	if !c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "before").Enrolled {
		t.Error("Assign(before) not enrolled any more")
	}
}
