package api_test

// Every limit of docs/api.md's Limits table, at its edge: the limit is
// accepted, one more is refused with an error that names the field and
// says the number.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/assign"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/internal/strictjson"
	"github.com/flywheel-oss/flywheel/store"
)

// edge is one limit: at is a request at the limit, over one past it.
type edge struct {
	name      string
	method    string
	path      string
	key       string // "" = admin
	at, over  any    // bodies (marshalled unless string or []byte)
	wantAt    int
	wantOver  int    // status past the limit
	field     string // the field the refusal names ("" = none)
	mentions  string // the refusal's message must say this (the number)
	headers   []string
	checkAt   func(t *testing.T, r response)
	overCheck func(t *testing.T, r response)
}

func (e edge) run(t *testing.T, a *testAPI) {
	t.Helper()
	key := e.key
	if key == "" {
		key = a.admin
	}
	r := a.do(e.method, e.path, key, e.at, e.headers...)
	if r.Status != e.wantAt {
		t.Errorf("%s: at the limit = %d, want %d: %.300s", e.name, r.Status, e.wantAt, r.Body)
	} else if e.checkAt != nil {
		e.checkAt(t, r)
	}
	r = a.do(e.method, e.path, key, e.over, e.headers...)
	if e.overCheck != nil {
		e.overCheck(t, r)
		return
	}
	code, field, msg := errorMessage(r)
	if r.Status != e.wantOver || field != e.field || !strings.Contains(msg, e.mentions) {
		t.Errorf("%s: past the limit = %d {%s %q %q}, want %d on %q saying %q", e.name, r.Status, code, field, msg, e.wantOver, e.field, e.mentions)
	}
}

// variantsOf returns n variants of equal weight.
func variantsOf(n int) []any {
	vs := make([]any, n)
	for i := range vs {
		vs[i] = map[string]any{"key": fmt.Sprintf("v%d", i), "weight": 1 / float64(n)}
	}
	return vs
}

// experimentWith is a valid minimal experiment with changes.
func experimentWith(key string, changes map[string]any) map[string]any {
	b := map[string]any{"key": key, "unit_type": "customer", "variants": variantsOf(2)}
	for k, v := range changes {
		b[k] = v
	}
	return b
}

// jsonOfSize is a JSON object {"p":"xx..."} of exactly n bytes.
func jsonOfSize(n int) json.RawMessage {
	return json.RawMessage(`{"p":"` + strings.Repeat("x", n-8) + `"}`)
}

// nestedArrays is n arrays, one in the other.
func nestedArrays(n int) json.RawMessage {
	return json.RawMessage(strings.Repeat("[", n) + strings.Repeat("]", n))
}

// conditionOfDepth is a targeting condition n levels deep.
func conditionOfDepth(n int) json.RawMessage {
	return json.RawMessage(`{"a":` + strings.Repeat(`{"$not":`, n-2) + `{"$eq":1}` + strings.Repeat("}", n-2) + `}`)
}

func manyKeys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func overridesOf(n int) map[string]string {
	out := make(map[string]string, n)
	for i := range n {
		out[fmt.Sprintf("qa-%d", i)] = "v0"
	}
	return out
}

