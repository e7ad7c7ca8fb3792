package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/assign"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/store"
)

// newID returns a fresh time-ordered event id.
func newID(t testing.TB) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// sql runs a query on the test database and returns the first column of
// the first row as text.
func (a *testAPI) sql(q string, args ...any) string {
	a.t.Helper()
	conn, err := pgx.Connect(context.Background(), a.url)
	if err != nil {
		a.t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var out string
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&out); err != nil {
		a.t.Fatalf("%s: %v", q, err)
	}
	return out
}

// runningExperiment creates and starts an experiment on customers.
func (a *testAPI) runningExperiment(key string) {
	a.t.Helper()
	b := experimentBody(key)
	b["metrics"], b["targeting"], b["overrides"] = map[string]any{}, nil, map[string]any{}
	a.must(201, "POST", "/v1/experiments", b)
	a.must(200, "POST", "/v1/experiments/"+key+"/start", nil)
}

type eventsAnswer struct {
	Accepted, Duplicates, Dropped int
	Rejected                      []struct {
		Index int
		Error struct{ Code, Field, Message string }
	}
}

func (a *testAPI) postEvents(key string, body any, headers ...string) eventsAnswer {
	a.t.Helper()
	r := a.do("POST", "/v1/events", key, body, headers...)
	if r.Status != 200 {
		a.t.Fatalf("POST /v1/events = %d: %s", r.Status, r.Body)
	}
	var ans eventsAnswer
	if err := json.Unmarshal(r.Body, &ans); err != nil {
		a.t.Fatal(err)
	}
	return ans
}

func TestEventsMixedBatch(t *testing.T) {
	a := newTestAPI(t)
	a.runningExperiment("exp")
	now := time.Now().UTC()
	dup := newID(t)
	events := []map[string]any{
		{"id": newID(t), "type": "exposure", "experiment": "exp", "variant": "green", "unit_type": "customer", "unit_id": "c-1", "attributes": map[string]any{"device": "mobile"}},
		{"id": newID(t), "type": "track", "event": "purchase", "value": 59.9, "unit_type": "customer", "unit_id": "c-1", "timestamp": now.Format(time.RFC3339)},
		{"id": newID(t), "type": "exposure", "experiment": "nope", "variant": "green", "unit_type": "customer", "unit_id": "c-1"},
		{"id": "not-a-uuid", "type": "track", "event": "x", "unit_type": "customer", "unit_id": "c-1"},
		{"id": newID(t), "type": "track", "event": "x", "unit_type": "customer", "unit_id": "c-1", "timestamp": now.Add(48 * time.Hour).Format(time.RFC3339)},
		{"id": dup, "type": "identify", "unit_type": "device", "unit_id": "d-9", "customer_id": "c-1"},
		{"id": dup, "type": "identify", "unit_type": "device", "unit_id": "d-9", "customer_id": "c-1"},
		{"id": newID(t), "type": "exposure", "experiment": "exp", "variant": "blue", "unit_type": "customer", "unit_id": "c-2"},
	}
	ans := a.postEvents(a.sdk, map[string]any{"events": events})
	if ans.Accepted != 3 || ans.Duplicates != 1 || len(ans.Rejected) != 4 {
		t.Fatalf("answer = %+v, want 3 accepted, 1 duplicate, 4 rejected", ans)
	}
	wantRejected := map[int]string{2: "experiment", 3: "id", 4: "timestamp", 7: "variant"}
	for _, r := range ans.Rejected {
		if wantRejected[r.Index] != r.Error.Field || r.Error.Code != "invalid_argument" || r.Error.Message == "" {
			t.Errorf("rejected[%d] = %+v, want field %q", r.Index, r.Error, wantRejected[r.Index])
		}
	}
	if n := a.sql(`SELECT count(*)::text FROM events`); n != "3" {
		t.Errorf("events stored = %s, want 3", n)
	}
	if v := a.sql(`SELECT variant || ' ' || (attributes->>'device') FROM exposures WHERE experiment = 'exp' AND unit_id = 'c-1'`); v != "green mobile" {
		t.Errorf("first exposure = %q, want green with its attributes", v)
	}
	// The same request again: everything valid is a duplicate.
	ans = a.postEvents(a.sdk, map[string]any{"events": events})
	if ans.Accepted != 0 || ans.Duplicates != 4 {
		t.Errorf("retry = %+v, want 0 accepted and 4 duplicates", ans)
	}
	if n := a.sql(`SELECT count(*)::text FROM events`); n != "3" {
		t.Errorf("events after retry = %s, want 3", n)
	}
}

