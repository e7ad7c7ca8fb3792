package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testAPI is a real server on a fresh PostgreSQL database, with one admin,
// one sdk and one viewer key.
type testAPI struct {
	t      testing.TB
	url    string // the database
	srv    *httptest.Server
	db     *store.DB
	app    *app.App
	ids    *ingest.Pseudonymizer
	admin  string
	sdk    string
	viewer string
}

func newTestAPI(t testing.TB, options ...apiOptions) *testAPI {
	t.Helper()
	var opts apiOptions
	if len(options) > 0 {
		opts = options[0]
	}
	// No background aggregation: tests fold events in with settle, so that
	// results first come from a recomputation, then from the aggregates.
	srv := apptest.Start(t, app.Config{IDHMACKey: opts.hmacKey, AggregateEvery: -1, EraseWait: opts.eraseWait,
		StreamHeartbeat: opts.streamHeartbeat, MaxStreams: opts.maxStreams, MaxStreamsPerKey: opts.maxStreamsPerKey})
	return &testAPI{t: t, url: srv.DatabaseURL, srv: srv.HTTP, db: srv.App.DB, app: srv.App,
		ids: ingest.NewPseudonymizer(opts.hmacKey), admin: apptest.AdminKey, sdk: apptest.SDKKey, viewer: apptest.ViewerKey}
}

// settle folds every acknowledged event into the results aggregates (as
// the background aggregator would) and checks that the aggregates of
// experiment key agree with a recomputation from raw events, overall and
// by segment when one is given, and its timeseries too.
func (a *testAPI) settle(key string, segments ...string) {
	a.t.Helper()
	ctx := context.Background()
	if err := a.app.Aggregate(ctx); err != nil {
		a.t.Fatalf("aggregate: %v", err)
	}
	e, err := a.db.FindExperimentByKey(ctx, key)
	if err != nil {
		a.t.Fatal(err)
	}
	metrics, err := a.db.FindMetricsByKeys(ctx, e.Metrics.Keys())
	if err != nil {
		a.t.Fatal(err)
	}
	var overrides []string
	for id := range e.Overrides {
		overrides = append(overrides, a.ids.ID(id))
	}
	for _, seg := range append([]string{""}, segments...) {
		q := analysis.Query{Now: time.Now().UTC(), Overrides: overrides, Segment: seg}
		if err := a.db.VerifyAggregates(ctx, e, metrics, q); err != nil {
			a.t.Errorf("segment %q: %v", seg, err)
		}
	}
	if err := a.db.VerifyTimeseries(ctx, e, metrics, analysis.Query{Now: time.Now().UTC(), Overrides: overrides}); err != nil {
		a.t.Errorf("timeseries: %v", err)
	}
}

// apiOptions vary the test server.
type apiOptions struct {
	hmacKey   string
	eraseWait time.Duration
	// streamHeartbeat, maxStreams and maxStreamsPerKey set the config
	// stream's (0 = the defaults).
	streamHeartbeat              time.Duration
	maxStreams, maxStreamsPerKey int
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// errorField returns the error code and field of an error response.
func (r response) errorOf(t testing.TB) (code, field, msg string) {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("response has no error object: %s", r.Body)
	}
	code, _ = e["code"].(string)
	field, _ = e["field"].(string)
	msg, _ = e["message"].(string)
	return code, field, msg
}

// do sends a request; body is marshalled unless it is a string or []byte.
func (a *testAPI) do(method, path, key string, body any, headers ...string) response {
	a.t.Helper()
	return a.doURL(a.srv.URL, method, path, key, body, headers...)
}

// doURL is do against another server (of the same database).
func (a *testAPI) doURL(base, method, path, key string, body any, headers ...string) response {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	return a.roundTrip(base, method, path, key, rd, append([]string{"Content-Type", "application/json"}, headers...)...)
}

// roundTrip sends one request with the key and headers (name, value, ...;
// later ones win) and reads the whole answer.
func (a *testAPI) roundTrip(base, method, path, key string, rd io.Reader, headers ...string) response {
	a.t.Helper()
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		a.t.Fatalf("NewRequest: %v", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		// A stream does not end: read up to its first event.
		return response{Status: res.StatusCode, Header: res.Header, Body: readFirstEvent(a.t, res.Body)}
	}
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatalf("read body: %v", err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: raw}
}

// must sends a request and fails the test unless the status is want.
func (a *testAPI) must(want int, method, path string, body any) map[string]any {
	a.t.Helper()
	r := a.do(method, path, a.admin, body)
	if r.Status != want {
		a.t.Fatalf("%s %s = %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	if len(r.Body) == 0 {
		return nil
	}
	return r.json(a.t)
}

func (a *testAPI) createMetric(key, typ string) {
	a.t.Helper()
	a.must(http.StatusCreated, "POST", "/v1/metrics", map[string]any{"key": key, "event": key, "type": typ})
}

// experimentBody is a valid experiment definition to vary in tests.
func experimentBody(key string) map[string]any {
	return map[string]any{
		"key":        key,
		"name":       "Green checkout button",
		"hypothesis": "A green button raises purchases",
		"unit_type":  "customer",
		"variants": []any{
			map[string]any{"key": "control", "weight": 0.5},
			map[string]any{"key": "green", "weight": 0.5, "payload": map[string]any{"color": "#0a0"}},
		},
		"traffic":   1.0,
		"targeting": map[string]any{"country": map[string]any{"$in": []any{"FR", "BE"}}},
		"overrides": map[string]any{"qa-customer-1": "green"},
		"metrics":   map[string]any{"primary": []any{"purchase"}, "guardrails": []any{}, "secondary": []any{}},
		"analysis":  "fixed",
	}
}
