package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a test server that keeps every body and connection it sees.
type recorder struct {
	mu      sync.Mutex
	ids     map[string]int
	conns   map[string]bool
	headers []string
	status  int
}

func newRecorder(t testing.TB, status int) (*recorder, *httptest.Server) {
	t.Helper()
	rec := &recorder{ids: map[string]int{}, conns: map[string]bool{}, status: status}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			UnitID string `json:"unit_id"`
		}
		err := json.NewDecoder(r.Body).Decode(&body)
		rec.mu.Lock()
		if err == nil {
			rec.ids[body.UnitID]++
		}
		rec.conns[r.RemoteAddr] = true
		rec.headers = append(rec.headers, r.Method+" "+r.Header.Get("Authorization"))
		rec.mu.Unlock()
		if err != nil {
			http.Error(w, "bad json: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(rec.status)
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return rec, srv
}

func TestRunCount(t *testing.T) {
	rec, srv := newRecorder(t, http.StatusOK)
	res, err := Run(context.Background(), Config{
		URL:           srv.URL + "/v1/assign",
		Header:        http.Header{"Authorization": {"Bearer k"}, "Content-Type": {"application/json"}},
		Body:          []byte(`{"unit_id":"ID","attributes":{"country":"FR"}}`),
		IDPlaceholder: "ID",
		Connections:   4,
		Requests:      200,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Requests != 200 || res.Errors != 0 || res.Non2xx != 0 {
		t.Fatalf("Run = %d requests, %d errors, %d non-2xx (%s), want 200, 0, 0", res.Requests, res.Errors, res.Non2xx, res.FirstError)
	}
	if got := res.Latency.Count(); got != 200 {
		t.Errorf("Latency.Count() = %d, want 200", got)
	}
	if res.RPS() <= 0 || res.Latency.Quantile(0.99) <= 0 || res.Latency.Max() < res.Latency.Quantile(0.99) {
		t.Errorf("RPS %.0f, p99 %v, max %v: want positive, p99 <= max", res.RPS(), res.Latency.Quantile(0.99), res.Latency.Max())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.ids) != 200 {
		t.Errorf("server saw %d distinct unit ids, want 200 (one per request)", len(rec.ids))
	}
	for id, n := range rec.ids {
		if n != 1 || !strings.HasPrefix(id, "w") || !strings.Contains(id, "-") {
			t.Errorf("unit id %q seen %d times, want w<worker>-<seq> once", id, n)
			break
		}
	}
	if len(rec.conns) != 4 {
		t.Errorf("server saw %d connections, want 4 (one keep-alive connection per worker)", len(rec.conns))
	}
	for _, h := range rec.headers {
		if h != "POST Bearer k" {
			t.Fatalf("request %q, want POST with the configured header", h)
		}
	}
}

func TestRunDuration(t *testing.T) {
	_, srv := newRecorder(t, http.StatusOK)
	start := time.Now()
	res, err := Run(context.Background(), Config{
		URL: srv.URL, Body: []byte(`{"unit_id":"X"}`), IDPlaceholder: "X",
		Connections: 3, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run took %v, want about 250ms", took)
	}
	if res.Requests == 0 || res.Errors != 0 {
		t.Errorf("Run = %d requests, %d errors (%s), want some and none", res.Requests, res.Errors, res.FirstError)
	}
	if res.Elapsed < 150*time.Millisecond {
		t.Errorf("Elapsed = %v, want about the 200ms measured", res.Elapsed)
	}
}

func TestRunCountsNon2xxAndErrors(t *testing.T) {
	_, srv := newRecorder(t, http.StatusServiceUnavailable)
	res, err := Run(context.Background(), Config{URL: srv.URL, Body: []byte(`{}`), Connections: 2, Requests: 10})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Non2xx != 10 || !strings.HasPrefix(res.FirstError, "status 503") {
		t.Errorf("Run = %d non-2xx, first %q; want 10, status 503", res.Non2xx, res.FirstError)
	}

	// A closed server: every attempt fails, and the run still ends.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	start := time.Now()
	res, err = Run(context.Background(), Config{URL: dead.URL, Connections: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run on a dead server: %v", err)
	}
	if res.Errors == 0 || res.Requests != 0 || res.FirstError == "" {
		t.Errorf("Run on a dead server = %d errors, %d requests, first %q; want errors only", res.Errors, res.Requests, res.FirstError)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run on a dead server took %v", took)
	}
}

func TestRunStopsOnHungServerAndCancel(t *testing.T) {
	release := make(chan struct{})
	var hung atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	start := time.Now()
	res, err := Run(context.Background(), Config{URL: srv.URL, Connections: 2, Duration: 50 * time.Millisecond, Grace: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run against a hung server took %v, want about 150ms", took)
	}
	if res.Errors != 2 {
		t.Errorf("Run against a hung server = %d errors, want 2 (the requests in flight, cancelled)", res.Errors)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = Run(ctx, Config{URL: srv.URL, Connections: 1, Duration: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run with a context that ends = %v, want its error", err)
	}
}

func TestConfigRejected(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"remote host", Config{URL: "http://example.com/", Connections: 1, Requests: 1}, "loopback"},
		{"private address", Config{URL: "http://10.0.0.1:80/", Connections: 1, Requests: 1}, "loopback"},
		{"not http", Config{URL: "ftp://127.0.0.1/", Connections: 1, Requests: 1}, "URL"},
		{"no connections", Config{URL: "http://127.0.0.1:1/", Requests: 1}, "connections"},
		{"unbounded", Config{URL: "http://127.0.0.1:1/", Connections: 1}, "Duration or Requests"},
		{"negative", Config{URL: "http://[::1]:1/", Connections: 1, Duration: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run(%+v) = %v, want an error about %s", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	tests := []struct {
		name, body, placeholder string
		want                    string
	}{
		{"substituted", `{"unit_id":"$ID","x":1}`, "$ID", `{"unit_id":"w7-42","x":1}`},
		{"no placeholder given", `{"a":1}`, "", `{"a":1}`},
		{"placeholder absent", `{"a":1}`, "$ID", `{"a":1}`},
	}
	for _, tt := range tests {
		tmpl := newTemplate([]byte(tt.body), tt.placeholder)
		if got := string(tmpl.appendBody(nil, 7, 42)); got != tt.want {
			t.Errorf("%s: appendBody = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func BenchmarkTemplate(b *testing.B) {
	tmpl := newTemplate([]byte(`{"unit_type":"customer","unit_id":"$ID","attributes":{"country":"FR"},"experiments":["bench-00"]}`), "$ID")
	buf := make([]byte, 0, tmpl.size())
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = tmpl.appendBody(buf[:0], 63, uint64(i))
	}
}
