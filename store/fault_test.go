package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/api"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/internal/pgserver"
	"github.com/flywheel-oss/flywheel/live"
	"github.com/flywheel-oss/flywheel/migrations"
	"github.com/flywheel-oss/flywheel/store"
)

// The fault tests drive POST /v1/events of a real server on a private
// PostgreSQL cluster of their own (durable settings, a fixed port so that it
// can be restarted in place) while the database goes away, and then check
// the contract: every acknowledged event is stored exactly once, and
// nothing else is.
const (
	faultClients = 8   // concurrent senders
	faultBatches = 8   // acknowledged batches each sender needs
	faultBatch   = 200 // events a batch
	faultTimeout = 50 * time.Second
	sdkKey       = "fw_sdk_fault_test_key_0123456789"
)

// faultEnv is a cluster, a store on it and an HTTP server in front.
type faultEnv struct {
	t       *testing.T
	opts    pgserver.Options
	mu      sync.Mutex
	cluster *pgserver.Cluster
	url     string
	db      *store.DB
	srv     *httptest.Server
}

// freePort asks the kernel for a port that is free now.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// clusterDir returns a fresh data folder whose parent the postgres OS user
// can traverse when the tests run as root (t.TempDir's folders are 0700).
func clusterDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "flywheel-fault-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pgdata")
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var initCache string
	if dir, err := os.UserCacheDir(); err == nil {
		initCache = filepath.Join(dir, "flywheel", "pgtest")
	}
	e := &faultEnv{t: t, opts: pgserver.Options{
		Dir:       clusterDir(t),
		Port:      freePort(t),
		Fast:      false, // a restart must keep what was committed
		Settings:  map[string]string{"shared_buffers": "32MB", "max_connections": "50"},
		InitCache: initCache,
	}}
	e.start(ctx)
	t.Cleanup(e.stop)

	admin, err := pgx.Connect(ctx, e.cluster.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE flywheel"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	e.url = e.cluster.URL("flywheel")
	if err := migrations.Up(ctx, e.url); err != nil {
		t.Fatalf("migrations.Up: %v", err)
	}
	e.db, err = store.Open(ctx, e.url, store.Options{MaxConns: 8})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(e.db.Close)
	if err := e.db.EnsureKey(ctx, "app", flywheel.ScopeSDK, sdkKey); err != nil {
		t.Fatalf("EnsureKey: %v", err)
	}
	if _, err := e.db.EnsurePartitions(ctx, time.Now(), 1, 2); err != nil {
		t.Fatalf("EnsurePartitions: %v", err)
	}
	reg := live.New(e.db)
	if err := reg.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	optOuts := ingest.NewOptOuts(e.db)
	if err := optOuts.Refresh(ctx); err != nil {
		t.Fatalf("OptOuts: %v", err)
	}
	in := ingest.New(e.db, ingest.Options{})
	e.srv = httptest.NewServer(api.NewServer(api.Deps{
		Store: e.db, Live: reg, Units: e.db, Ingest: in, OptOuts: optOuts, Validator: &ingest.Validator{},
	}))
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := in.Close(ctx); err != nil {
			t.Errorf("ingester Close: %v", err)
		}
	})
	return e
}

func (e *faultEnv) start(ctx context.Context) {
	e.t.Helper()
	c, err := pgserver.Start(ctx, e.opts)
	if err != nil {
		e.t.Fatalf("pgserver.Start: %v", err)
	}
	e.mu.Lock()
	e.cluster = c
	e.mu.Unlock()
}

func (e *faultEnv) stop() {
	e.mu.Lock()
	c := e.cluster
	e.mu.Unlock()
	if err := c.Stop(); err != nil {
		e.t.Errorf("pgserver Stop: %v", err)
	}
}

// restart stops the cluster, waits, and starts it again on the same folder
// and port. It runs in its own goroutine: errors are returned.
func (e *faultEnv) restart(ctx context.Context, down time.Duration) error {
	e.mu.Lock()
	c := e.cluster
	e.mu.Unlock()
	if err := c.Stop(); err != nil {
		return err
	}
	time.Sleep(down) // the outage itself
	c2, err := pgserver.Start(ctx, e.opts)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.cluster = c2
	e.mu.Unlock()
	return nil
}

// ledger is what the senders know: every id sent, every id acknowledged.
type ledger struct {
	mu        sync.Mutex
	sent      map[uuid.UUID]int // id -> sender
	acked     map[uuid.UUID]bool
	accepted  int // sum of "accepted" over acknowledged answers
	batches   atomic.Int64
	retryable atomic.Int64 // 503 answers
	retried   atomic.Int64 // batches sent more than once
	last503   atomic.Value // the last 503 answer, for the log
}