func TestEventsNDJSON(t *testing.T) {
	a := newTestAPI(t)
	lines := []string{
		fmt.Sprintf(`{"id":%q,"type":"track","event":"visit","unit_type":"device","unit_id":"d-1"}`, newID(t)),
		`{"id": "broken", "type":`,
		``,
		fmt.Sprintf(`{"id":%q,"type":"track","event":"visit","unit_type":"device","unit_id":"d-2"}`, newID(t)),
	}
	ans := a.postEvents(a.sdk, strings.Join(lines, "\n"), "Content-Type", "application/x-ndjson")
	if ans.Accepted != 2 || len(ans.Rejected) != 1 || ans.Rejected[0].Index != 1 {
		t.Fatalf("answer = %+v, want 2 accepted and line index 1 rejected", ans)
	}
}

func TestEventsBadRequests(t *testing.T) {
	a := newTestAPI(t)
	many := make([]any, 10001)
	for i := range many {
		many[i] = map[string]any{}
	}
	for _, tt := range []struct {
		name string
		body any
		want int
	}{
		{"not json", `{"events": [`, 400},
		{"no events", `{}`, 400},
		{"events not an array", `{"events": 5}`, 400},
		{"too many", map[string]any{"events": many}, 413},
		{"too large", `{"events": ["` + strings.Repeat("x", 6<<20) + `"]}`, 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do("POST", "/v1/events", a.sdk, tt.body)
			if r.Status != tt.want {
				t.Fatalf("= %d, want %d: %.300s", r.Status, tt.want, r.Body)
			}
			r.errorOf(t)
		})
	}
	if n := a.sql(`SELECT count(*)::text FROM events`); n != "0" {
		t.Errorf("events stored = %s, want 0", n)
	}
}

// TestEventsConcurrentRetries sends the same batch from many clients at
// once: each event is stored exactly once and acknowledged as new once.
func TestEventsConcurrentRetries(t *testing.T) {
	a := newTestAPI(t)
	var events []map[string]any
	for i := range 300 {
		events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "value": float64(i), "unit_type": "customer", "unit_id": fmt.Sprintf("c-%d", i%50)})
	}
	body := map[string]any{"events": events}
	var mu sync.Mutex
	accepted, duplicates := 0, 0
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			ans := a.postEvents(a.sdk, body)
			mu.Lock()
			accepted += ans.Accepted
			duplicates += ans.Duplicates
			mu.Unlock()
		})
	}
	wg.Wait()
	if accepted != 300 || duplicates != 300*11 {
		t.Errorf("accepted %d, duplicates %d; want 300 and %d", accepted, duplicates, 300*11)
	}
	if n := a.sql(`SELECT count(*)::text || ' ' || count(DISTINCT id)::text || ' ' || sum(value)::text FROM events`); n != "300 300 44850" {
		t.Errorf("events (count, distinct ids, sum) = %s, want 300 300 44850", n)
	}
}