func TestLimits(t *testing.T) {
	a := newTestAPI(t)
	for _, m := range manyKeys("m", flywheel.MaxMetricsPerExperiment+1) {
		a.createMetric(m, "conversion")
	}
	a.runningExperiment("exp")
	n := 0
	fresh := func() string { n++; return fmt.Sprintf("lim-%d", n) }
	create := func(name string, at, over map[string]any, field, mentions string) edge {
		return edge{name: name, method: "POST", path: "/v1/experiments", at: experimentWith(fresh(), at), over: experimentWith(fresh(), over),
			wantAt: http.StatusCreated, wantOver: http.StatusBadRequest, field: field, mentions: mentions}
	}
	metric := func(name string, at, over map[string]any, field, mentions string) edge {
		base := func(changes map[string]any) map[string]any {
			b := map[string]any{"key": fresh(), "type": "mean", "event": "purchase"}
			for k, v := range changes {
				b[k] = v
			}
			return b
		}
		return edge{name: name, method: "POST", path: "/v1/metrics", at: base(at), over: base(over),
			wantAt: http.StatusCreated, wantOver: http.StatusBadRequest, field: field, mentions: mentions}
	}
	now := time.Now().UTC()
	track := func(changes map[string]any) map[string]any {
		e := map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": "c-1"}
		for k, v := range changes {
			e[k] = v
		}
		return e
	}
	// event sends one event: at the limit it is accepted, past it rejected
	// alone naming the field.
	event := func(name string, at, over map[string]any, field, mentions string) edge {
		return edge{name: name, method: "POST", path: "/v1/events", key: a.sdk,
			at: map[string]any{"events": []any{track(at)}}, over: map[string]any{"events": []any{track(over)}},
			wantAt: http.StatusOK, wantOver: http.StatusOK,
			checkAt: func(t *testing.T, r response) {
				if !strings.Contains(string(r.Body), `"accepted":1`) {
					t.Errorf("%s: at the limit: %s, want the event accepted", name, r.Body)
				}
			},
			overCheck: func(t *testing.T, r response) {
				var ans eventsAnswer
				_ = json.Unmarshal(r.Body, &ans)
				if r.Status != 200 || len(ans.Rejected) != 1 || ans.Rejected[0].Error.Field != field || !strings.Contains(ans.Rejected[0].Error.Message, mentions) {
					t.Errorf("%s: past the limit: %d %s, want the event rejected on %q saying %q", name, r.Status, r.Body, field, mentions)
				}
			}}
	}
	str := strings.Repeat
	payloadDepth := strictjson.MaxDepth - 3 // the body, variants, a variant
	edges := []edge{
		// Experiments.
		create("key length", map[string]any{"key": "k" + str("x", 63)}, map[string]any{"key": "k" + str("x", 64)}, "key", "{0,63}"),
		create("name length", map[string]any{"name": str("n", 200)}, map[string]any{"name": str("n", 201)}, "name", "200"),
		create("hypothesis length", map[string]any{"hypothesis": str("h", 10000)}, map[string]any{"hypothesis": str("h", 10001)}, "hypothesis", "10000"),
		create("unit type length", map[string]any{"unit_type": str("u", 32)}, map[string]any{"unit_type": str("u", 33)}, "unit_type", "{1,32}"),
		create("most variants", map[string]any{"variants": variantsOf(20)}, map[string]any{"variants": variantsOf(21)}, "variants", "2 to 20"),
		create("fewest variants", map[string]any{"variants": variantsOf(2)}, map[string]any{"variants": variantsOf(1)}, "variants", "2 to 20"),
		create("variant key length", map[string]any{"variants": []any{map[string]any{"key": "v" + str("x", 63), "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}}},
			map[string]any{"variants": []any{map[string]any{"key": "v" + str("x", 64), "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}}}, "variants[0].key", "{0,63}"),
		create("payload size", map[string]any{"variants": []any{map[string]any{"key": "a", "weight": 0.5, "payload": jsonOfSize(flywheel.MaxPayloadBytes)}, map[string]any{"key": "b", "weight": 0.5}}},
			map[string]any{"variants": []any{map[string]any{"key": "a", "weight": 0.5, "payload": jsonOfSize(flywheel.MaxPayloadBytes + 1)}, map[string]any{"key": "b", "weight": 0.5}}}, "variants[0].payload", "16384"),
		create("body nesting", map[string]any{"variants": []any{map[string]any{"key": "a", "weight": 0.5, "payload": nestedArrays(payloadDepth)}, map[string]any{"key": "b", "weight": 0.5}}},
			map[string]any{"variants": []any{map[string]any{"key": "a", "weight": 0.5, "payload": nestedArrays(payloadDepth + 1)}, map[string]any{"key": "b", "weight": 0.5}}},
			"variants[0].payload"+str("[0]", payloadDepth), "64 levels"),
		create("overrides", map[string]any{"variants": variantsOf(2), "overrides": overridesOf(flywheel.MaxOverrides)},
			map[string]any{"variants": variantsOf(2), "overrides": overridesOf(flywheel.MaxOverrides + 1)}, "overrides", "1000"),
		create("override unit id length", map[string]any{"variants": variantsOf(2), "overrides": map[string]string{str("q", 256): "v0"}},
			map[string]any{"variants": variantsOf(2), "overrides": map[string]string{str("q", 257): "v0"}}, "overrides", "256"),
		create("metrics per experiment", map[string]any{"metrics": map[string]any{"primary": manyKeys("m", 5), "guardrails": manyKeys("m", 20)}},
			map[string]any{"metrics": map[string]any{"primary": manyKeys("m", 5), "guardrails": manyKeys("m", 20), "secondary": []string{"m20"}}}, "metrics", "20"),
		create("targeting size", map[string]any{"targeting": jsonOfSize(flywheel.MaxTargetingBytes)}, map[string]any{"targeting": jsonOfSize(flywheel.MaxTargetingBytes + 1)}, "targeting", "65536"),
		create("targeting depth", map[string]any{"targeting": conditionOfDepth(assign.MaxConditionDepth)}, map[string]any{"targeting": conditionOfDepth(assign.MaxConditionDepth + 1)},
			"targeting.a"+str(".$not", assign.MaxConditionDepth-1), "16 levels"),
		create("salt length", map[string]any{"salt": str("s", 128)}, map[string]any{"salt": str("s", 129)}, "salt", "128"),
		{name: "page size", method: "GET", path: "/v1/experiments?limit=500", at: nil, over: nil, wantAt: 200, wantOver: 400, field: "limit", mentions: "500",
			overCheck: func(t *testing.T, _ response) {
				r := a.do("GET", "/v1/experiments?limit=501", a.admin, nil)
				if _, field, msg := errorMessage(r); r.Status != 400 || field != "limit" || !strings.Contains(msg, "500") {
					t.Errorf("page size 501 = %d %s", r.Status, r.Body)
				}
			}},
		// Metrics.
		metric("metric name length", map[string]any{"name": str("n", 200)}, map[string]any{"name": str("n", 201)}, "name", "200"),
		metric("metric description length", map[string]any{"description": str("d", 10000)}, map[string]any{"description": str("d", 10001)}, "description", "10000"),
		metric("metric event length", map[string]any{"event": str("e", 128)}, map[string]any{"event": str("e", 129)}, "event", "128"),
		metric("window", map[string]any{"window_hours": 43800}, map[string]any{"window_hours": 43801}, "window_hours", "43800"),
		metric("CUPED period", map[string]any{"cuped_hours": 8760}, map[string]any{"cuped_hours": 8761}, "cuped_hours", "8760"),
		// Events, one at a time.
		event("unit id length", map[string]any{"unit_id": str("u", 256)}, map[string]any{"unit_id": str("u", 257)}, "unit_id", "256"),
		event("event name length", map[string]any{"event": str("e", 128)}, map[string]any{"event": str("e", 129)}, "event", "128"),
		event("properties size", map[string]any{"properties": jsonOfSize(16 << 10)}, map[string]any{"properties": jsonOfSize(16<<10 + 1)}, "properties", "16384"),
		event("event nesting", map[string]any{"properties": json.RawMessage(`{"a":` + string(nestedArrays(strictjson.MaxDepth-2)) + `}`)},
			map[string]any{"properties": json.RawMessage(`{"a":` + string(nestedArrays(strictjson.MaxDepth-1)) + `}`)}, "properties.a"+str("[0]", strictjson.MaxDepth-2), "64 levels"),
		event("timestamp ahead", map[string]any{"timestamp": now.Add(ingest.MaxFuture - time.Minute).Format(time.RFC3339)},
			map[string]any{"timestamp": now.Add(ingest.MaxFuture + time.Minute).Format(time.RFC3339)}, "timestamp", "24 h"),
		event("timestamp behind", map[string]any{"timestamp": "2000-01-01T00:00:00Z"}, map[string]any{"timestamp": "1999-12-31T23:59:59Z"}, "timestamp", "2000"),
		// Assignment.
		{name: "assign experiments", method: "POST", path: "/v1/assign", key: a.sdk,
			at:     map[string]any{"unit_type": "customer", "unit_id": "c-1", "experiments": repeat("exp", flywheel.MaxLiveExperiments)},
			over:   map[string]any{"unit_type": "customer", "unit_id": "c-1", "experiments": repeat("exp", flywheel.MaxLiveExperiments+1)},
			wantAt: 200, wantOver: 400, field: "experiments", mentions: "1000"},
		{name: "assign attributes logged", method: "POST", path: "/v1/assign", key: a.sdk,
			at:     map[string]any{"unit_type": "customer", "unit_id": "c-1", "experiments": []string{"exp"}, "log_exposure": true, "attributes": jsonOfSize(16 << 10)},
			over:   map[string]any{"unit_type": "customer", "unit_id": "c-1", "experiments": []string{"exp"}, "log_exposure": true, "attributes": jsonOfSize(16<<10 + 1)},
			wantAt: 200, wantOver: 400, field: "attributes", mentions: "16 KiB"},
		{name: "assign unit id", method: "POST", path: "/v1/assign", key: a.sdk,
			at:     map[string]any{"unit_type": "customer", "unit_id": str("u", 256), "experiments": []string{"exp"}},
			over:   map[string]any{"unit_type": "customer", "unit_id": str("u", 257), "experiments": []string{"exp"}},
			wantAt: 200, wantOver: 400, field: "unit_id", mentions: "256"},
		// Definition bodies: 1 MiB, as sent (white space counts).
		{name: "definition body", method: "POST", path: "/v1/metrics",
			at:     padTo(fmt.Sprintf(`{"key":"%s","type":"count","event":"e"}`, fresh()), 1<<20),
			over:   padTo(fmt.Sprintf(`{"key":"%s","type":"count","event":"e"}`, fresh()), 1<<20+1),
			wantAt: 201, wantOver: 413, mentions: "1048576"},
	}
	for _, e := range edges {
		e.run(t, a)
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// padTo pads a JSON document with trailing spaces to exactly n bytes.
func padTo(doc string, n int) []byte {
	return []byte(doc + strings.Repeat(" ", n-len(doc)))
}

// TestLimitEventsPerRequest: 10,000 events and 5 MiB a request.
func TestLimitEventsPerRequest(t *testing.T) {
	a := newTestAPI(t)
	events := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = map[string]any{"id": newID(t), "type": "track", "event": "e", "unit_type": "customer", "unit_id": "c-" + strconv.Itoa(i%50)}
		}
		return out
	}
	if ans := a.postEvents(a.sdk, map[string]any{"events": events(ingest.MaxEvents)}); ans.Accepted != ingest.MaxEvents {
		t.Errorf("%d events: %d accepted, want all", ingest.MaxEvents, ans.Accepted)
	}
	r := a.do("POST", "/v1/events", a.sdk, map[string]any{"events": events(ingest.MaxEvents + 1)})
	if _, _, msg := errorMessage(r); r.Status != 413 || !strings.Contains(msg, "10000") {
		t.Errorf("%d events = %d %s, want 413 saying 10000", ingest.MaxEvents+1, r.Status, r.Body)
	}
	for _, ndjson := range []bool{false, true} {
		var body string
		ct := "application/json"
		if ndjson {
			raw, _ := json.Marshal(events(1)[0])
			body, ct = string(raw)+"\n", "application/x-ndjson"
		} else {
			raw, _ := json.Marshal(map[string]any{"events": events(1)})
			body = string(raw)
		}
		if r := a.do("POST", "/v1/events", a.sdk, padTo(body, ingest.MaxBodyBytes), "Content-Type", ct); r.Status != 200 || !strings.Contains(string(r.Body), `"accepted":1`) {
			t.Errorf("%s body of exactly 5 MiB = %d %.200s, want the event accepted", ct, r.Status, r.Body)
		}
		if r := a.do("POST", "/v1/events", a.sdk, padTo(body, ingest.MaxBodyBytes+1), "Content-Type", ct); r.Status != 413 || !strings.Contains(string(r.Body), "5242880") {
			t.Errorf("%s body of 5 MiB + 1 byte = %d %.200s, want 413 saying 5242880", ct, r.Status, r.Body)
		}
	}
}

// TestLimitLiveExperiments: 1,000 experiments that are not archived; an
// archived one makes room.
func TestLimitLiveExperiments(t *testing.T) {
	a := newTestAPI(t)
	a.must(201, "POST", "/v1/experiments", experimentWith("seed", nil))
	// 998 copies of seed, straight into the table: 999 in all.
	a.sql(`WITH ins AS (INSERT INTO experiments
		SELECT (jsonb_populate_record(e, jsonb_build_object('key', 'bulk-' || g))).* FROM experiments e, generate_series(1, $1::int) g
		WHERE e.key = 'seed' RETURNING 1) SELECT count(*)::text FROM ins`, flywheel.MaxLiveExperiments-2)
	a.must(201, "POST", "/v1/experiments", experimentWith("the-1000th", nil))
	r := a.do("POST", "/v1/experiments", a.admin, experimentWith("the-1001st", nil))
	if code, _, msg := errorMessage(r); r.Status != 409 || code != "conflict" || !strings.Contains(msg, "1000") {
		t.Errorf("the 1001st experiment = %d %s, want 409 conflict saying 1000", r.Status, r.Body)
	}
	a.must(200, "POST", "/v1/experiments/bulk-1/archive", nil)
	a.must(201, "POST", "/v1/experiments", experimentWith("the-1001st", nil))
	if got := a.sql(`SELECT count(*)::text FROM experiments WHERE status <> 'archived'`); got != strconv.Itoa(flywheel.MaxLiveExperiments) {
		t.Errorf("%s experiments not archived, want %d", got, flywheel.MaxLiveExperiments)
	}
}

// TestLimitSegmentsAndDays: a results document breaks down by at most 50
// segment values, from the raw events and from the aggregates; a
// timeseries shows the latest 366 days.
func TestLimitSegmentsAndDays(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(201, "POST", "/v1/experiments", experimentWith("seg", map[string]any{"metrics": map[string]any{"primary": []string{"purchase"}}}))
	a.must(200, "POST", "/v1/experiments/seg/start", nil)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	expose := func(unit string, day int, seg string) map[string]any {
		return map[string]any{"id": newID(t), "type": "exposure", "experiment": "seg", "variant": "v" + strconv.Itoa(len(unit)%2),
			"unit_type": "customer", "unit_id": unit, "timestamp": today.AddDate(0, 0, day).Add(time.Hour).Format(time.RFC3339),
			"attributes": map[string]any{"seg": seg}}
	}
	var evs []any
	for i := range analysis.MaxSegmentValues {
		evs = append(evs, expose(fmt.Sprintf("u-%d", i), -1, fmt.Sprintf("value-%d", i)))
	}
	// The oldest units: 366 and 365 days ago.
	evs = append(evs, expose("old-1", -store.MaxTimeseriesDays, "value-0"), expose("old-2", 1-store.MaxTimeseriesDays, "value-1"))
	a.postEvents(a.sdk, map[string]any{"events": evs})
	segName := "s" + strings.Repeat("x", 63)
	for _, source := range []string{"recomputed", "aggregated"} {
		if source == "aggregated" {
			a.settle("seg", "seg")
		}
		if r := a.do("GET", "/v1/experiments/seg/results?segment=seg", a.admin, nil); r.Status != 200 {
			t.Errorf("%s: %d segment values = %d: %.300s", source, analysis.MaxSegmentValues, r.Status, r.Body)
		}
		if r := a.do("GET", "/v1/experiments/seg/results?segment="+segName, a.admin, nil); r.Status != 200 {
			t.Errorf("%s: a segment name of 64 characters = %d: %.300s", source, r.Status, r.Body)
		}
		doc := a.must(200, "GET", "/v1/experiments/seg/results/timeseries", nil)
		points, _ := doc["points"].([]any)
		first := today.AddDate(0, 0, 1-store.MaxTimeseriesDays).Format("2006-01-02")
		if len(points) != store.MaxTimeseriesDays || path(points[0], "date") != first {
			t.Errorf("%s: timeseries of %d points from %v, want %d from %s", source, len(points), path(points[0], "date"), store.MaxTimeseriesDays, first)
		} else if units := path(points[0], "variants", 0, "units").(float64) + path(points[0], "variants", 1, "units").(float64); units != 2 {
			t.Errorf("%s: first day holds %v units, want 2: the unit exposed earlier enters on the first day shown", source, units)
		}
	}
	r := a.do("GET", "/v1/experiments/seg/results?segment="+segName+"x", a.admin, nil)
	if _, field, msg := errorMessage(r); r.Status != 400 || field != "segment" || !strings.Contains(msg, "64") {
		t.Errorf("a segment name of 65 characters = %d %s, want 400 on segment", r.Status, r.Body)
	}
	// One more value: refused, from the aggregates and from the raw events.
	a.postEvents(a.sdk, map[string]any{"events": []any{expose("u-more", -1, "value-more")}})
	for _, source := range []string{"aggregated", "recomputed"} {
		if source == "aggregated" {
			if err := a.app.Aggregate(t.Context()); err != nil {
				t.Fatal(err)
			}
		} else {
			a.sql(`WITH d AS (DELETE FROM agg_defs WHERE experiment = 'seg' RETURNING 1) SELECT count(*)::text FROM d`)
		}
		r := a.do("GET", "/v1/experiments/seg/results?segment=seg", a.admin, nil)
		if _, field, msg := errorMessage(r); r.Status != 400 || field != "segment" || !strings.Contains(msg, "at most 50") {
			t.Errorf("%s: %d segment values = %d %.300s, want 400 on segment saying at most 50", source, analysis.MaxSegmentValues+1, r.Status, r.Body)
		}
	}
}

// TestLimitLiveHoldouts: 100 holdouts that are not archived; an archived
// one makes room.
func TestLimitLiveHoldouts(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	exp := experimentBody("checkout")
	delete(exp, "targeting")
	a.must(201, "POST", "/v1/experiments", exp)
	a.must(201, "POST", "/v1/holdouts", holdoutBody("seed", []string{"checkout"}, nil))
	// 98 copies of seed, straight into the table: 99 in all.
	a.sql(`WITH ins AS (INSERT INTO holdouts
		SELECT (jsonb_populate_record(h, jsonb_build_object('key', 'bulk-' || g))).* FROM holdouts h, generate_series(1, $1::int) g
		WHERE h.key = 'seed' RETURNING 1) SELECT count(*)::text FROM ins`, flywheel.MaxLiveHoldouts-2)
	a.must(201, "POST", "/v1/holdouts", holdoutBody("the-100th", []string{"checkout"}, nil))
	r := a.do("POST", "/v1/holdouts", a.admin, holdoutBody("the-101st", []string{"checkout"}, nil))
	if code, _, msg := errorMessage(r); r.Status != 409 || code != "conflict" || !strings.Contains(msg, "100 holdouts") {
		t.Errorf("the 101st holdout = %d %s, want 409 conflict saying 100 holdouts", r.Status, r.Body)
	}
	a.must(200, "POST", "/v1/holdouts/bulk-1/archive", nil)
	a.must(201, "POST", "/v1/holdouts", holdoutBody("the-101st", []string{"checkout"}, nil))
	if got := a.sql(`SELECT count(*)::text FROM holdouts WHERE status <> 'archived'`); got != strconv.Itoa(flywheel.MaxLiveHoldouts) {
		t.Errorf("%s holdouts not archived, want %d", got, flywheel.MaxLiveHoldouts)
	}
}