// sender posts faultBatches batches, each retried until acknowledged.
func (e *faultEnv) sender(ctx context.Context, client int, l *ledger) error {
	hc := &http.Client{Timeout: 20 * time.Second}
	for b := range faultBatches {
		ids := make([]uuid.UUID, faultBatch)
		events := make([]map[string]any, faultBatch)
		for i := range events {
			ids[i] = uuid.Must(uuid.NewV7())
			events[i] = map[string]any{
				"id": ids[i].String(), "type": "track", "event": "purchase", "value": float64(i),
				"unit_type": "customer", "unit_id": fmt.Sprintf("client-%d-%d", client, i%20),
			}
		}
		body, err := json.Marshal(map[string]any{"events": events})
		if err != nil {
			return err
		}
		l.mu.Lock()
		for _, id := range ids {
			l.sent[id] = client
		}
		l.mu.Unlock()
		pause := 20 * time.Millisecond
		for attempt := 0; ; attempt++ {
			if attempt == 1 {
				l.retried.Add(1)
			}
			status, answer, retryAfter, err := post(ctx, hc, e.srv.URL+"/v1/events", body)
			if ctx.Err() != nil {
				return fmt.Errorf("client %d: batch %d not acknowledged after %d attempts: %w", client, b, attempt+1, ctx.Err())
			}
			if err == nil && status == http.StatusOK {
				var res struct {
					Accepted   int               `json:"accepted"`
					Duplicates int               `json:"duplicates"`
					Dropped    int               `json:"dropped"`
					Rejected   []json.RawMessage `json:"rejected"`
				}
				if err := json.Unmarshal(answer, &res); err != nil {
					return fmt.Errorf("client %d: answer %s: %w", client, answer, err)
				}
				if len(res.Rejected) != 0 || res.Dropped != 0 || res.Accepted+res.Duplicates != faultBatch {
					return fmt.Errorf("client %d: batch %d answered %s", client, b, answer)
				}
				l.mu.Lock()
				for _, id := range ids {
					l.acked[id] = true
				}
				l.accepted += res.Accepted
				l.mu.Unlock()
				l.batches.Add(1)
				break
			}
			if err == nil && status != http.StatusServiceUnavailable {
				return fmt.Errorf("client %d: POST /v1/events = %d (%s), want 200 or 503 while the database is down", client, status, answer)
			}
			if err == nil {
				l.retryable.Add(1)
				l.last503.Store(string(answer))
				if retryAfter == "" {
					return fmt.Errorf("client %d: 503 without Retry-After: %s", client, answer)
				}
			}
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
			pause = min(2*pause, 400*time.Millisecond)
		}
	}
	return nil
}

func post(ctx context.Context, hc *http.Client, url string, body []byte) (status int, answer []byte, retryAfter string, err error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+sdkKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer res.Body.Close()
	answer, err = io.ReadAll(res.Body)
	return res.StatusCode, answer, res.Header.Get("Retry-After"), err
}

// runLoad runs the senders while chaos does its worst, then checks the
// database against the ledger. chaos gets a channel closed when the
// senders are done, and returns an error or nil.
func (e *faultEnv) runLoad(chaos func(ctx context.Context, l *ledger, done <-chan struct{}) error) *ledger {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	l := &ledger{sent: map[uuid.UUID]int{}, acked: map[uuid.UUID]bool{}}

	done := make(chan struct{})
	chaosErr := make(chan error, 1)
	var wg sync.WaitGroup
	errs := make(chan error, faultClients)
	for c := range faultClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.sender(ctx, c, l); err != nil {
				errs <- err
				cancel() // no point in waiting for the others
			}
		}()
	}
	go func() { chaosErr <- chaos(ctx, l, done) }()
	wg.Wait()
	close(done)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("%d batches acknowledged, %d answers 503 (last: %v)", l.batches.Load(), l.retryable.Load(), l.last503.Load())
	}
	if err := <-chaosErr; err != nil {
		t.Errorf("chaos: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d batches acknowledged, %d answers 503 (last: %v), %d batches sent more than once",
		l.batches.Load(), l.retryable.Load(), l.last503.Load(), l.retried.Load())
	e.check(l)
	t.Logf("answers called %d events duplicates: committed by an attempt whose answer was lost", len(l.acked)-l.accepted)
	return l
}

