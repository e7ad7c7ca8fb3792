package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// listLine is one line of a list's NDJSON answer.
type listLine struct {
	UnitID   string  `json:"unit_id"`
	Variant  *string `json:"variant"`
	Enrolled bool    `json:"enrolled"`
	Reason   string  `json:"reason"`
}

// postList sends a unit list and returns the answer.
func (a *testAPI) postList(key, query, contentType, body string, headers ...string) response {
	a.t.Helper()
	path := "/v1/experiments/" + key + "/assignments"
	if query != "" {
		path += "?" + query
	}
	return a.roundTrip(a.srv.URL, "POST", path, a.admin, strings.NewReader(body), append([]string{"Content-Type", contentType}, headers...)...)
}

// ndjsonAnswer decodes an NDJSON answer, failing unless it is a 200.
func ndjsonAnswer(t testing.TB, r response) []listLine {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("assignments = %d: %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
	}
	var out []listLine
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	for dec.More() {
		var l listLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("answer line %d: %v", len(out)+1, err)
		}
		out = append(out, l)
	}
	return out
}

// listFixture is a running experiment with targeting on a saved audience
// and on country, traffic below 1, and a QA override; and a list of units
// that meets every reason.
func listFixture(t *testing.T) (*testAPI, []map[string]any) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/audiences", map[string]any{"key": "loyal", "name": "Loyal", "condition": map[string]any{"orders": map[string]any{"$gte": 3}}})
	e := experimentBody("promo")
	e["traffic"] = 0.8
	e["targeting"] = map[string]any{"$audience": "loyal", "country": map[string]any{"$in": []any{"FR", "BE"}}}
	e["overrides"] = map[string]any{"qa-1": "green"}
	a.must(http.StatusCreated, "POST", "/v1/experiments", e)
	a.must(http.StatusOK, "POST", "/v1/experiments/promo/start", nil)
	a.must(http.StatusOK, "PUT", "/v1/units/customer/c-opted/consent", map[string]any{"analytics": false})
	var rows []map[string]any
	for i := range 300 {
		attrs := map[string]any{"country": []string{"FR", "BE", "DE"}[i%3], "orders": float64(i % 5)}
		rows = append(rows, map[string]any{"unit_id": fmt.Sprintf("c-%d", i), "attributes": attrs})
	}
	rows = append(rows,
		map[string]any{"unit_id": "qa-1"},
		map[string]any{"unit_id": "c-opted", "attributes": map[string]any{"country": "FR", "orders": 9.0}},
		map[string]any{"unit_id": "accent-é,\"quoted\"", "attributes": map[string]any{"country": "BE", "orders": 4.0}},
		map[string]any{"unit_id": "qa-1"}, // twice in a list
	)
	return a, rows
}

func ndjsonList(t testing.TB, rows []map[string]any) string {
	var b strings.Builder
	for _, r := range rows {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// csvList writes rows with typed columns country and orders:number.
func csvList(t testing.TB, rows []map[string]any) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"unit_id", "country", "orders:number"})
	for _, r := range rows {
		attrs, _ := r["attributes"].(map[string]any)
		country, _ := attrs["country"].(string)
		orders := ""
		if o, ok := attrs["orders"].(float64); ok {
			orders = fmt.Sprint(o)
		}
		w.Write([]string{r["unit_id"].(string), country, orders})
	}
	w.Flush()
	return b.String()
}

