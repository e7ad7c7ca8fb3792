package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/migrations"
	"github.com/flywheel-oss/flywheel/sdk"
)

// The fault tests drive the whole app (internal/app, as flywheel serve
// runs it) on a private PostgreSQL cluster of their own (pgtest.NewCluster:
// durable, a fixed port so that it can be restarted in place) while the
// database goes away, and then check the contract: every acknowledged
// event is stored exactly once, and nothing else is. Raw HTTP senders post
// batches and retry them until acknowledged; meanwhile clients ask for
// assignments, an SDK client records exposures and tracks, and a watcher
// polls /readyz.
const (
	faultClients = 8   // concurrent senders
	faultBatches = 8   // acknowledged batches each sender needs
	faultBatch   = 200 // events a batch
	faultTimeout = 50 * time.Second
	faultUnits   = 50 // units the assigners and the SDK client cycle through
)

// faultEnv is a cluster, the app on it and an HTTP server in front.
type faultEnv struct {
	t       *testing.T
	cluster *pgtest.Cluster
	url     string
	srv     *apptest.Server
	down    atomic.Bool // the database is stopped (between Stop and Start)
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &faultEnv{t: t, cluster: pgtest.NewCluster(t)}
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
	// Stopped after the app (cleanups run last first).
	e.srv = apptest.Start(t, app.Config{DatabaseURL: e.url, MaxConns: 8, AggregateEvery: -1})
	e.admin(201, "POST", "/v1/metrics", `{"key": "purchase", "event": "purchase", "type": "conversion"}`)
	e.admin(201, "POST", "/v1/experiments", `{"key": "fault", "unit_type": "customer",
		"variants": [{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}], "metrics": {"primary": ["purchase"]}}`)
	e.admin(200, "POST", "/v1/experiments/fault/start", "")
	return e
}

// admin sends an admin request and fails the test unless the status is
// want.
func (e *faultEnv) admin(want int, method, path, body string) {
	e.t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	status, answer, _, err := request(context.Background(), hc, method, e.srv.URL+path, apptest.AdminKey, []byte(body))
	if err != nil || status != want {
		e.t.Fatalf("%s %s = %d %s (%v), want %d", method, path, status, answer, err, want)
	}
}

// restart stops the cluster, keeps it down for at least minDown and until
// seen holds (the clients have met the outage: the ingester retries within
// a request for a while, so a short outage may pass unseen), and starts it
// again on the same folder and port. It runs in its own goroutine: errors
// are returned.
func (e *faultEnv) restart(ctx context.Context, minDown time.Duration, seen func() bool) error {
	if err := e.cluster.Stop(); err != nil {
		return err
	}
	e.down.Store(true)
	time.Sleep(minDown) // the outage itself
	err := waitUntil(ctx, seen)
	e.down.Store(false)
	if err != nil {
		return fmt.Errorf("the clients never saw the outage: %w", err)
	}
	return e.cluster.Start(ctx)
}

// ledger is what the clients know: every id sent (with the unit prefix it
// was sent under), every id acknowledged.
type ledger struct {
	mu        sync.Mutex
	sent      map[uuid.UUID]string // id -> prefix of its unit id
	acked     map[uuid.UUID]bool
	accepted  int // sum of "accepted" over the senders' acknowledged answers
	batches   atomic.Int64
	retryable atomic.Int64 // 503 answers to the senders
	retried   atomic.Int64 // batches sent more than once
	last503   atomic.Value // the last 503 answer, for the log

	assigns, assignsDown atomic.Int64 // assignments answered; of those, while the database was down
	ready                []int        // /readyz statuses, each change once
	readyDown            atomic.Int64 // /readyz answers 503 while the database was down
	sdk503               atomic.Int64 // 503 answers to the SDK client
	sdkBatches           atomic.Int64 // 200 answers to the SDK client
}

func newLedger() *ledger {
	return &ledger{sent: map[uuid.UUID]string{}, acked: map[uuid.UUID]bool{}}
}

