package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

// TestDemoEmbedded runs `flywheel demo` as a newcomer would, with no
// DATABASE_URL: it starts its own cluster and server, seeds them (here only
// srm-demo, the smallest scenario), prints the URL and a working admin key,
// and serves until interrupted. `flywheel demo --url --key` against it then
// finds everything there.
func TestDemoEmbedded(t *testing.T) {
	dir, err := os.MkdirTemp("", "flywheel-demo-") // reachable by the postgres user, as in TestEmbeddedDefault
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	getenv := env("FLYWHEEL_DATA_DIR", dir+"/pgdata")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, logs := &syncBuffer{}, &syncBuffer{}
	type seeded struct{ base, key string }
	readyc := make(chan seeded, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, []string{"--addr", "127.0.0.1:0", "--only", "srm-demo"}, getenv, out, logs,
			func(base, key string) { readyc <- seeded{base, key} })
	}()
	var s seeded
	select {
	case s = <-readyc:
	case err := <-done:
		t.Fatalf("demo returned before it was ready: %v\n%s\n%s", err, out.String(), logs.String())
	case <-time.After(5 * time.Minute):
		t.Fatalf("demo not ready after 5 minutes\n%s\n%s", out.String(), logs.String())
	}
	t.Logf("demo output:\n%s", out.String())
	// The server logs requests at warn level only when they fail (4xx,
	// 5xx): a demo on a new server makes none (it creates, and reads only
	// what exists), so its terminal shows no error that is not one.
	if l := logs.String(); strings.Contains(l, "msg=request") {
		t.Errorf("the demo's own requests were logged as failures:\n%s", l)
	}
	for _, want := range []string{"flywheel is serving at " + s.base + " (started in ", "experiment srm-demo: created and started", "TRUST CHECKS FAIL", "KEY=" + s.key + "\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	code, res := call(t, "GET", s.base+"/v1/experiments/srm-demo/results", s.key, "")
	if srm, _ := res["health"].(map[string]any)["srm"].(map[string]any); code != 200 || srm["ok"] != false || res["pending_events"] != 0.0 {
		t.Errorf("srm-demo results with the printed key = %d %v, want 200, srm not ok, nothing pending", code, res["health"])
	}

	// The same demo against the running server: everything exists.
	var again bytes.Buffer
	if err := run(ctx, []string{"demo", "--url", s.base, "--key", s.key, "--only", "srm-demo"}, getenv, &again, io.Discard); err != nil {
		t.Fatalf("demo --url: %v\n%s", err, again.String())
	}
	for _, want := range []string{"experiment srm-demo: already exists and is running", " 0 new, "} {
		if !strings.Contains(again.String(), want) {
			t.Errorf("second demo's output lacks %q:\n%s", want, again.String())
		}
	}

	// The demo again on the same address and folder, as after `flywheel
	// serve` in another terminal: it seeds the server there with a key of
	// its own, and returns.
	addr := strings.TrimPrefix(s.base, "http://")
	var third bytes.Buffer
	var key string
	err = runDemo(ctx, []string{"--addr", addr, "--only", "srm-demo"}, getenv, &third, io.Discard, func(_, k string) { key = k })
	t.Logf("demo on the same address:\n%s", third.String())
	if err != nil {
		t.Fatalf("demo on a running server's address: %v\n%s", err, third.String())
	}
	for _, want := range []string{"flywheel is already serving at " + s.base + ": the demo seeds it", "experiment srm-demo: already exists", "KEY=" + key + "\n"} {
		if !strings.Contains(third.String(), want) {
			t.Errorf("demo on a running server's address: output lacks %q:\n%s", want, third.String())
		}
	}
	if code, _ := call(t, "GET", s.base+"/v1/experiments/srm-demo", key, ""); key == s.key || code != 200 {
		t.Errorf("the second demo's key (%q, the first's %q) = %d, want a new working key", key, s.key, code)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo after interrupt = %v, want a clean stop", err)
	}
	if _, err := os.Stat(dir + "/pgdata/postmaster.pid"); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid still there after stop (err %v): the cluster was not stopped", err)
	}
}

// TestDemoErrors: wrong combinations of flags are usage errors; a bad URL
// or a server that is down is an error that says so.
func TestDemoErrors(t *testing.T) {
	getenv := env()
	wantUsageErrors(t, getenv,
		[]string{"demo", "--url", "http://127.0.0.1:1"},                                        // no key
		[]string{"demo", "--key", "fw_admin_x"},                                                // key without url
		[]string{"demo", "--url", "http://127.0.0.1:1", "--key", "k", "--addr", "127.0.0.1:0"}, // both
		[]string{"demo", "extra"},
		[]string{"demo", "--bogus"})
	// An address taken by something that is not flywheel.
	busy := httptest.NewServer(http.NotFoundHandler())
	defer busy.Close()
	err := runDemo(context.Background(), []string{"--addr", strings.TrimPrefix(busy.URL, "http://")},
		env("DATABASE_URL", pgtest.NewDatabase(t)), io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "something else uses that address") {
		t.Errorf("demo on a busy address = %v, want it to say the address is in use by something else", err)
	}
	for _, c := range []struct {
		url  string
		want string
	}{
		{"localhost:8080", `server URL "localhost:8080"`},
		{"http://127.0.0.1:1", "cannot reach flywheel at http://127.0.0.1:1"},
	} {
		err := run(context.Background(), []string{"demo", "--url", c.url, "--key", "fw_admin_0123456789abcdef"}, getenv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != 1 {
			t.Errorf("demo --url %s = %v (exit %d), want exit 1 and %q", c.url, err, exitCode(err), c.want)
		}
	}
}