// TestAssignListSameAsAssign: every unit of a list, NDJSON or CSV in, NDJSON
// or CSV out, gets, in order, exactly what POST /v1/assign answers for it:
// overrides, saved audiences, targeting, traffic, opt-outs.
func TestAssignListSameAsAssign(t *testing.T) {
	a, rows := listFixture(t)
	want := make([]listLine, len(rows))
	reasons := map[string]int{}
	for i, r := range rows {
		body := map[string]any{"unit_type": "customer", "unit_id": r["unit_id"], "attributes": r["attributes"], "experiments": []string{"promo"}}
		got := a.do("POST", "/v1/assign", a.sdk, body)
		var ans struct{ Assignments []listLine }
		if got.Status != 200 || json.Unmarshal(got.Body, &ans) != nil || len(ans.Assignments) != 1 {
			t.Fatalf("assign %v = %d %s", r["unit_id"], got.Status, got.Body)
		}
		want[i] = ans.Assignments[0]
		want[i].UnitID = r["unit_id"].(string)
		reasons[want[i].Reason]++
	}
	for _, reason := range []string{"override", "targeting", "traffic", "bucket", "opted_out"} {
		if reasons[reason] == 0 {
			t.Fatalf("the fixture meets no unit with reason %s: %v", reason, reasons)
		}
	}
	compare := func(name string, got []listLine) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d lines, want %d", name, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.UnitID != w.UnitID || g.Enrolled != w.Enrolled || g.Reason != w.Reason || (g.Variant == nil) != (w.Variant == nil) || (g.Variant != nil && *g.Variant != *w.Variant) {
				t.Errorf("%s line %d = %+v, want %+v (as /v1/assign)", name, i+1, g, w)
			}
		}
	}
	r := a.postList("promo", "", "application/x-ndjson", ndjsonList(t, rows))
	compare("ndjson", ndjsonAnswer(t, r))
	if got := r.Header.Get("X-Flywheel-Units"); got != fmt.Sprint(len(rows)) {
		t.Errorf("X-Flywheel-Units = %q, want %d", got, len(rows))
	}
	compare("csv in", ndjsonAnswer(t, a.postList("promo", "", "text/csv", csvList(t, rows))))

	r = a.postList("promo", "", "text/csv", csvList(t, rows), "Accept", "text/csv")
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv out = %d %q: %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	recs, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "unit_id,variant,enrolled,reason" {
		t.Fatalf("csv header = %v", recs[0])
	}
	var got []listLine
	for _, rec := range recs[1:] {
		l := listLine{UnitID: rec[0], Enrolled: rec[2] == "true", Reason: rec[3]}
		if rec[1] != "" {
			v := rec[1]
			l.Variant = &v
		}
		got = append(got, l)
	}
	compare("csv out", got)

	// Nothing is recorded without record_exposure.
	if n := a.sql(`SELECT count(*)::text FROM events`); n != "0" {
		t.Errorf("events after assigning without record_exposure = %s, want 0", n)
	}
}

