// Package apptest runs the whole flywheel stack in process for tests in
// any package: a fresh migrated PostgreSQL database (internal/pgtest), the
// app as cmd/flywheel assembles it, and an httptest server, with one admin,
// one sdk and one viewer key. Test packages that use it call pgtest.Main from TestMain.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

// The keys every test server has.
const (
	AdminKey  = "fw_admin_test_key_0123456789"
	SDKKey    = "fw_sdk_test_key_0123456789"
	ViewerKey = "fw_viewer_test_key_0123456789"
)

// Server is a running flywheel.
type Server struct {
	URL         string // base URL of the HTTP server
	DatabaseURL string
	App         *app.App
	HTTP        *httptest.Server
}

// Start runs flywheel until the test ends, on a fresh database or, when
// cfg.DatabaseURL is set, on that one (migrated already: a database the
// test prepared, or a private cluster's). The keys are named alice (admin),
// app (sdk) and vera (viewer).
func Start(tb testing.TB, cfg app.Config) *Server {
	tb.Helper()
	return StartAt(tb, cfg, "")
}

// StartAt is Start listening on addr ("127.0.0.1:0" when empty): a test
// that kills a server starts the next one on the same address.
//
// Without cfg.Logger, the server's log is kept from debug level (each
// aggregation cycle's steps and folds, each request) and its latest
// logTail lines are printed if the test fails: a failure that happens
// only under CI's load then says what the server was doing.
func StartAt(tb testing.TB, cfg app.Config, addr string) *Server {
	tb.Helper()
	ctx := context.Background()
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = pgtest.NewDatabase(tb)
	}
	if cfg.Logger == nil {
		tail := &tailWriter{}
		cfg.Logger = slog.New(slog.NewTextHandler(tail, &slog.HandlerOptions{Level: slog.LevelDebug}))
		tb.Cleanup(func() { // after the app's Close (cleanups run last first)
			if tb.Failed() {
				tb.Logf("the server's log, last lines:\n%s", tail.String())
			}
		})
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	for _, k := range []struct {
		name, secret string
		scope        flywheel.Scope
	}{{"alice", AdminKey, flywheel.ScopeAdmin}, {"app", SDKKey, flywheel.ScopeSDK}, {"vera", ViewerKey, flywheel.ScopeViewer}} {
		if err := a.DB.EnsureKey(ctx, k.name, k.scope, k.secret); err != nil {
			tb.Fatalf("EnsureKey: %v", err)
		}
	}
	srv := httptest.NewUnstartedServer(a.Handler)
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			a.Close(ctx)
			tb.Fatalf("listen on %s: %v", addr, err)
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	tb.Cleanup(func() {
		a.API.CloseStreams() // or Close would wait for open streams
		srv.Close()
		if err := a.Close(context.Background()); err != nil {
			tb.Errorf("app.Close: %v", err)
		}
	})
	return &Server{URL: srv.URL, DatabaseURL: cfg.DatabaseURL, App: a, HTTP: srv}
}

// Kill stops the server as a crash would: every connection cut at once
// (open config streams included, without their graceful end), the
// listener closed, the app stopped. The address is free again afterwards.
func (s *Server) Kill() {
	s.HTTP.CloseClientConnections()
	s.HTTP.Close()
	_ = s.App.Close(context.Background())
}

// Admin sends a request with the admin key (body marshalled as JSON when
// not nil) and fails the test unless the status is want; it returns the
// answer's body.
func (s *Server) Admin(tb testing.TB, want int, method, path string, body any) []byte {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+AdminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		tb.Fatalf("%s %s = %d, want %d: %s", method, path, res.StatusCode, want, raw)
	}
	return raw
}

// logTail is the most log lines a test server keeps for a failing test.
const logTail = 2000

// tailWriter keeps the latest logTail lines written to it (slog writes a
// whole line per call).
type tailWriter struct {
	mu      sync.Mutex
	lines   []string
	dropped int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, strings.TrimRight(string(p), "\n"))
	if len(w.lines) >= 2*logTail { // trimmed now and then, not at every line
		w.trim()
	}
	return len(p), nil
}

// trim keeps the latest logTail lines (w.mu held).
func (w *tailWriter) trim() {
	if n := len(w.lines) - logTail; n > 0 {
		w.dropped += n
		w.lines = append(w.lines[:0], w.lines[n:]...)
	}
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) == 0 {
		return "(none)"
	}
	w.trim()
	s := strings.Join(w.lines, "\n")
	if w.dropped > 0 {
		s = fmt.Sprintf("(%d earlier lines left out)\n%s", w.dropped, s)
	}
	return s
}