func TestConsentAndErasure(t *testing.T) {
	a := newTestAPI(t)
	a.runningExperiment("exp")
	post := func(evs ...map[string]any) eventsAnswer {
		for _, e := range evs {
			e["id"] = newID(t)
		}
		return a.postEvents(a.sdk, map[string]any{"events": evs})
	}
	post(
		map[string]any{"type": "exposure", "experiment": "exp", "variant": "green", "unit_type": "customer", "unit_id": "c-1"},
		map[string]any{"type": "track", "event": "purchase", "unit_type": "customer", "unit_id": "c-1"},
		map[string]any{"type": "identify", "unit_type": "device", "unit_id": "phone-1", "customer_id": "c-1"},
		map[string]any{"type": "identify", "unit_type": "device", "unit_id": "laptop-1", "customer_id": "c-1"},
		map[string]any{"type": "track", "event": "visit", "unit_type": "device", "unit_id": "phone-1"},
		map[string]any{"type": "identify", "unit_type": "customer", "unit_id": "c-1", "customer_id": "c-main"},
		map[string]any{"type": "track", "event": "visit", "unit_type": "customer", "unit_id": "c-other"},
		// tablet-1 links first to c-other, so c-1 is only named in its later identify event.
		map[string]any{"type": "identify", "unit_type": "device", "unit_id": "tablet-1", "customer_id": "c-other", "timestamp": time.Now().Add(-time.Hour).Format(time.RFC3339)},
		map[string]any{"type": "identify", "unit_type": "device", "unit_id": "tablet-1", "customer_id": "c-1"},
	)
	// A chain resolves to one customer.
	info := a.must(200, "GET", "/v1/units/device/phone-1", nil)
	if info["customer"] != "c-main" || info["events"] != 2.0 {
		t.Errorf("unit report = %v, want customer c-main and 2 events (its link and its visit)", info)
	}

	// Opt out: never enrolled, new events dropped and counted.
	a.must(200, "PUT", "/v1/units/customer/c-1/consent", map[string]any{"analytics": false})
	r := a.do("POST", "/v1/assign", a.sdk, map[string]any{"unit_type": "customer", "unit_id": "c-1", "experiments": []string{"exp"}})
	if got := r.json(t)["assignments"].([]any)[0].(map[string]any); got["reason"] != "opted_out" || got["enrolled"] != false {
		t.Errorf("assign opted out = %v, want reason opted_out", got)
	}
	if ans := post(map[string]any{"type": "track", "event": "purchase", "unit_type": "customer", "unit_id": "c-1"}); ans.Dropped != 1 || ans.Accepted != 0 {
		t.Errorf("opted-out event = %+v, want dropped", ans)
	}
	if m := a.do("GET", "/metrics", "", nil); !strings.Contains(string(m.Body), `flywheel_events_total{outcome="dropped_opted_out",type="track"} 1`) {
		t.Errorf("metrics lack the dropped count:\n%.3000s", m.Body)
	}
	if r := a.do("PUT", "/v1/units/customer/c-1/consent", a.sdk, map[string]any{"analytics": true}); r.Status != 403 {
		t.Errorf("consent with an sdk key = %d, want 403", r.Status)
	}

	// Erase the customer: everything of it and of its linked ids goes.
	er := a.must(200, "DELETE", "/v1/units/customer/c-1", nil)["erased"].(map[string]any)
	if er["events"] != 7.0 || er["exposures"] != 1.0 || er["aliases"] != 3.0 || er["consent"] != 1.0 || er["units"] != 4.0 {
		t.Errorf("erased = %v, want 7 events (with tablet-1's identify naming c-1), 1 exposure, 3 aliases, 1 consent, 4 units", er)
	}
	for _, q := range []string{
		`SELECT count(*)::text FROM events WHERE unit_id IN ('c-1', 'phone-1', 'laptop-1', 'c-main') OR customer_id IN ('c-1', 'c-main')`,
		`SELECT count(*)::text FROM event_ids WHERE unit_id IN ('c-1', 'phone-1', 'laptop-1', 'c-main')`,
		`SELECT count(*)::text FROM exposures WHERE unit_id IN ('c-1', 'phone-1', 'laptop-1', 'c-main')`,
		`SELECT count(*)::text FROM aliases WHERE unit_id IN ('c-1', 'phone-1', 'laptop-1') OR customer_id IN ('c-1', 'c-main')`,
		`SELECT count(*)::text FROM consent WHERE unit_id IN ('c-1', 'phone-1', 'laptop-1', 'c-main')`,
		`SELECT count(*)::text FROM audit_log WHERE details::text ~ '(c-1|phone-1|laptop-1|c-main)'`,
	} {
		if n := a.sql(q); n != "0" {
			t.Errorf("%s = %s, want 0", q, n)
		}
	}
	if n := a.sql(`SELECT count(*)::text FROM events WHERE unit_id = 'c-other'`); n != "1" {
		t.Errorf("another unit's events = %s, want untouched", n)
	}
	if n := a.sql(`SELECT count(*)::text FROM audit_log WHERE action = 'erase_unit' AND actor = 'alice'`); n != "1" {
		t.Errorf("erasure audit rows = %s, want 1", n)
	}
}