// TestAssignListRecordExposures: with record_exposure=true each enrolled
// unit gets one exposure at sent_at, through the ingestion path (events,
// exposures, results); a retry records nothing twice; opted-out and
// unenrolled units get none.
func TestAssignListRecordExposures(t *testing.T) {
	a, rows := listFixture(t)
	sent := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	query := "record_exposure=true&sent_at=" + sent.Format(time.RFC3339)
	list := ndjsonList(t, rows)
	// The experiment started just now: an hour ago is before it.
	r := a.postList("promo", query, "application/x-ndjson", list)
	if code, field, _ := r.errorOf(t); r.Status != 400 || code != "invalid_argument" || field != "sent_at" {
		t.Fatalf("sent_at before the start = %d %s", r.Status, r.Body)
	}
	sent = time.Now().UTC().Truncate(time.Second).Add(time.Second)
	query = "record_exposure=true&sent_at=" + sent.Format(time.RFC3339)
	r = a.postList("promo", query, "application/x-ndjson", list)
	lines := ndjsonAnswer(t, r)
	enrolled := map[string]bool{}
	for _, l := range lines {
		if l.Enrolled {
			enrolled[l.UnitID] = true
		}
	}
	if !enrolled["qa-1"] {
		t.Fatalf("the unit listed twice is not enrolled: the test cannot check duplicates")
	}
	if r.Header.Get("X-Flywheel-Exposures-Recorded") != fmt.Sprint(len(enrolled)) || r.Header.Get("X-Flywheel-Exposures-Duplicates") != "1" {
		t.Errorf("recorded %q duplicates %q, want %d and 1 (one unit is listed twice)", r.Header.Get("X-Flywheel-Exposures-Recorded"), r.Header.Get("X-Flywheel-Exposures-Duplicates"), len(enrolled))
	}
	check := func(stage string) {
		t.Helper()
		got := a.sql(`SELECT count(*)::text || ' ' || count(DISTINCT unit_id)::text || ' ' || count(*) FILTER (WHERE ts = $1)::text FROM events WHERE type = 'exposure' AND experiment = 'promo'`, sent)
		if want := fmt.Sprintf("%d %d %d", len(enrolled), len(enrolled), len(enrolled)); got != want {
			t.Errorf("%s: exposure events (all, units, at sent_at) = %s, want %s", stage, got, want)
		}
		if n := a.sql(`SELECT count(*)::text FROM exposures WHERE experiment = 'promo' AND first_ts = $1`, sent); n != fmt.Sprint(len(enrolled)) {
			t.Errorf("%s: exposures at sent_at = %s, want %d", stage, n, len(enrolled))
		}
		if n := a.sql(`SELECT count(*)::text FROM events WHERE unit_id = 'c-opted'`); n != "0" {
			t.Errorf("%s: events of the opted-out unit = %s, want 0", stage, n)
		}
	}
	check("first send")
	// A retry (same list, same sent_at), in CSV this time: nothing twice.
	r = a.postList("promo", query, "text/csv", csvList(t, rows))
	if r.Status != 200 || r.Header.Get("X-Flywheel-Exposures-Recorded") != "0" || r.Header.Get("X-Flywheel-Exposures-Duplicates") != fmt.Sprint(len(enrolled)+1) {
		t.Errorf("retry = %d recorded %q duplicates %q, want 200, 0, %d", r.Status, r.Header.Get("X-Flywheel-Exposures-Recorded"), r.Header.Get("X-Flywheel-Exposures-Duplicates"), len(enrolled)+1)
	}
	check("retry")
	// Results count every enrolled unit but the QA override.
	a.settle("promo")
	res := a.must(200, "GET", "/v1/experiments/promo/results", nil)
	if got := res["units"]; got != float64(len(enrolled)-1) {
		t.Errorf("results units = %v, want %d (enrolled, less the override)", got, len(enrolled)-1)
	}
	// Without sent_at, twice: recorded once, at the time of the first.
	a.must(http.StatusCreated, "POST", "/v1/experiments", func() map[string]any {
		e := experimentBody("second")
		e["targeting"], e["overrides"], e["metrics"] = nil, map[string]any{}, map[string]any{}
		return e
	}())
	a.must(http.StatusOK, "POST", "/v1/experiments/second/start", nil)
	small := ndjsonList(t, rows[:10])
	for i, want := range []string{"10", "0"} {
		r := a.postList("second", "record_exposure=true", "application/x-ndjson", small)
		if r.Status != 200 || r.Header.Get("X-Flywheel-Exposures-Recorded") != want {
			t.Errorf("send %d without sent_at = %d recorded %q, want %s: %s", i+1, r.Status, r.Header.Get("X-Flywheel-Exposures-Recorded"), want, r.Body)
		}
	}
	if n := a.sql(`SELECT count(*)::text FROM events WHERE experiment = 'second'`); n != "10" {
		t.Errorf("events of two sends without sent_at = %s, want 10", n)
	}
}