// sender posts faultBatches batches, each retried until acknowledged.
func (e *faultEnv) sender(ctx context.Context, client int, l *ledger) error {
	hc := &http.Client{Timeout: 20 * time.Second}
	prefix := fmt.Sprintf("client-%d-", client)
	for b := range faultBatches {
		ids := make([]uuid.UUID, faultBatch)
		events := make([]map[string]any, faultBatch)
		for i := range events {
			ids[i] = uuid.Must(uuid.NewV7())
			events[i] = map[string]any{
				"id": ids[i].String(), "type": "track", "event": "purchase", "value": float64(i),
				"unit_type": "customer", "unit_id": fmt.Sprintf("%s%d", prefix, i%20),
			}
		}
		body, err := json.Marshal(map[string]any{"events": events})
		if err != nil {
			return err
		}
		l.mu.Lock()
		for _, id := range ids {
			l.sent[id] = prefix
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
				if code := errorCode(answer); code != "unavailable" && code != "overloaded" {
					return fmt.Errorf("client %d: 503 with code %q, want unavailable: %s", client, code, answer)
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

func errorCode(answer []byte) string {
	var env struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(answer, &env)
	return env.Error.Code
}

func post(ctx context.Context, hc *http.Client, url string, body []byte) (status int, answer []byte, retryAfter string, err error) {
	return request(ctx, hc, "POST", url, apptest.SDKKey, body)
}

func request(ctx context.Context, hc *http.Client, method, url, key string, body []byte) (status int, answer []byte, retryAfter string, err error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer res.Body.Close()
	answer, err = io.ReadAll(res.Body)
	return res.StatusCode, answer, res.Header.Get("Retry-After"), err
}

// assigner asks for the assignment of faultUnits units over and over until
// done: every answer must be a 200 naming the variant the unit got before
// the load (assignment never reads the database).
func (e *faultEnv) assigner(ctx context.Context, l *ledger, want map[string]string, done <-chan struct{}) error {
	hc := &http.Client{Timeout: 20 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Millisecond):
		}
		unit := fmt.Sprintf("a-%d", i%faultUnits)
		wasDown := e.down.Load()
		variant, status, answer, err := e.assign(ctx, hc, unit)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("POST /v1/assign = %d %s (%v) (database down: %v), want 200 from memory", status, answer, err, wasDown)
		}
		if variant != want[unit] {
			return fmt.Errorf("POST /v1/assign of %s = %s, want %s as before", unit, variant, want[unit])
		}
		l.assigns.Add(1)
		if wasDown && e.down.Load() {
			l.assignsDown.Add(1)
		}
	}
}

func (e *faultEnv) assign(ctx context.Context, hc *http.Client, unit string) (variant string, status int, answer []byte, err error) {
	body := fmt.Sprintf(`{"unit_type": "customer", "unit_id": %q, "experiments": ["fault"]}`, unit)
	status, answer, _, err = post(ctx, hc, e.srv.URL+"/v1/assign", []byte(body))
	var res struct {
		Assignments []struct {
			Variant *string `json:"variant"`
		} `json:"assignments"`
	}
	if err == nil && status == http.StatusOK {
		if json.Unmarshal(answer, &res) != nil || len(res.Assignments) != 1 || res.Assignments[0].Variant == nil {
			return "", status, answer, fmt.Errorf("unexpected answer")
		}
		variant = *res.Assignments[0].Variant
	}
	return variant, status, answer, err
}

// readyWatcher polls /readyz until done, and then until it is green,
// recording each change of status. A 503 must carry Retry-After and name
// the database as unreachable.
func (e *faultEnv) readyWatcher(ctx context.Context, l *ledger, done <-chan struct{}) error {
	hc := &http.Client{Timeout: 20 * time.Second}
	finished := false
	for {
		select {
		case <-done:
			finished = true
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
		wasDown := e.down.Load()
		status, answer, retryAfter, err := request(ctx, hc, "GET", e.srv.URL+"/readyz", "", nil)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil || (status != http.StatusOK && status != http.StatusServiceUnavailable) {
			return fmt.Errorf("GET /readyz = %d %s (%v), want 200 or 503", status, answer, err)
		}
		if status == http.StatusServiceUnavailable {
			if retryAfter == "" || !strings.Contains(string(answer), `"database":"unreachable"`) {
				return fmt.Errorf("GET /readyz = 503 %s (Retry-After %q), want Retry-After and the database unreachable", answer, retryAfter)
			}
			if wasDown && e.down.Load() {
				l.readyDown.Add(1)
			}
		}
		l.mu.Lock()
		if n := len(l.ready); n == 0 || l.ready[n-1] != status {
			l.ready = append(l.ready, status)
		}
		l.mu.Unlock()
		if finished && status == http.StatusOK {
			return nil
		}
	}
}

// sdkTransport records the ids of the events the SDK client sends and
// which of them the server acknowledged (a 200 answer); a 503 must carry
// Retry-After and the code unavailable.
type sdkTransport struct {
	l    *ledger
	next http.RoundTripper
	mu   sync.Mutex
	errs []error
}

func (s *sdkTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/events" {
		return s.next.RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	var batch struct {
		Events []struct {
			ID     uuid.UUID `json:"id"`
			UnitID string    `json:"unit_id"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		s.fail(fmt.Errorf("SDK request body: %v", err))
	}
	s.l.mu.Lock()
	for _, ev := range batch.Events {
		s.l.sent[ev.ID] = "sdk-"
	}
	s.l.mu.Unlock()
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	res, err := s.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	switch res.StatusCode {
	case http.StatusOK:
		s.l.sdkBatches.Add(1)
		s.l.mu.Lock()
		for _, ev := range batch.Events {
			s.l.acked[ev.ID] = true
		}
		s.l.mu.Unlock()
	case http.StatusServiceUnavailable:
		answer, _ := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(answer))
		s.l.sdk503.Add(1)
		if res.Header.Get("Retry-After") == "" || errorCode(answer) != "unavailable" {
			s.fail(fmt.Errorf("the SDK got 503 %s (Retry-After %q), want Retry-After and unavailable", answer, res.Header.Get("Retry-After")))
		}
	default:
		s.fail(fmt.Errorf("the SDK got %d from POST /v1/events, want 200 or 503", res.StatusCode))
	}
	return res, nil
}

func (s *sdkTransport) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

// sdkClient records an exposure (through Assign) and a track for
// faultUnits units over and over until done, then closes the client, which
// must deliver every event it recorded.
func (e *faultEnv) sdkClient(ctx context.Context, l *ledger, done <-chan struct{}) (sdk.Stats, error) {
	tr := &sdkTransport{l: l, next: http.DefaultTransport}
	c, err := sdk.New(ctx, sdk.Config{URL: e.srv.URL, Key: apptest.SDKKey},
		sdk.WithHTTPClient(&http.Client{Transport: tr, Timeout: 20 * time.Second}),
		sdk.WithBatchSize(100), sdk.WithFlushInterval(20*time.Millisecond),
		sdk.WithRetryBackoff(20*time.Millisecond, 500*time.Millisecond), sdk.WithPollInterval(0))
	if err != nil {
		return sdk.Stats{}, err
	}
	defer func() { // on early returns: give up on what is left
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	}()
	if err := c.EnsureLoaded(ctx); err != nil {
		return sdk.Stats{}, err
	}
record:
	for i := 0; ; i++ {
		select {
		case <-done:
			break record
		case <-ctx.Done():
			return c.Stats(), ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		u := sdk.Unit{CustomerID: fmt.Sprintf("sdk-%d", i%faultUnits)}
		if a := c.Assign(ctx, u, "fault"); !a.Enrolled {
			return c.Stats(), fmt.Errorf("SDK Assign(%s) = %+v, want enrolled", u.CustomerID, a)
		}
		if err := c.Track(ctx, u, "purchase", float64(i), nil); err != nil {
			return c.Stats(), err
		}
	}
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = c.Close(closeCtx)
	s := c.Stats()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err == nil && len(tr.errs) > 0 {
		err = tr.errs[0]
	}
	if err == nil && (s.Dropped != 0 || s.Rejected != 0 || s.Pending != 0 || s.Sent != s.Queued) {
		err = fmt.Errorf("SDK stats %+v: want every event recorded sent, none dropped", s)
	}
	return s, err
}

// runLoad runs the senders, the assigners, the SDK client and the /readyz
// watcher while chaos does its worst, then checks the database against the
// ledger. chaos gets a channel closed when the senders are done, and
// returns an error or nil.
func (e *faultEnv) runLoad(chaos func(ctx context.Context, l *ledger, done <-chan struct{}) error) (*ledger, sdk.Stats) {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	l := newLedger()
	want := map[string]string{}
	for i := range faultUnits {
		unit := fmt.Sprintf("a-%d", i)
		variant, status, answer, err := e.assign(ctx, &http.Client{Timeout: 20 * time.Second}, unit)
		if err != nil || status != http.StatusOK {
			t.Fatalf("POST /v1/assign = %d %s (%v)", status, answer, err)
		}
		want[unit] = variant
	}

	done := make(chan struct{})
	chaosErr := make(chan error, 1)
	var wg, side sync.WaitGroup
	errs := make(chan error, faultClients+4)
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
	var sdkStats sdk.Stats
	for _, run := range []func() error{
		func() error { return e.assigner(ctx, l, want, done) },
		func() error { return e.assigner(ctx, l, want, done) },
		func() error { return e.readyWatcher(ctx, l, done) },
		func() (err error) { sdkStats, err = e.sdkClient(ctx, l, done); return err },
	} {
		side.Add(1)
		go func() {
			defer side.Done()
			if err := run(); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	go func() { chaosErr <- chaos(ctx, l, done) }()
	wg.Wait()
	close(done)
	side.Wait()
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
	t.Logf("%d assignments answered (%d while the database was down); /readyz went %v (%d answers 503 while down); "+
		"the SDK client recorded %d events, got %d answers 503 and retried %d events",
		l.assigns.Load(), l.assignsDown.Load(), l.ready, l.readyDown.Load(), sdkStats.Queued, l.sdk503.Load(), sdkStats.Retried)
	e.check(l, sdkStats)
	t.Logf("answers called %d events duplicates: committed by an attempt whose answer was lost", faultClients*faultBatches*faultBatch-l.accepted)
	return l, sdkStats
}

// check compares the database with the ledger.
func (e *faultEnv) check(l *ledger, sdkStats sdk.Stats) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatalf("connect after the load: %v", err)
	}
	defer conn.Close(ctx)
	sdkSent := 0
	for _, prefix := range l.sent {
		if prefix == "sdk-" {
			sdkSent++
		}
	}
	raw := faultClients * faultBatches * faultBatch
	if len(l.acked) != len(l.sent) || len(l.sent)-sdkSent != raw || uint64(sdkSent) != sdkStats.Queued || sdkSent == 0 {
		t.Fatalf("%d ids acknowledged, %d sent (%d by the SDK client, which recorded %d); want all acknowledged, %d from the senders",
			len(l.acked), len(l.sent), sdkSent, sdkStats.Queued, raw)
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
			if prefix, ok := l.sent[id]; !ok {
				t.Errorf("%s holds id %s that was never sent", table, id)
			} else if !strings.HasPrefix(unit, prefix) {
				t.Errorf("%s holds id %s under unit %q, sent under %s...", table, id, unit, prefix)
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
	if l.accepted > raw {
		t.Errorf("answers accepted %d events in all, more than the %d stored", l.accepted, raw)
	}
	// The SDK client's exposures reached the exposures table, one per unit.
	var exposed uint64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM exposures WHERE experiment = 'fault' AND unit_id LIKE 'sdk-%'`).Scan(&exposed); err != nil {
		t.Fatal(err)
	}
	if exposed != sdkStats.Exposures || exposed != faultUnits {
		t.Errorf("%d units of the SDK client in exposures, %d exposures logged; want %d of each", exposed, sdkStats.Exposures, faultUnits)
	}
}

// waitBatches waits until n batches are acknowledged in all.
func waitBatches(ctx context.Context, l *ledger, n int64) error {
	return waitUntil(ctx, func() bool { return l.batches.Load() >= n })
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// TestIngestSurvivesRestart stops the database in the middle of the load,
// keeps it down for a second or more (until every kind of client has met
// the outage), and starts it again in place:
// the senders and the SDK client get 503s with Retry-After and retry,
// /v1/assign keeps answering from memory, /readyz turns red and then green
// again, and afterwards every acknowledged event is stored exactly once,
// the SDK client having delivered everything it recorded.
func TestIngestSurvivesRestart(t *testing.T) {
	e := newFaultEnv(t)
	l, sdkStats := e.runLoad(func(ctx context.Context, l *ledger, done <-chan struct{}) error {
		// Every client is at work before the database goes.
		err := waitUntil(ctx, func() bool {
			l.mu.Lock()
			ready := len(l.ready) > 0
			l.mu.Unlock()
			return l.batches.Load() >= faultClients && l.sdkBatches.Load() > 0 && l.assigns.Load() > 0 && ready
		})
		if err != nil {
			return err
		}
		return e.restart(ctx, time.Second, func() bool {
			return l.sdk503.Load() > 0 && l.retryable.Load() > 0 && l.readyDown.Load() > 0 && l.assignsDown.Load() > 0
		})
	})
	if l.retryable.Load() == 0 {
		t.Errorf("no request saw the database down: the test did not test the outage")
	}
	if l.assignsDown.Load() == 0 {
		t.Errorf("no assignment was answered while the database was down")
	}
	if n := len(l.ready); n < 3 || l.ready[0] != http.StatusOK || l.ready[n-1] != http.StatusOK || l.readyDown.Load() == 0 {
		t.Errorf("/readyz went %v (%d answers 503 while the database was down), want green, red while down, then green", l.ready, l.readyDown.Load())
	}
	if sdkStats.Retried == 0 {
		t.Errorf("the SDK client never retried: it did not see the outage")
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

// TestIngestDiskFull: while the database has no disk space left (simulated
// by triggers that raise PostgreSQL's own disk_full error, SQLSTATE 53100,
// on every write of event ids and of metrics), events and definitions are
// refused with a retryable 503 that says so, nothing is stored, and the
// same requests succeed once space is back.
func TestIngestDiskFull(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	conn := pgtest.Connect(t, srv.DatabaseURL)
	exec(t, conn, `CREATE FUNCTION fault_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not extend file "base/16384/16402": No space left on device';
		END $$;
		CREATE TRIGGER fault_disk_full BEFORE INSERT ON event_ids FOR EACH STATEMENT EXECUTE FUNCTION fault_disk_full();
		CREATE TRIGGER fault_disk_full BEFORE INSERT ON metrics FOR EACH STATEMENT EXECUTE FUNCTION fault_disk_full()`)
	refusedUntilCleared(t, srv, conn, "out of disk space", func() {
		exec(t, conn, `DROP TRIGGER fault_disk_full ON event_ids; DROP TRIGGER fault_disk_full ON metrics`)
	})
}

// TestIngestReadOnly: while the database is read-only (as a standby is, or
// with default_transaction_read_only; SQLSTATE 25006), events and
// definitions are refused with a retryable 503 that says so, nothing is
// stored, and the same requests succeed once it is writable again.
func TestIngestReadOnly(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	conn := pgtest.Connect(t, srv.DatabaseURL) // connected before: stays writable
	var name string
	if err := conn.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	db := pgx.Identifier{name}.Sanitize()
	// The setting applies to new sessions: end the app's, its pool opens
	// new ones.
	terminate := `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`
	exec(t, conn, `ALTER DATABASE `+db+` SET default_transaction_read_only = on`)
	exec(t, conn, terminate)
	refusedUntilCleared(t, srv, conn, "read-only", func() {
		exec(t, conn, `ALTER DATABASE `+db+` RESET default_transaction_read_only`)
		exec(t, conn, terminate)
	})
}

func exec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// refusedUntilCleared sends a batch of events and a new metric while the
// fault lasts: every answer must be a 503 with Retry-After and the code
// unavailable, never a 200 or a 500, and (after at most a few answers for
// sessions the fault ended) with a message containing want; nothing may be
// stored. Then clear ends the fault, and the same requests, retried as a
// client would, store the events exactly once and create the metric.
func refusedUntilCleared(t *testing.T, srv *apptest.Server, conn *pgx.Conn, want string, clear func()) {
	t.Helper()
	ctx := context.Background()
	hc := &http.Client{Timeout: 30 * time.Second}
	const n = 100
	ids := make([]uuid.UUID, n)
	events := make([]map[string]any, n)
	for i := range events {
		ids[i] = uuid.Must(uuid.NewV7())
		events[i] = map[string]any{"id": ids[i].String(), "type": "track", "event": "purchase", "value": float64(i),
			"unit_type": "customer", "unit_id": fmt.Sprintf("c-%d", i%10)}
	}
	events[n-1] = map[string]any{"id": ids[n-1].String(), "type": "identify", "unit_type": "device", "unit_id": "d-1", "customer_id": "c-1"}
	batch, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		path, key string
		body      []byte
		ok        int
	}{
		{"/v1/events", apptest.SDKKey, batch, http.StatusOK},
		{"/v1/metrics", apptest.AdminKey, []byte(`{"key": "refund", "event": "refund", "type": "conversion"}`), http.StatusCreated},
	}
	for _, c := range calls {
		var last []byte
		for attempt := 1; ; attempt++ {
			status, answer, retryAfter, err := request(ctx, hc, "POST", srv.URL+c.path, c.key, c.body)
			if err != nil {
				t.Fatalf("POST %s: %v", c.path, err)
			}
			if status != http.StatusServiceUnavailable || retryAfter == "" || errorCode(answer) != "unavailable" {
				t.Fatalf("POST %s during the fault = %d %s (Retry-After %q), want 503 unavailable with Retry-After", c.path, status, answer, retryAfter)
			}
			last = answer
			if strings.Contains(string(answer), want) {
				break
			}
			if attempt == 20 {
				t.Fatalf("POST %s during the fault: 20 answers, the last %s; want one that says %q", c.path, answer, want)
			}
		}
		t.Logf("POST %s during the fault: 503 %s", c.path, last)
	}
	stored := func() (events, eventIDs, metrics int) {
		t.Helper()
		err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM events WHERE id = ANY($1)), (SELECT count(*) FROM event_ids WHERE id = ANY($1)),
			(SELECT count(*) FROM metrics WHERE key = 'refund')`, ids).Scan(&events, &eventIDs, &metrics)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if e, i, m := stored(); e+i+m != 0 {
		t.Fatalf("during the fault: %d events, %d event ids, %d metrics stored; want nothing", e, i, m)
	}

	clear()
	for _, c := range calls {
		for attempt := 1; ; attempt++ {
			status, answer, retryAfter, err := request(ctx, hc, "POST", srv.URL+c.path, c.key, c.body)
			if err != nil {
				t.Fatalf("POST %s: %v", c.path, err)
			}
			if status == c.ok {
				if c.path == "/v1/events" && !strings.Contains(string(answer), fmt.Sprintf(`"accepted":%d,"duplicates":0`, n)) {
					t.Errorf("POST /v1/events after the fault = %s, want all %d accepted", answer, n)
				}
				break
			}
			// Sessions that the fault's end closed may answer 503 once or
			// twice, as during any restart; a client retries.
			if status != http.StatusServiceUnavailable || retryAfter == "" || attempt == 20 {
				t.Fatalf("POST %s after the fault = %d %s, want %d", c.path, status, answer, c.ok)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if e, i, m := stored(); e != n || i != n || m != 1 {
		t.Errorf("after the fault: %d events, %d event ids, %d metrics stored; want %d, %d, 1", e, i, m, n, n)
	}
}
