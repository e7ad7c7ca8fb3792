package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/migrations"
)

func TestMain(m *testing.M) {
	// bench stream runs its server as a subprocess of this executable:
	// under go test, the test binary, which then is flywheel.
	if os.Getenv(benchChildEnv) == "1" {
		main()
		os.Exit(0)
	}
	pgtest.Main(m)
}

// env returns a getenv over a fixed map, so tests never read the real
// environment.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve runs `flywheel serve` on a free port until the test ends and
// returns its base URL.
func serve(t *testing.T, getenv func(string) string) (base string, logs *syncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, []string{"--addr", "127.0.0.1:0"}, getenv, io.Discard, logs, func(a string) { addrc <- a })
	}()
	select {
	case a := <-addrc:
		base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("serve exited before listening: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("serve did not listen within 60 s\n%s", logs.String())
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return base, logs, stop
}

func call(t *testing.T, method, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

func TestServeEndToEnd(t *testing.T) {
	const admin = "fw_admin_e2e_0123456789abcdef"
	const sdk = "fw_sdk_e2e_0123456789abcdef"
	getenv := env("DATABASE_URL", pgtest.NewDatabase(t), "FLYWHEEL_INIT_ADMIN_KEY", admin, "FLYWHEEL_INIT_SDK_KEY", sdk)
	base, logs, stop := serve(t, getenv)

	if code, _ := call(t, "GET", base+"/readyz", "", ""); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	if code, _ := call(t, "POST", base+"/v1/metrics", admin, `{"key":"purchase","event":"purchase","type":"conversion"}`); code != 201 {
		t.Fatalf("create metric = %d", code)
	}
	code, _ := call(t, "POST", base+"/v1/experiments", admin, `{"key":"e2e","unit_type":"customer",
		"variants":[{"key":"control","weight":0.5},{"key":"b","weight":0.5}],"metrics":{"primary":["purchase"]}}`)
	if code != 201 {
		t.Fatalf("create experiment = %d", code)
	}
	if code, _ := call(t, "POST", base+"/v1/experiments/e2e/start", admin, ""); code != 200 {
		t.Fatalf("start = %d", code)
	}
	code, got := call(t, "POST", base+"/v1/assign", sdk, `{"unit_type":"customer","unit_id":"c-1"}`)
	as, _ := got["assignments"].([]any)
	if code != 200 || len(as) != 1 || as[0].(map[string]any)["enrolled"] != true {
		t.Fatalf("assign = %d %v", code, got)
	}
	if code, _ := call(t, "GET", base+"/v1/experiments", sdk, ""); code != 403 {
		t.Errorf("sdk key on admin route = %d, want 403", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	for _, want := range []string{`"msg":"flywheel listening"`, `"route":"/v1/assign"`, `"request_id":`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "c-1") || strings.Contains(logs.String(), admin) {
		t.Errorf("logs contain a unit id or a key:\n%s", logs.String())
	}
}

func TestKeysAndMigrate(t *testing.T) {
	getenv := env("DATABASE_URL", pgtest.NewDatabase(t))
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keys", "create", "--scope", "sdk", "--name", "mobile"}, getenv, &out, io.Discard); err != nil {
		t.Fatalf("keys create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "fw_sdk_") || len(key) < 40 {
		t.Fatalf("last line = %q, want the key alone", key)
	}
	out.Reset()
	if err := run(context.Background(), []string{"keys", "create", "--scope", "viewer"}, getenv, &out, io.Discard); err != nil {
		t.Fatalf("keys create --scope viewer: %v", err)
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	viewer := lines[len(lines)-1]
	if !strings.HasPrefix(viewer, "fw_viewer_") || !strings.Contains(out.String(), `viewer key "viewer-key"`) {
		t.Fatalf("keys create --scope viewer printed %q, want a viewer key named viewer-key", out.String())
	}
	base, _, _ := serve(t, getenv)
	if code, _ := call(t, "GET", base+"/v1/sdk/config", key, ""); code != 200 {
		t.Errorf("new sdk key on config = %d, want 200", code)
	}
	if code, _ := call(t, "GET", base+"/v1/metrics", key, ""); code != 403 {
		t.Errorf("new sdk key on metrics = %d, want 403", code)
	}
	if code, _ := call(t, "GET", base+"/v1/metrics", viewer, ""); code != 200 {
		t.Errorf("new viewer key on GET /v1/metrics = %d, want 200", code)
	}
	if code, _ := call(t, "POST", base+"/v1/metrics", viewer, `{"key": "m", "event": "m", "type": "conversion"}`); code != 403 {
		t.Errorf("new viewer key on POST /v1/metrics = %d, want 403", code)
	}

	// list shows the key by its prefix; revoke ends it (a server started
	// afterwards has no cached lookup, so it refuses the key at once).
	prefix := key[:12]
	out.Reset()
	if err := run(context.Background(), []string{"keys", "list"}, getenv, &out, io.Discard); err != nil || !strings.Contains(out.String(), prefix) || strings.Contains(out.String(), key) {
		t.Fatalf("keys list = %v:\n%s\nwant the prefix %s and never the key", err, out.String(), prefix)
	}
	if err := run(context.Background(), []string{"keys", "revoke", prefix}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatalf("keys revoke: %v", err)
	}
	if err := run(context.Background(), []string{"keys", "revoke", prefix}, getenv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no live key") {
		t.Errorf("second revoke = %v, want no live key", err)
	}
	base2, _, _ := serve(t, getenv)
	if code, _ := call(t, "GET", base2+"/v1/sdk/config", key, ""); code != 401 {
		t.Errorf("revoked key = %d, want 401", code)
	}

	out.Reset()
	if err := run(context.Background(), []string{"migrate", "status"}, getenv, &out, io.Discard); err != nil {
		t.Fatalf("migrate status: %v", err)
	}
	if !strings.Contains(out.String(), "applied") || strings.Contains(out.String(), "pending") {
		t.Errorf("migrate status =\n%s\nwant every migration applied", out.String())
	}
	wantUsageErrors(t, getenv, []string{}, []string{"nope"}, []string{"keys", "create", "--scope", "root"},
		[]string{"keys", "create", "--scope", "Viewer"}, []string{"keys", "revoke"},
		[]string{"keys", "list", "x"}, []string{"migrate", "down"}, []string{"serve", "--bogus"})
}

// wantUsageErrors checks that running flywheel with each of argss is a
// usage error (exit 2).
func wantUsageErrors(t *testing.T, getenv func(string) string, argss ...[]string) {
	t.Helper()
	for _, args := range argss {
		if err := run(context.Background(), args, getenv, io.Discard, io.Discard); exitCode(err) != 2 {
			t.Errorf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := loadConfig(env("FLYWHEEL_ADDR", "nope", "DATABASE_URL", "mysql://x", "FLYWHEEL_LOG_LEVEL", "loud",
		"FLYWHEEL_SHUTDOWN_TIMEOUT", "soon", "FLYWHEEL_INIT_ADMIN_KEY", "short"))
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want every problem")
	}
	for _, want := range []string{"addr", "DATABASE_URL", "FLYWHEEL_LOG_LEVEL", "FLYWHEEL_SHUTDOWN_TIMEOUT", "FLYWHEEL_INIT_ADMIN_KEY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

// TestEmbeddedDefault runs serve with no DATABASE_URL: it must start its
// own cluster in the data folder and stop it on exit.
func TestEmbeddedDefault(t *testing.T) {
	// As root the cluster runs as the postgres user, who must reach the
	// folder: t.TempDir's parent is private, so make one beside it.
	dir, err := os.MkdirTemp("", "flywheel-embedded-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	getenv := env("FLYWHEEL_DATA_DIR", dir+"/pgdata", "FLYWHEEL_INIT_ADMIN_KEY", "fw_admin_embedded_0123456789")
	base, logs, stop := serve(t, getenv)
	if code, _ := call(t, "GET", base+"/readyz", "", ""); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	if code, _ := call(t, "GET", base+"/v1/experiments", "fw_admin_embedded_0123456789", ""); code != 200 {
		t.Fatalf("list = %d", code)
	}
	// A second command on the same folder joins the running cluster.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keys", "create", "--scope", "admin"}, getenv, &out, io.Discard); err != nil {
		t.Fatalf("keys create while serving: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if code, _ := call(t, "GET", base+"/v1/experiments", lines[len(lines)-1], ""); code != 200 {
		t.Fatalf("list with the new key = %d", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !strings.Contains(logs.String(), dir+"/pgdata") {
		t.Errorf("logs do not name the data folder:\n%s", logs.String())
	}
	// Whether the cluster has huge pages decides how slow a new
	// connection's first queries are (README, "Huge pages"); Linux says.
	if runtime.GOOS == "linux" && !strings.Contains(logs.String(), "huge_pages") {
		t.Errorf("logs do not say whether the cluster has huge pages:\n%s", logs.String())
	}
	if _, err := os.Stat(dir + "/pgdata/postmaster.pid"); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid still there after stop (err %v): the cluster was not stopped", err)
	}
}

// TestNewerSchemaRefused: against a database that a newer flywheel
// migrated, serve and migrate fail at once, saying what to do, and change
// nothing (not even the init key).
func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	list, err := migrations.List(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	known := list[len(list)-1].Version
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, known+1); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("database schema is at version %d, newer than this flywheel knows (%d): run a newer flywheel, or point DATABASE_URL", known+1, known)
	getenv := env("DATABASE_URL", url, "FLYWHEEL_INIT_ADMIN_KEY", "fw_admin_newer_schema_0123456789")
	for _, args := range [][]string{{"serve", "--addr", "127.0.0.1:0"}, {"migrate"}, {"migrate", "status"}} {
		runCtx, cancel := context.WithTimeout(ctx, time.Minute)
		var err error
		if args[0] == "serve" {
			err = runServe(runCtx, args[1:], getenv, io.Discard, io.Discard, func(addr string) {
				t.Errorf("serve listened on %s against a newer schema", addr)
				cancel()
			})
		} else {
			err = run(runCtx, args, getenv, io.Discard, io.Discard)
		}
		cancel()
		if err == nil || !strings.Contains(err.Error(), want) || exitCode(err) != 1 {
			t.Errorf("flywheel %s = %v (exit %d), want exit 1 and %q", strings.Join(args, " "), err, exitCode(err), want)
		}
	}
	var keys, version int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM api_keys), (SELECT max(version_id) FROM goose_db_version)`).Scan(&keys, &version); err != nil {
		t.Fatal(err)
	}
	if keys != 0 || version != known+1 {
		t.Errorf("after the refusals: %d api keys, schema version %d; want 0 and %d (nothing changed)", keys, version, known+1)
	}
}

// runBenchJSON runs a `flywheel bench` command with args (which end in
// --json) and returns its report, decoded, and what it printed on stderr.
func runBenchJSON[T any](t *testing.T, args []string, getenv func(string) string) (T, string) {
	t.Helper()
	var out, errs bytes.Buffer
	var rep T
	if err := run(context.Background(), args, getenv, &out, &errs); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args[:2], " "), err, out.String(), errs.String())
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	return rep, errs.String()
}