// TestAssignListBadInput: bad rows are named by line, every one of them;
// a refused list assigns and records nothing; bad requests are 4xx naming
// the parameter.
func TestAssignListBadInput(t *testing.T) {
	a, rows := listFixture(t)
	a.must(http.StatusCreated, "POST", "/v1/experiments", func() map[string]any {
		e := experimentBody("draft")
		e["metrics"] = map[string]any{}
		return e
	}())
	good := ndjsonList(t, rows[:5])
	for _, tc := range []struct {
		name, key, query, contentType, body string
		headers                             []string
		status                              int
		field                               string
		details                             []string // fields of every bad row
	}{
		{name: "empty id", key: "promo", query: "record_exposure=true", contentType: "application/x-ndjson",
			body: good + `{"unit_id": ""}` + "\n" + good, status: 400, field: "lines[6].unit_id"},
		{name: "several bad rows", key: "promo", query: "record_exposure=true", contentType: "application/x-ndjson",
			body:   good + `{"unit_id": "x", "attributes": {"a": }` + "\n\n" + `{"unit_id": "y", "attributes": [1]}` + "\n" + `{"attributes": {}}` + "\n" + `{"unit_id": "z", "extra": 1}` + "\n",
			status: 400, field: "lines[6].attributes", details: []string{"lines[6].attributes", "lines[8].attributes", "lines[9].unit_id", "lines[10].extra"}},
		{name: "attributes too large to record", key: "promo", query: "record_exposure=true", contentType: "application/x-ndjson",
			body: good + `{"unit_id": "qa-1", "attributes": {"note": "` + strings.Repeat("x", 17000) + `"}}` + "\n", status: 400, field: "lines[6].attributes"},
		{name: "not an object", key: "promo", contentType: "application/x-ndjson", body: "[1]\n", status: 400, field: "lines[1]"},
		{name: "csv without unit_id", key: "promo", contentType: "text/csv", body: "id,country\nc-1,FR\n", status: 400, field: "lines[1]"},
		{name: "csv bad number", key: "promo", query: "record_exposure=true", contentType: "text/csv", body: "unit_id,orders:number\nc-1,3\nc-2,three\n", status: 400, field: "lines[3].orders"},
		{name: "csv field count", key: "promo", contentType: "text/csv", body: "unit_id,country\nc-1,FR\nc-2\nc-3,FR,x\n", status: 400, field: "lines[3]", details: []string{"lines[3]", "lines[4]"}},
		{name: "csv bad quote", key: "promo", contentType: "text/csv", body: "unit_id,country\nc-1,\"FR\nc-2,FR\n", status: 400, field: "lines[2]"},
		{name: "csv bad type", key: "promo", contentType: "text/csv", body: "unit_id,age:int\n", status: 400, field: "lines[1]"},
		{name: "csv empty", key: "promo", contentType: "text/csv", body: "", status: 400, field: "lines[1]"},
		{name: "line too long", key: "promo", contentType: "application/x-ndjson", body: good + `{"unit_id": "` + strings.Repeat("x", 70000) + `"}` + "\n", status: 400, field: "lines[6]"},
		{name: "id too long", key: "promo", contentType: "application/x-ndjson", body: `{"unit_id": "` + strings.Repeat("x", 257) + `"}` + "\n", status: 400, field: "lines[1].unit_id"},
		{name: "no content type", key: "promo", contentType: "", body: good, status: 400, field: "Content-Type"},
		{name: "json content type", key: "promo", contentType: "application/json", body: good, status: 400, field: "Content-Type"},
		{name: "bad accept", key: "promo", contentType: "application/x-ndjson", body: good, headers: []string{"Accept", "application/xml"}, status: 400, field: "Accept"},
		{name: "bad record_exposure", key: "promo", query: "record_exposure=yes please", contentType: "application/x-ndjson", body: good, status: 400, field: "record_exposure"},
		{name: "sent_at alone", key: "promo", query: "sent_at=2026-12-01T00:00:00Z", contentType: "application/x-ndjson", body: good, status: 400, field: "sent_at"},
		{name: "bad sent_at", key: "promo", query: "record_exposure=true&sent_at=yesterday", contentType: "application/x-ndjson", body: good, status: 400, field: "sent_at"},
		{name: "future sent_at", key: "promo", query: "record_exposure=true&sent_at=2999-01-01T00:00:00Z", contentType: "application/x-ndjson", body: good, status: 400, field: "sent_at"},
		{name: "unknown parameter", key: "promo", query: "record_exposures=true", contentType: "application/x-ndjson", body: good, status: 400, field: "record_exposures"},
		{name: "unknown experiment", key: "nope", contentType: "application/x-ndjson", body: good, status: 404},
		{name: "not running", key: "draft", query: "record_exposure=true", contentType: "application/x-ndjson", body: good, status: 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.postList(tc.key, strings.ReplaceAll(tc.query, " ", "+"), tc.contentType, tc.body, tc.headers...)
			if r.Status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			var e struct {
				Error struct {
					Code, Message, Field string
					Details              []struct{ Field, Message string }
				}
			}
			if err := json.Unmarshal(r.Body, &e); err != nil {
				t.Fatalf("answer is not a JSON error: %s", r.Body)
			}
			if tc.field != "" && e.Error.Field != tc.field {
				t.Errorf("field = %q, want %q (%s)", e.Error.Field, tc.field, e.Error.Message)
			}
			if strings.HasPrefix(tc.field, "lines[") && !strings.Contains(e.Error.Message, "line ") {
				t.Errorf("message %q does not name the line", e.Error.Message)
			}
			if tc.details != nil {
				var got []string
				for _, d := range e.Error.Details {
					got = append(got, d.Field)
				}
				if strings.Join(got, " ") != strings.Join(tc.details, " ") {
					t.Errorf("details = %v, want %v", got, tc.details)
				}
			}
		})
	}
	if n := a.sql(`SELECT count(*)::text FROM events`); n != "0" {
		t.Errorf("events after refused lists = %s, want 0", n)
	}
	// Other keys: an sdk or viewer key may not send lists.
	for _, key := range []string{a.sdk, a.viewer} {
		r := a.roundTrip(a.srv.URL, "POST", "/v1/experiments/promo/assignments", key, strings.NewReader(good), "Content-Type", "application/x-ndjson")
		if r.Status != 403 {
			t.Errorf("list with a non-admin key = %d, want 403", r.Status)
		}
	}
	// A draft answers not_running for everyone (as /v1/assign does).
	for _, l := range ndjsonAnswer(t, a.postList("draft", "", "application/x-ndjson", good)) {
		if l.Enrolled || l.Reason != "not_running" {
			t.Errorf("draft: %+v, want not_running", l)
		}
	}
	// Large attributes are refused only when they would be recorded, as in
	// POST /v1/assign.
	big := `{"unit_id": "qa-1", "attributes": {"note": "` + strings.Repeat("x", 17000) + `"}}` + "\n"
	if got := ndjsonAnswer(t, a.postList("promo", "", "application/x-ndjson", big)); len(got) != 1 || got[0].Reason != "override" {
		t.Errorf("large attributes without recording = %+v, want the override", got)
	}
	// An empty list is a valid, empty answer.
	if got := ndjsonAnswer(t, a.postList("promo", "record_exposure=true", "application/x-ndjson", "")); len(got) != 0 {
		t.Errorf("empty list = %v", got)
	}
}

