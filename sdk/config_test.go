package sdk_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/sdk"
)

// configV2 moves everyone to the treatment: an override-free way to see
// which revision a client assigns from.
var configV2 = []byte(`{"revision":2,"experiments":[{"key":"exp","unit_type":"customer","traffic":1,"running":true,
 "variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5}],"overrides":{"c-1":"treatment","c-2":"treatment"}},
 {"key":"new","unit_type":"device","traffic":1,"running":true,"variants":[{"key":"a","weight":0.5},{"key":"b","weight":0.5}]}]}`)

// TestConfigPolling: the client loads the config at start, polls with
// If-None-Match (304s), picks up a new revision, and keeps its last good
// config when the server fails or serves one that does not compile.
func TestConfigPolling(t *testing.T) {
	f := newFakeServer(t, testConfig)
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: f.URL(), Key: "sdk-key"}, sdk.WithPollInterval(10*time.Millisecond), sdk.WithStartupTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if !c.Ready() || c.EnsureLoaded(ctx) != nil {
		t.Fatal("New returned before the first config although the server answers")
	}
	if s := c.Stats(); s.ConfigRevision != 1 || !s.ConfigFromServer {
		t.Fatalf("stats %+v, want revision 1 from the server", s)
	}
	waitFor(t, "304 answers", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.notModified >= 3 })

	f.setConfig(2, configV2)
	waitFor(t, "revision 2", func() bool { return c.Stats().ConfigRevision == 2 })
	if a := c.Assign(ctx, sdk.Unit{DeviceID: "d-1"}, "new"); !a.Enrolled {
		t.Errorf("Assign(new) = %+v, want enrolled from revision 2", a)
	}

	f.mu.Lock()
	f.configStatus = http.StatusInternalServerError
	f.mu.Unlock()
	errs := c.Stats().ConfigErrors
	waitFor(t, "failed polls", func() bool { return c.Stats().ConfigErrors >= errs+3 })
	f.mu.Lock()
	f.configStatus = 0
	f.mu.Unlock()
	f.setConfig(3, []byte(`{"revision":3,"experiments":[{"key":"exp","variants":[]}]}`))
	errs = c.Stats().ConfigErrors
	waitFor(t, "rejected configs", func() bool { return c.Stats().ConfigErrors >= errs+3 })
	if s := c.Stats(); s.ConfigRevision != 2 {
		t.Errorf("revision %d after failures, want the last good one, 2", s.ConfigRevision)
	}
	if a := c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "exp"); a.Variant != "treatment" || a.Reason != sdk.ReasonOverride {
		t.Errorf("Assign = %+v, want the override of revision 2", a)
	}
	if err := c.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "compile") {
		t.Errorf("Refresh = %v, want a compile error", err)
	}
}

// TestStartupWithoutServer: with the server down, New returns after the
// start-up timeout with a client that assigns from the bootstrap, and turns
// ready when the server comes up.
func TestStartupWithoutServer(t *testing.T) {
	f := newFakeServer(t, configV2)
	f.mu.Lock()
	f.configStatus = http.StatusServiceUnavailable
	f.mu.Unlock()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flywheel.json")
	if err := os.WriteFile(path, testConfig, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := sdk.New(ctx, sdk.Config{URL: f.URL(), Key: "sdk-key"}, sdk.WithBootstrapFile(path),
		sdk.WithStartupTimeout(20*time.Millisecond), sdk.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatalf("New = %v, want a working client while the server is down", err)
	}
	defer c.Close(ctx)
	if c.Ready() {
		t.Fatal("Ready with the server down")
	}
	if s := c.Stats(); s.ConfigRevision != 1 || s.ConfigFromServer {
		t.Fatalf("stats %+v, want the bootstrap's revision 1", s)
	}
	if a := c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "exp"); !a.Enrolled {
		t.Errorf("Assign = %+v, want enrolled from the bootstrap", a)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	var se *sdk.ServerError
	if err := c.EnsureLoaded(short); !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &se) || se.Status != 503 {
		t.Errorf("EnsureLoaded = %v, want the deadline and the 503", err)
	}

	f.mu.Lock()
	f.configStatus = 0
	f.mu.Unlock()
	if err := c.EnsureLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	if a := c.Assign(ctx, sdk.Unit{DeviceID: "d-1"}, "new"); !a.Enrolled {
		t.Errorf("Assign = %+v, want enrolled from the server's revision 2", a)
	}
}