func TestPseudonymisedIDs(t *testing.T) {
	a := newTestAPI(t, apiOptions{hmacKey: "a-secret-key-of-at-least-32-characters!"})
	a.runningExperiment("exp")
	a.postEvents(a.sdk, map[string]any{"events": []map[string]any{
		{"id": newID(t), "type": "exposure", "experiment": "exp", "variant": "green", "unit_type": "customer", "unit_id": "alice@example.com"},
		{"id": newID(t), "type": "identify", "unit_type": "device", "unit_id": "phone-of-alice", "customer_id": "alice@example.com"},
	}})
	r := a.do("POST", "/v1/assign", a.sdk, map[string]any{"unit_type": "customer", "unit_id": "bob@example.com", "log_exposure": true})
	if r.Status != 200 {
		t.Fatalf("assign = %d %s", r.Status, r.Body)
	}
	dump := a.sql(`SELECT concat_ws(' ', (SELECT string_agg(e::text, ' ') FROM events e), (SELECT string_agg(x::text, ' ') FROM exposures x),
		(SELECT string_agg(l::text, ' ') FROM aliases l), (SELECT string_agg(i::text, ' ') FROM event_ids i))`)
	for _, raw := range []string{"alice", "bob", "phone-of"} {
		if strings.Contains(dump, raw) {
			t.Errorf("a raw id (%s) is stored: %s", raw, dump)
		}
	}
	// Every API still takes raw ids.
	info := a.must(200, "GET", "/v1/units/device/phone-of-alice", nil)
	if c, _ := info["customer"].(string); len(c) != 64 {
		t.Errorf("resolved customer = %v, want the pseudonym of alice", info["customer"])
	}
	if er := a.must(200, "DELETE", "/v1/units/customer/alice@example.com", nil)["erased"].(map[string]any); er["events"] != 2.0 {
		t.Errorf("erasure by raw id = %v, want 2 events", er)
	}
}

func TestAssignLogExposure(t *testing.T) {
	a := newTestAPI(t)
	a.runningExperiment("exp")
	for range 2 {
		r := a.do("POST", "/v1/assign", a.sdk, map[string]any{"unit_type": "customer", "unit_id": "c-7", "attributes": map[string]any{"country": "FR"}, "log_exposure": true})
		if r.Status != 200 {
			t.Fatalf("assign = %d %s", r.Status, r.Body)
		}
	}
	if n := a.sql(`SELECT count(*)::text || ' ' || (SELECT count(*) FROM events WHERE type = 'exposure' AND unit_id = 'c-7')::text || ' ' || max(attributes->>'country') FROM exposures WHERE unit_id = 'c-7'`); n != "1 2 FR" {
		t.Errorf("exposures (rows, events, country) = %s, want 1 2 FR", n)
	}
}