// TestAssignListPrivacy: with pseudonymised ids a list records the stored
// form of each id, honours an opt-out given by raw id, and its exposures are
// erased with the unit; two concurrent sends of one list record each
// exposure once.
func TestAssignListPrivacy(t *testing.T) {
	a := newTestAPI(t, apiOptions{hmacKey: "list-secret", eraseWait: 5 * time.Minute})
	a.runningExperiment("exp")
	a.must(http.StatusOK, "PUT", "/v1/units/customer/c-3/consent", map[string]any{"analytics": false})
	var rows []map[string]any
	for i := range 200 {
		rows = append(rows, map[string]any{"unit_id": fmt.Sprintf("c-%d", i)})
	}
	list := ndjsonList(t, rows)
	sent := time.Now().UTC().Add(time.Minute).Truncate(time.Second).Format(time.RFC3339)
	answers := make(chan response, 2)
	for range 2 {
		go func() {
			answers <- a.roundTrip(a.srv.URL, "POST", "/v1/experiments/exp/assignments?record_exposure=true&sent_at="+sent, a.admin, strings.NewReader(list), "Content-Type", "application/x-ndjson")
		}()
	}
	recorded := 0
	for range 2 {
		r := <-answers
		if r.Status != 200 {
			t.Fatalf("concurrent send = %d: %s", r.Status, r.Body)
		}
		n := 0
		fmt.Sscan(r.Header.Get("X-Flywheel-Exposures-Recorded"), &n)
		recorded += n
	}
	if recorded != 199 {
		t.Errorf("two concurrent sends recorded %d exposures, want 199 (200 units, one opted out)", recorded)
	}
	if got := a.sql(`SELECT count(*)::text || ' ' || count(*) FILTER (WHERE unit_id = $1)::text || ' ' || count(*) FILTER (WHERE unit_id LIKE 'c-%') FROM events`, a.ids.ID("c-1")); got != "199 1 0" {
		t.Errorf("events (all, of c-1's stored id, raw ids) = %s, want 199 1 0", got)
	}
	if n := a.sql(`SELECT count(*)::text FROM events WHERE unit_id = $1`, a.ids.ID("c-3")); n != "0" {
		t.Errorf("events of the opted-out unit = %s, want 0", n)
	}
	a.must(http.StatusOK, "DELETE", "/v1/units/customer/c-1", nil)
	if n := a.sql(`SELECT ((SELECT count(*) FROM events WHERE unit_id = $1) + (SELECT count(*) FROM exposures WHERE unit_id = $1))::text`, a.ids.ID("c-1")); n != "0" {
		t.Errorf("rows of the erased unit = %s, want 0", n)
	}
}