// TestStartupHungServer: New returns after the start-up timeout even when
// the server accepts the connection and never answers.
func TestStartupHungServer(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close) // after the deferred close(hang)
	defer close(hang)
	ctx := context.Background()
	done := make(chan *sdk.Client)
	go func() {
		c, err := sdk.New(ctx, sdk.Config{URL: srv.URL, Key: "sdk-key"}, sdk.WithStartupTimeout(10*time.Millisecond))
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	select {
	case c := <-done:
		if c.Ready() {
			t.Error("Ready without a config")
		}
		if a := c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "exp"); a.Enrolled || a.Reason != sdk.ReasonNoConfig {
			t.Errorf("Assign = %+v, want no_config", a)
		}
		closeCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := c.Close(closeCtx); err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("New blocked on a hung server")
	}
}

// TestStartupBadKey: a refused key ends New's wait at once.
func TestStartupBadKey(t *testing.T) {
	f := newFakeServer(t, testConfig)
	ctx := context.Background()
	start := time.Now()
	c, err := sdk.New(ctx, sdk.Config{URL: f.URL(), Key: "wrong"}, sdk.WithStartupTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("New waited %v for a refused key", d)
	}
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	var se *sdk.ServerError
	if err := c.EnsureLoaded(short); !errors.As(err, &se) || se.Status != 401 || se.Code != "unauthenticated" {
		t.Errorf("EnsureLoaded = %v, want the 401", err)
	}
}

// TestNewInvalidOptions: only invalid options make New fail.
func TestNewInvalidOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  string
		key  string
		opts []sdk.Option
		want string
	}{
		{"not http", "ftp://x", "k", nil, "http or https"},
		{"no host", "http://", "k", nil, "http or https"},
		{"no key", "http://localhost", "", nil, "key is empty"},
		{"bad bootstrap json", "", "", []sdk.Option{sdk.WithBootstrap([]byte("{"))}, "bootstrap"},
		{"bootstrap does not compile", "", "", []sdk.Option{sdk.WithBootstrap([]byte(`{"experiments":[{"key":"x","variants":[{"key":"a","weight":2}]}]}`))}, "weight"},
		{"missing bootstrap file", "", "", []sdk.Option{sdk.WithBootstrapFile("/nonexistent/flywheel.json")}, "read bootstrap"},
		{"batch size", "", "", []sdk.Option{sdk.WithBatchSize(0)}, "batch size"},
		{"buffer size", "", "", []sdk.Option{sdk.WithBufferSize(-1)}, "buffer size"},
		{"backoff", "", "", []sdk.Option{sdk.WithRetryBackoff(time.Second, time.Millisecond)}, "backoff"},
		{"flush interval", "", "", []sdk.Option{sdk.WithFlushInterval(0)}, "flush interval"},
		{"cache size", "", "", []sdk.Option{sdk.WithExposureCacheSize(0)}, "cache size"},
		{"startup timeout", "", "", []sdk.Option{sdk.WithStartupTimeout(-time.Second)}, "startup timeout"},
		{"http client", "", "", []sdk.Option{sdk.WithHTTPClient(nil)}, "http client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := sdk.New(context.Background(), sdk.Config{URL: tt.url, Key: tt.key}, tt.opts...)
			if err == nil || c != nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, %v; want nil and an error containing %q", c, err, tt.want)
			}
		})
	}
}

// TestOffline: without a URL nothing is fetched or sent.
func TestOffline(t *testing.T) {
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{}, sdk.WithBootstrap(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	c.Assign(ctx, sdk.Unit{CustomerID: "c-1"}, "exp")
	c.Track(ctx, sdk.Unit{CustomerID: "c-1"}, "x", 0, nil)
	if err := c.EnsureLoaded(ctx); !errors.Is(err, sdk.ErrOffline) {
		t.Errorf("EnsureLoaded = %v, want ErrOffline", err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Error(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Error(err)
	}
	s := c.Stats()
	checkBalance(t, s)
	if s.Queued != 2 || s.Dropped != 2 {
		t.Errorf("stats %+v, want 2 events recorded and dropped", s)
	}
}