// TestOptOutOutlivesErasure: a unit that opted out and was erased stays
// opted out when it comes back, for this server, for a server started
// afterwards and for SDKs (the opt-out feed), with ids pseudonymised; it
// ends only when the unit consents again. The feed carries tokens, never
// ids.
func TestOptOutOutlivesErasure(t *testing.T) {
	const hmacKey = "a-secret-key-of-at-least-32-characters!"
	a := newTestAPI(t, apiOptions{hmacKey: hmacKey})
	a.runningExperiment("exp")
	token := fmt.Sprintf("%016x", assign.OptOutToken("customer", "c-back"))
	assignReason := func(srvURL string) string {
		t.Helper()
		b := a.doURL(srvURL, "POST", "/v1/assign", a.sdk, map[string]any{"unit_type": "customer", "unit_id": "c-back", "experiments": []string{"exp"}})
		return b.json(t)["assignments"].([]any)[0].(map[string]any)["reason"].(string)
	}
	track := func(srvURL string) eventsAnswer {
		t.Helper()
		r := a.doURL(srvURL, "POST", "/v1/events", a.sdk, map[string]any{"events": []map[string]any{
			{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": "c-back"}}})
		var ans eventsAnswer
		if err := json.Unmarshal(r.Body, &ans); err != nil || r.Status != 200 {
			t.Fatalf("POST /v1/events = %d %s", r.Status, r.Body)
		}
		return ans
	}
	type feed struct {
		OptedOut []string `json:"opted_out"`
		OptedIn  []string `json:"opted_in"`
		Cursor   string
		More     bool
	}
	readFeed := func(query string) feed {
		t.Helper()
		r := a.do("GET", "/v1/sdk/opt-outs"+query, a.sdk, nil)
		var f feed
		if err := json.Unmarshal(r.Body, &f); err != nil || r.Status != 200 {
			t.Fatalf("GET /v1/sdk/opt-outs%s = %d %s", query, r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), "c-back") {
			t.Errorf("the opt-out feed names a unit id: %s", r.Body)
		}
		return f
	}

	if got := assignReason(a.srv.URL); got != "bucket" {
		t.Fatalf("before opting out, assign reason = %s", got)
	}
	a.must(200, "PUT", "/v1/units/customer/c-back/consent", map[string]any{"analytics": false})
	a.must(200, "PUT", "/v1/units/customer/c-stays/consent", map[string]any{"analytics": false})
	if f := readFeed(""); !slices.Contains(f.OptedOut, token) || len(f.OptedOut) != 2 || f.More {
		t.Errorf("feed = %+v, want c-back's token %s among the 2 opted out", f, token)
	}
	// Pages: one change each, then caught up.
	p1 := readFeed("?limit=1")
	p2 := readFeed("?limit=1&cursor=" + p1.Cursor)
	p3 := readFeed("?limit=1&cursor=" + p2.Cursor)
	if !p1.More || !p2.More || len(p1.OptedOut)+len(p2.OptedOut) != 2 || len(p3.OptedOut) != 0 || p3.More {
		t.Errorf("pages of one = %+v / %+v / %+v, want two changes then none", p1, p2, p3)
	}
	if r := a.do("GET", "/v1/sdk/opt-outs?cursor=nonsense", a.sdk, nil); r.Status != 400 {
		t.Errorf("a bad cursor = %d, want 400", r.Status)
	}

	er := a.must(200, "DELETE", "/v1/units/customer/c-back", nil)["erased"].(map[string]any)
	if er["consent"] != 1.0 || er["opt_outs_kept"] != 1.0 {
		t.Errorf("erased = %v, want its consent record erased and its opt-out kept", er)
	}
	// It comes back: still opted out, here and on a server started now.
	if got := assignReason(a.srv.URL); got != "opted_out" {
		t.Errorf("after erasure, assign reason = %s, want opted_out", got)
	}
	if ans := track(a.srv.URL); ans.Dropped != 1 || ans.Accepted != 0 {
		t.Errorf("after erasure, an event = %+v, want dropped", ans)
	}
	second, err := app.New(context.Background(), app.Config{DatabaseURL: a.url, IDHMACKey: hmacKey, AggregateEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(second.Handler)
	t.Cleanup(func() { srv2.Close(); _ = second.Close(context.Background()) })
	if got := assignReason(srv2.URL); got != "opted_out" {
		t.Errorf("a server started after the erasure assigns reason %s, want opted_out", got)
	}
	if ans := track(srv2.URL); ans.Dropped != 1 {
		t.Errorf("a server started after the erasure: event = %+v, want dropped", ans)
	}
	if f := readFeed(""); !slices.Contains(f.OptedOut, token) || slices.Contains(f.OptedIn, token) {
		t.Errorf("feed after erasure = %+v, want c-back's token still opted out", f)
	}
	// The tombstone holds neither the raw nor the pseudonymised id.
	pseudo := a.ids.ID("c-back")
	if dump := a.sql(`SELECT coalesce(string_agg(t::text, ' '), '') FROM consent_tombstones t`); dump == "" || strings.Contains(dump, "c-back") || strings.Contains(dump, pseudo) {
		t.Errorf("tombstones = %q: want one, without the id in any form", dump)
	}

	// It consents again: enrolled, and SDKs reading on from their cursor
	// learn it.
	cursor := readFeed("").Cursor
	a.must(200, "PUT", "/v1/units/customer/c-back/consent", map[string]any{"analytics": true})
	if got := assignReason(a.srv.URL); got != "bucket" {
		t.Errorf("after opting back in, assign reason = %s, want bucket", got)
	}
	if f := readFeed("?cursor=" + cursor); !slices.Contains(f.OptedIn, token) || slices.Contains(f.OptedOut, token) {
		t.Errorf("feed from the last cursor = %+v, want c-back's token opted in", f)
	}
	if n := a.sql(`SELECT count(*)::text FROM consent_tombstones`); n != "0" {
		t.Errorf("%s tombstones after opting back in, want 0", n)
	}
}

// TestEraseDuringALongCycle: while an aggregation cycle holds its lock (the
// first build of a large experiment takes minutes), DELETE answers 202 with
// the request to poll instead of timing out, erases nothing in part, and
// the background finishes the erasure once the cycle ends.
func TestEraseDuringALongCycle(t *testing.T) {
	a := newTestAPI(t, apiOptions{eraseWait: 100 * time.Millisecond})
	a.runningExperiment("exp")
	a.postEvents(a.sdk, map[string]any{"events": []map[string]any{
		{"id": newID(t), "type": "exposure", "experiment": "exp", "variant": "green", "unit_type": "customer", "unit_id": "c-wait"},
		{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": "c-wait"},
	}})

	conn, err := pgx.Connect(context.Background(), a.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_lock($1)`, store.AggregationLock); err != nil {
		t.Fatal(err)
	}
	r := a.do("DELETE", "/v1/units/customer/c-wait", a.admin, nil)
	if r.Status != 202 {
		t.Fatalf("DELETE during a long cycle = %d %s, want 202", r.Status, r.Body)
	}
	er := r.json(t)["erasure"].(map[string]any)
	loc := r.Header.Get("Location")
	if er["status"] != "pending" || loc != "/v1/erasures/"+er["id"].(string) || r.Header.Get("Retry-After") == "" {
		t.Fatalf("202 = %s (Location %q), want a pending request to poll", r.Body, loc)
	}
	if n := a.sql(`SELECT count(*)::text FROM events WHERE unit_id = 'c-wait'`); n != "2" {
		t.Errorf("a pending erasure deleted part of the unit: %s events left of 2", n)
	}
	if got := a.must(200, "GET", loc, nil); got["status"] != "pending" || got["erased"] != nil {
		t.Errorf("GET %s = %v, want pending", loc, got)
	}
	if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, store.AggregationLock); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if got = a.must(200, "GET", loc, nil); got["status"] == "done" || time.Now().After(deadline) {
			break
		}
	}
	erased, _ := got["erased"].(map[string]any)
	if got["status"] != "done" || erased["events"] != 2.0 || erased["exposures"] != 1.0 || got["done_at"] == nil {
		t.Fatalf("GET %s after the cycle = %v, want done with 2 events and 1 exposure", loc, got)
	}
	if n := a.sql(`SELECT count(*)::text FROM events WHERE unit_id = 'c-wait'`); n != "0" {
		t.Errorf("%s events of the unit left after the erasure", n)
	}
	if r := a.do("GET", "/v1/erasures/0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a", a.admin, nil); r.Status != 404 {
		t.Errorf("GET an unknown erasure = %d, want 404", r.Status)
	}
	if r := a.do("GET", loc, a.sdk, nil); r.Status != 403 {
		t.Errorf("GET an erasure with an sdk key = %d, want 403", r.Status)
	}
	// Without a cycle in the way, DELETE answers the counts at once.
	if r := a.do("DELETE", "/v1/units/customer/c-none", a.admin, nil); r.Status != 200 || r.json(t)["erasure"].(map[string]any)["status"] != "done" {
		t.Errorf("DELETE with no cycle running = %d %s, want 200 done", r.Status, r.Body)
	}
}