// TestAssignListDiskFullMidway: when the database fills up while a list's
// exposures are being recorded (a trigger raises PostgreSQL's disk_full
// once some ids are stored), the request is a retryable 503 with part of
// the exposures recorded; the same request once space is back records the
// rest, and nothing twice. The list has 30,000 units: more than one
// ingestion group (20,000 events) and more than the list keeps in flight
// (4 chunks of 5,000), so some exposures are written only after others
// were committed, and meet the trigger.
func TestAssignListDiskFullMidway(t *testing.T) {
	a := newTestAPI(t)
	a.runningExperiment("exp")
	conn, err := pgx.Connect(context.Background(), a.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `CREATE FUNCTION fault_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT FROM event_ids) THEN
				RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not extend file: No space left on device';
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER fault_disk_full BEFORE INSERT ON event_ids FOR EACH STATEMENT EXECUTE FUNCTION fault_disk_full()`); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	const n = 30_000
	for i := range n {
		rows = append(rows, map[string]any{"unit_id": fmt.Sprintf("c-%d", i)})
	}
	list := ndjsonList(t, rows)
	query := "record_exposure=true&sent_at=" + time.Now().UTC().Add(time.Minute).Truncate(time.Second).Format(time.RFC3339)
	r := a.postList("exp", query, "application/x-ndjson", list)
	if code, _, _ := r.errorOf(t); r.Status != 503 || code != "unavailable" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("list while the disk is full = %d %.300s, want a retryable 503", r.Status, r.Body)
	}
	partial := a.sql(`SELECT count(*)::text FROM events`)
	if partial == "0" || partial == fmt.Sprint(n) {
		t.Errorf("events after the failure = %s, want part of them (the test meant to fail midway)", partial)
	}
	if _, err := conn.Exec(context.Background(), `DROP TRIGGER fault_disk_full ON event_ids`); err != nil {
		t.Fatal(err)
	}
	r = a.postList("exp", query, "application/x-ndjson", list)
	if r.Status != 200 || r.Header.Get("X-Flywheel-Exposures-Recorded") != fmt.Sprint(n-atoi(t, partial)) || r.Header.Get("X-Flywheel-Exposures-Duplicates") != partial {
		t.Errorf("retry = %d, recorded %s, duplicates %s; want 200, %d, %s", r.Status, r.Header.Get("X-Flywheel-Exposures-Recorded"), r.Header.Get("X-Flywheel-Exposures-Duplicates"), n-atoi(t, partial), partial)
	}
	if got := a.sql(`SELECT count(*)::text || ' ' || count(DISTINCT unit_id)::text FROM events`); got != fmt.Sprintf("%d %d", n, n) {
		t.Errorf("events (all, units) after the retry = %s, want %d %d", got, n, n)
	}
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAssignListHostileLines: each hostile body of TestHostileBodies, as a
// line of a list after a good one, makes the list a 400 naming line 2, and
// nothing is recorded.
func TestAssignListHostileLines(t *testing.T) {
	a := newTestAPI(t)
	a.runningExperiment("exp")
	for _, w := range wholeBodies {
		if strings.TrimSpace(w.body) == "" {
			continue // a blank line is no row
		}
		body := `{"unit_id": "c-1"}` + "\n" + w.body + "\n"
		r := a.postList("exp", "record_exposure=true", "application/x-ndjson", body)
		code, field, msg := r.errorOf(t)
		if r.Status != 400 || code != "invalid_argument" || !namesField(field, "lines[2]") || !strings.HasPrefix(msg, "line 2") {
			t.Errorf("%s as line 2 = %d %s %q %q, want 400 naming line 2", w.name, r.Status, code, field, msg)
		}
	}
	if n := a.sql(`SELECT count(*)::text FROM events`); n != "0" {
		t.Errorf("events after hostile lists = %s, want 0", n)
	}
}