// check compares the database with the ledger.
func (e *faultEnv) check(l *ledger) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatalf("connect after the load: %v", err)
	}
	defer conn.Close(ctx)
	if want := faultClients * faultBatches * faultBatch; len(l.acked) != want || len(l.sent) != want {
		t.Fatalf("%d ids acknowledged, %d sent, want %d", len(l.acked), len(l.sent), want)
	}
	for _, table := range []string{"events", "event_ids"} {
		rows, err := conn.Query(ctx, `SELECT id, unit_id, count(*) FROM `+table+` GROUP BY id, unit_id`)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[uuid.UUID]int{}
		for rows.Next() {
			var id uuid.UUID
			var unit string
			var n int
			if err := rows.Scan(&id, &unit, &n); err != nil {
				t.Fatal(err)
			}
			stored[id] += n
			if client, ok := l.sent[id]; !ok {
				t.Errorf("%s holds id %s that was never sent", table, id)
			} else if want := fmt.Sprintf("client-%d-", client); len(unit) < len(want) || unit[:len(want)] != want {
				t.Errorf("%s holds id %s under unit %q, sent by client %d", table, id, unit, client)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		lost, twice := 0, 0
		for id := range l.acked {
			switch stored[id] {
			case 1:
			case 0:
				lost++
			default:
				twice++
			}
		}
		total := 0
		for _, n := range stored {
			total += n
		}
		if lost > 0 || twice > 0 || total != len(l.acked) {
			t.Errorf("%s: %d acknowledged ids missing, %d stored more than once, %d rows for %d acknowledged ids",
				table, lost, twice, total, len(l.acked))
		}
	}
	// Answers never claim more new events than there are; an answer may
	// count fewer when an earlier attempt committed but was not answered.
	if l.accepted > len(l.acked) {
		t.Errorf("answers accepted %d events in all, more than the %d stored", l.accepted, len(l.acked))
	}
}

// waitBatches waits until n batches are acknowledged in all.
func waitBatches(ctx context.Context, l *ledger, n int64) error {
	for l.batches.Load() < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// TestIngestSurvivesRestart stops the database in the middle of the load,
// keeps it down for a second, and starts it again in place.
func TestIngestSurvivesRestart(t *testing.T) {
	e := newFaultEnv(t)
	l := e.runLoad(func(ctx context.Context, l *ledger, done <-chan struct{}) error {
		if err := waitBatches(ctx, l, faultClients); err != nil {
			return err
		}
		return e.restart(ctx, time.Second)
	})
	if l.retryable.Load() == 0 {
		t.Errorf("no request saw the database down: the test did not test the outage")
	}
}

// killEvery is the least time between two rounds of terminations: enough
// for a fresh session to connect and commit a group, so that the load makes
// progress at all.
const (
	killEvery = 40 * time.Millisecond
	killFor   = 8 * time.Second
)

// TestIngestSurvivesKilledConnections ends the server's sessions over and
// over (pg_terminate_backend) while the load runs.
func TestIngestSurvivesKilledConnections(t *testing.T) {
	e := newFaultEnv(t)
	var killed atomic.Int64
	e.runLoad(func(ctx context.Context, l *ledger, done <-chan struct{}) error {
		if err := waitBatches(ctx, l, 2); err != nil {
			return err
		}
		conn, err := pgx.Connect(ctx, e.url) // not application_name flywheel
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		// Kill for a while, then let the load finish in peace: under the
		// race detector on two cores, a session sometimes needs longer than
		// the gap between kills to commit, and the time must stay bounded.
		stop := time.After(killFor)
		for round := 0; ; round++ {
			// Mostly sessions in the middle of something (a group commit,
			// perhaps its COMMIT), now and then idle ones in the pool too.
			states := []string{"active", "idle in transaction", "idle in transaction (aborted)"}
			if round%4 == 3 {
				states = append(states, "idle")
			}
			var n int64
			err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
				FROM pg_stat_activity WHERE application_name = 'flywheel' AND pid <> pg_backend_pid()
				AND state = ANY($1)`, states).Scan(&n)
			if err != nil && ctx.Err() == nil {
				return err
			}
			killed.Add(n)
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return nil
			case <-stop:
				return nil
			case <-time.After(killEvery + time.Duration(rand.IntN(int(killEvery)))):
			}
		}
	})
	t.Logf("%d sessions terminated", killed.Load())
	if killed.Load() == 0 {
		t.Errorf("no session was terminated: the test did not test anything")
	}
}