// TestAssignListBanditKeepsArms: a bandit's list answers what
// POST /v1/assign answers after the weights moved: every unit with a
// recorded exposure keeps its first arm (looked up a thousand rows at a
// time, so 1,100 units take two lookups).
func TestAssignListBanditKeepsArms(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "bl", "unit_type": "customer", "allocation": "bandit", "traffic": 0.5,
		"bandit":   map[string]any{"floor": 0.05, "burn_in": "0s"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/bl/start", nil)
	first := map[string]string{}
	var events []map[string]any
	var rows []map[string]any
	for i := range 1100 {
		u := fmt.Sprintf("c-%d", i)
		rows = append(rows, map[string]any{"unit_id": u})
		if i >= 400 {
			continue // never exposed: decided by the current weights
		}
		if v := a.assignOne("bl", u, true); v != "" {
			first[u] = v
			if v == "b" {
				events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": u, "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
			}
		}
	}
	a.postEvents(a.sdk, map[string]any{"events": events})
	a.settle("bl")
	if n, err := a.app.UpdateBandits(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("UpdateBandits = %d, %v; want 1", n, err)
	}
	lines := ndjsonAnswer(t, a.postList("bl", "", "application/x-ndjson", ndjsonList(t, rows)))
	if len(lines) != len(rows) {
		t.Fatalf("%d answer lines for %d units", len(lines), len(rows))
	}
	kept, moved := 0, 0
	for i, l := range lines {
		variant := ""
		if l.Variant != nil {
			variant = *l.Variant
		}
		if want, ok := first[l.UnitID]; ok {
			if variant == want && l.Enrolled {
				kept++
			} else {
				moved++
			}
		}
		if i%50 == 0 { // the same decision as POST /v1/assign
			if v := a.assignOne("bl", l.UnitID, false); v != variant {
				t.Errorf("%s: the list says %q, /v1/assign %q", l.UnitID, variant, v)
			}
		}
	}
	if kept < 100 || moved != 0 {
		t.Errorf("%d units kept their first arm and %d moved, want every one kept (of %d)", kept, moved, len(first))
	}
}

// TestAssignListRecordsHoldoutArms: a list on an experiment a holdout
// covers records the holdout's arms as POST /v1/assign does: the held-out
// units that would have been enrolled in arm "holdout", the enrolled ones
// in arm "exposed", exactly once.
func TestAssignListRecordsHoldoutArms(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	exp := experimentBody("promo")
	delete(exp, "targeting")
	delete(exp, "overrides")
	a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
	a.must(http.StatusOK, "POST", "/v1/experiments/promo/start", nil)
	h := holdoutBody("prog", []string{"promo"}, nil)
	h["fraction"] = 0.1
	a.must(http.StatusCreated, "POST", "/v1/holdouts", h)
	a.must(http.StatusOK, "POST", "/v1/holdouts/prog/start", nil)
	var rows []map[string]any
	for i := range 400 {
		rows = append(rows, map[string]any{"unit_id": fmt.Sprintf("c-%d", i)})
	}
	list := ndjsonList(t, rows)
	sent := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	query := "record_exposure=true&sent_at=" + sent.Format(time.RFC3339)
	lines := ndjsonAnswer(t, a.postList("promo", query, "application/x-ndjson", list))
	held, exposed := 0, 0
	for _, l := range lines {
		switch {
		case l.Reason == "holdout":
			held++
			// The same answer as POST /v1/assign: the control's variant
			// (the experience to send), not enrolled.
			if l.Variant == nil || *l.Variant != "control" || l.Enrolled {
				t.Errorf("%s held out: variant %v, enrolled %v; want control, not enrolled", l.UnitID, l.Variant, l.Enrolled)
			}
			if v := a.assignOne("promo", l.UnitID, false); v != "control" {
				t.Errorf("%s held out: /v1/assign says %q, want control", l.UnitID, v)
			}
		case l.Enrolled:
			exposed++
		}
	}
	if held < 10 || exposed < 100 {
		t.Fatalf("%d held out and %d enrolled: the test needs both", held, exposed)
	}
	want := fmt.Sprintf("exposed %d holdout %d", exposed, held)
	count := func() string {
		return a.sql(`SELECT 'exposed ' || count(*) FILTER (WHERE variant = 'exposed') || ' holdout ' || count(*) FILTER (WHERE variant = 'holdout')
			FROM exposures WHERE experiment = 'holdout:prog'`)
	}
	if got := count(); got != want {
		t.Errorf("holdout arms recorded: %s, want %s", got, want)
	}
	// A retry records nothing twice.
	r := a.postList("promo", query, "application/x-ndjson", list)
	ndjsonAnswer(t, r)
	if r.Header.Get("X-Flywheel-Exposures-Recorded") != "0" {
		t.Errorf("the retry recorded %s exposures, want 0", r.Header.Get("X-Flywheel-Exposures-Recorded"))
	}
	if got := a.sql(`SELECT count(*)::text FROM events WHERE experiment = 'holdout:prog'`); got != fmt.Sprint(held+exposed) {
		t.Errorf("holdout exposure events = %s, want %d", got, held+exposed)
	}
}
