package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	a := newTestAPI(t)
	tests := []struct {
		name, method, path, key string
		want                    int
		code                    string
	}{
		{"no key", "GET", "/v1/experiments", "", 401, "unauthenticated"},
		{"unknown key", "GET", "/v1/experiments", "fw_admin_nope_nope_nope", 401, "unauthenticated"},
		{"sdk key on admin route", "GET", "/v1/experiments", a.sdk, 403, "permission_denied"},
		{"sdk key on metrics", "POST", "/v1/metrics", a.sdk, 403, "permission_denied"},
		{"sdk key on config", "GET", "/v1/sdk/config", a.sdk, 200, ""},
		{"admin key on config", "GET", "/v1/sdk/config", a.admin, 200, ""},
		{"admin key on experiments", "GET", "/v1/experiments", a.admin, 200, ""},
		{"health needs no key", "GET", "/healthz", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(tt.method, tt.path, tt.key, nil)
			if r.Status != tt.want {
				t.Fatalf("%s %s = %d, want %d: %s", tt.method, tt.path, r.Status, tt.want, r.Body)
			}
			if tt.code != "" {
				if code, _, _ := r.errorOf(t); code != tt.code {
					t.Errorf("code = %q, want %q", code, tt.code)
				}
			}
		})
	}
}

func TestExperimentLifecycle(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.createMetric("refund", "conversion")

	e := a.must(201, "POST", "/v1/experiments", experimentBody("checkout-button"))
	if e["status"] != "draft" || e["salt"] != "checkout-button" || e["traffic"] != 1.0 {
		t.Fatalf("created experiment = %v, want a draft with salt = key and traffic 1", e)
	}
	got := a.must(200, "GET", "/v1/experiments/checkout-button", nil)
	if got["name"] != "Green checkout button" {
		t.Errorf("GET name = %v", got["name"])
	}
	// A draft may change anything.
	a.must(200, "PATCH", "/v1/experiments/checkout-button", map[string]any{"unit_type": "device", "targeting": nil})
	a.must(200, "PATCH", "/v1/experiments/checkout-button", map[string]any{"unit_type": "customer"})
	a.must(200, "POST", "/v1/experiments/checkout-button/start", nil)

	// Running: traffic, name, hypothesis, metrics may change; the rest is a 409.
	a.must(200, "PATCH", "/v1/experiments/checkout-button", map[string]any{"traffic": 0.5, "name": "Green", "metrics": map[string]any{"primary": []any{"purchase"}, "guardrails": []any{"refund"}}})
	for _, body := range []map[string]any{
		{"variants": []any{map[string]any{"key": "control", "weight": 0.4}, map[string]any{"key": "green", "weight": 0.6}}},
		{"unit_type": "device"},
		{"layer": "checkout"},
		{"salt": "other"},
	} {
		r := a.do("PATCH", "/v1/experiments/checkout-button", a.admin, body)
		code, _, msg := r.errorOf(t)
		if r.Status != 409 || code != "conflict" || !strings.Contains(msg, "stop it and create a new experiment") {
			t.Errorf("PATCH running %v = %d %s %q, want 409 conflict saying why", body, r.Status, code, msg)
		}
	}
	// The same value again is not a change.
	a.must(200, "PATCH", "/v1/experiments/checkout-button", map[string]any{"unit_type": "customer"})
	// Start twice is a conflict; archive while running too.
	if r := a.do("POST", "/v1/experiments/checkout-button/start", a.admin, nil); r.Status != 409 {
		t.Errorf("second start = %d, want 409", r.Status)
	}
	if r := a.do("POST", "/v1/experiments/checkout-button/archive", a.admin, nil); r.Status != 409 {
		t.Errorf("archive running = %d, want 409", r.Status)
	}
	a.must(200, "POST", "/v1/experiments/checkout-button/stop", nil)
	a.must(200, "POST", "/v1/experiments/checkout-button/archive", nil)

	h := a.must(200, "GET", "/v1/experiments/checkout-button/history", nil)
	items := h["items"].([]any)
	var actions []string
	for _, it := range items {
		m := it.(map[string]any)
		if m["actor"] != "alice" {
			t.Errorf("history actor = %v, want the key's name alice", m["actor"])
		}
		actions = append(actions, m["action"].(string))
	}
	want := "create,update,update,start,update,stop,archive"
	if strings.Join(actions, ",") != want {
		t.Errorf("history actions = %v, want %s", actions, want)
	}
	upd := items[4].(map[string]any)["changes"].(map[string]any)
	if tr, ok := upd["traffic"].(map[string]any); !ok || tr["from"] != 1.0 || tr["to"] != 0.5 {
		t.Errorf("traffic change = %v, want from 1 to 0.5", upd["traffic"])
	}
}

func TestExperimentValidation(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	tests := []struct {
		name  string
		edit  func(b map[string]any)
		field string
	}{
		{"bad key", func(b map[string]any) { b["key"] = "Bad Key" }, "key"},
		{"one variant", func(b map[string]any) { b["variants"] = []any{map[string]any{"key": "control", "weight": 1.0}} }, "variants"},
		{"21 variants", func(b map[string]any) {
			var vs []any
			for i := range 21 {
				vs = append(vs, map[string]any{"key": fmt.Sprint("v", i), "weight": 1.0 / 21})
			}
			b["variants"] = vs
		}, "variants"},
		{"duplicate variant", func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "a", "weight": 0.5}}
		}, "variants[1].key"},
		{"weights sum", func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.6}}
		}, "variants"},
		{"zero weight", func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a", "weight": 1.0}, map[string]any{"key": "b", "weight": 0.0}}
		}, "variants[1].weight"},
		{"traffic above 1", func(b map[string]any) { b["traffic"] = 1.5 }, "traffic"},
		{"unknown metric", func(b map[string]any) { b["metrics"] = map[string]any{"primary": []any{"nope"}} }, "metrics.primary[0]"},
		{"unknown operator", func(b map[string]any) { b["targeting"] = map[string]any{"country": map[string]any{"$foo": 1}} }, "targeting.country.$foo"},
		{"targeting not an object", func(b map[string]any) { b["targeting"] = []any{1} }, "targeting"},
		{"override to unknown variant", func(b map[string]any) { b["overrides"] = map[string]any{"u1": "blue"} }, "overrides.u1"},
		{"bad unit type", func(b map[string]any) { b["unit_type"] = "Customer ID" }, "unit_type"},
		{"bad analysis", func(b map[string]any) { b["analysis"] = "bayes" }, "analysis"},
		{"range without layer", func(b map[string]any) { b["layer_range"] = []any{0, 100} }, "layer_range"},
		{"range out of bounds", func(b map[string]any) { b["layer"] = "l"; b["layer_range"] = []any{0, 10001} }, "layer_range"},
		{"wrong type", func(b map[string]any) { b["traffic"] = "all" }, "traffic"},
		{"unknown field", func(b map[string]any) { b["colour"] = "green" }, "colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := experimentBody("valid-key")
			tt.edit(b)
			r := a.do("POST", "/v1/experiments", a.admin, b)
			code, field, msg := r.errorOf(t)
			if r.Status != 400 || code != "invalid_argument" || field != tt.field {
				t.Fatalf("POST = %d %s field %q (%s), want 400 invalid_argument field %q", r.Status, code, field, msg, tt.field)
			}
		})
	}
	// Nothing was created by any of them.
	if r := a.do("GET", "/v1/experiments/valid-key", a.admin, nil); r.Status != 404 {
		t.Errorf("GET after invalid creates = %d, want 404", r.Status)
	}
}

func TestBadInput(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(201, "POST", "/v1/experiments", experimentBody("exp"))
	before := a.do("GET", "/v1/experiments/exp", a.admin, nil).Body
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"malformed json", "POST", "/v1/experiments", `{"key": "x",`, 400},
		{"not an object", "POST", "/v1/experiments", `[1,2]`, 400},
		{"empty body", "POST", "/v1/experiments", ``, 400},
		{"two values", "POST", "/v1/experiments", `{} {}`, 400},
		{"patch malformed", "PATCH", "/v1/experiments/exp", `{"traffic":`, 400},
		{"patch wrong type", "PATCH", "/v1/experiments/exp", `{"traffic":"x"}`, 400},
		{"patch unknown field", "PATCH", "/v1/experiments/exp", `{"status":"running"}`, 400},
		{"patch invalid", "PATCH", "/v1/experiments/exp", `{"traffic":2}`, 400},
		{"patch bad targeting", "PATCH", "/v1/experiments/exp", `{"targeting":{"$and":5}}`, 400},
		{"huge body", "POST", "/v1/experiments", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413},
		{"unknown experiment", "PATCH", "/v1/experiments/nope", `{"traffic":0.1}`, 404},
		{"unknown route", "GET", "/v1/nothing", ``, 404},
		{"bad limit", "GET", "/v1/experiments?limit=0", ``, 400},
		{"bad status", "GET", "/v1/experiments?status=done", ``, 400},
		{"bad cursor", "GET", "/v1/experiments?cursor=***", ``, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(tt.method, tt.path, a.admin, tt.body)
			if r.Status != tt.want {
				t.Fatalf("%s %s = %d, want %d: %.200s", tt.method, tt.path, r.Status, tt.want, r.Body)
			}
			r.errorOf(t) // every non-2xx answer is the contract's JSON error
		})
	}
	if after := a.do("GET", "/v1/experiments/exp", a.admin, nil).Body; string(after) != string(before) {
		t.Errorf("experiment changed by bad input:\nbefore %s\nafter  %s", before, after)
	}
}

func TestListExperiments(t *testing.T) {
	a := newTestAPI(t)
	for i := range 7 {
		b := experimentBody(fmt.Sprintf("exp-%d", i))
		b["metrics"] = map[string]any{}
		a.must(201, "POST", "/v1/experiments", b)
	}
	a.must(200, "POST", "/v1/experiments/exp-3/start", nil)
	var keys []string
	cursor := ""
	for range 10 {
		page := a.must(200, "GET", "/v1/experiments?limit=3&cursor="+cursor, nil)
		for _, it := range page["items"].([]any) {
			keys = append(keys, it.(map[string]any)["key"].(string))
		}
		next, _ := page["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if got := strings.Join(keys, ","); got != "exp-0,exp-1,exp-2,exp-3,exp-4,exp-5,exp-6" {
		t.Errorf("paged keys = %s", got)
	}
	running := a.must(200, "GET", "/v1/experiments?status=running", nil)["items"].([]any)
	if len(running) != 1 || running[0].(map[string]any)["key"] != "exp-3" {
		t.Errorf("status=running = %v, want only exp-3", running)
	}
}

func TestLayers(t *testing.T) {
	a := newTestAPI(t)
	mk := func(key string, extra map[string]any) response {
		b := experimentBody(key)
		b["metrics"] = map[string]any{}
		b["layer"] = "checkout"
		for k, v := range extra {
			b[k] = v
		}
		return a.do("POST", "/v1/experiments", a.admin, b)
	}
	r := mk("l1", map[string]any{"layer_share": 0.3})
	if r.Status != 201 || fmt.Sprint(r.json(t)["layer_range"]) != "[0 3000]" {
		t.Fatalf("l1 = %d %s, want range [0,3000)", r.Status, r.Body)
	}
	r = mk("l2", map[string]any{"layer_range": []any{2000, 5000}})
	if code, field, _ := r.errorOf(t); r.Status != 409 || code != "conflict" || field != "layer_range" {
		t.Fatalf("overlapping range = %d %s %s, want 409 on layer_range", r.Status, code, field)
	}
	r = mk("l2", map[string]any{"layer_range": []any{3000, 5000}})
	if r.Status != 201 {
		t.Fatalf("adjacent range = %d: %s", r.Status, r.Body)
	}
	r = mk("l3", nil) // largest free gap
	if r.Status != 201 || fmt.Sprint(r.json(t)["layer_range"]) != "[5000 10000]" {
		t.Fatalf("l3 = %d %s, want [5000,10000)", r.Status, r.Body)
	}
	r = mk("l4", nil)
	if code, _, msg := r.errorOf(t); r.Status != 409 || code != "conflict" || !strings.Contains(msg, "full") {
		t.Fatalf("full layer = %d %s %q, want 409 saying the layer is full", r.Status, code, msg)
	}
	// Archiving a draft frees its range.
	a.must(200, "POST", "/v1/experiments/l1/archive", nil)
	if r := mk("l4", nil); r.Status != 201 || fmt.Sprint(r.json(t)["layer_range"]) != "[0 3000]" {
		t.Fatalf("after archive = %d %s, want [0,3000)", r.Status, r.Body)
	}
}

func TestMetrics(t *testing.T) {
	a := newTestAPI(t)
	m := a.must(201, "POST", "/v1/metrics", map[string]any{"key": "revenue", "event": "purchase", "type": "mean", "window_hours": 168, "cap": map[string]any{"percentile": 0.99}})
	if m["cuped_hours"] != 336.0 || m["direction"] != "increase" {
		t.Errorf("defaults = %v, want cuped_hours 336 and direction increase", m)
	}
	// An explicit 0 turns CUPED off, and keeps it off through other changes.
	off := a.must(201, "POST", "/v1/metrics", map[string]any{"key": "plain", "event": "purchase", "type": "mean", "cuped_hours": 0})
	if off["cuped_hours"] != 0.0 {
		t.Errorf("cuped_hours 0 = %v, want 0 (CUPED off)", off["cuped_hours"])
	}
	if p := a.must(200, "PATCH", "/v1/metrics/plain", map[string]any{"name": "Plain revenue"}); p["cuped_hours"] != 0.0 {
		t.Errorf("after a name change cuped_hours = %v, want still 0", p["cuped_hours"])
	}
	if p := a.must(200, "PATCH", "/v1/metrics/revenue", map[string]any{"cuped_hours": 0}); p["cuped_hours"] != 0.0 {
		t.Errorf("PATCH cuped_hours 0 = %v, want 0", p["cuped_hours"])
	}
	if p := a.must(200, "PATCH", "/v1/metrics/revenue", map[string]any{"cuped_hours": 336}); p["cuped_hours"] != 336.0 {
		t.Errorf("PATCH cuped_hours 336 = %v, want 336", p["cuped_hours"])
	}
	if r := a.do("POST", "/v1/metrics", a.admin, map[string]any{"key": "revenue", "event": "x", "type": "mean"}); r.Status != 409 {
		t.Errorf("duplicate metric = %d, want 409", r.Status)
	}
	tests := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"bad type", map[string]any{"key": "m", "event": "e", "type": "sum"}, "type"},
		{"no event", map[string]any{"key": "m", "type": "conversion"}, "event"},
		{"ratio needs parts", map[string]any{"key": "m", "type": "ratio", "numerator": "a"}, "denominator"},
		{"retention window", map[string]any{"key": "m", "type": "retention", "event": "e", "from_hours": 48, "to_hours": 24}, "to_hours"},
		{"negative window", map[string]any{"key": "m", "type": "mean", "event": "e", "window_hours": -1}, "window_hours"},
		{"bad cap", map[string]any{"key": "m", "type": "mean", "event": "e", "cap": map[string]any{"percentile": 1.5}}, "cap.percentile"},
		{"cap on conversion", map[string]any{"key": "m", "type": "conversion", "event": "e", "cap": map[string]any{"value": 10}}, "cap"},
		{"bad direction", map[string]any{"key": "m", "type": "mean", "event": "e", "direction": "up"}, "direction"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do("POST", "/v1/metrics", a.admin, tt.body)
			if code, field, msg := r.errorOf(t); r.Status != 400 || code != "invalid_argument" || field != tt.field {
				t.Fatalf("POST = %d %s %q (%s), want 400 on %q", r.Status, code, field, msg, tt.field)
			}
		})
	}
	p := a.must(200, "PATCH", "/v1/metrics/revenue", map[string]any{"window_hours": 24, "direction": "decrease"})
	if p["window_hours"] != 24.0 || p["direction"] != "decrease" || p["type"] != "mean" {
		t.Errorf("patched = %v", p)
	}
	if r := a.do("PATCH", "/v1/metrics/revenue", a.admin, map[string]any{"type": "count"}); r.Status != 400 {
		t.Errorf("patch type = %d, want 400 (unknown field: type never changes)", r.Status)
	}
	// An explicit null clears a nullable field (the cap) and is refused,
	// naming the field, on any other: it would otherwise be read as "leave
	// it as it is" and ignored without a word.
	if p := a.must(200, "GET", "/v1/metrics/revenue", nil); p["cap"] == nil {
		t.Fatalf("revenue has no cap before the null patch: %v", p)
	}
	if p := a.must(200, "PATCH", "/v1/metrics/revenue", map[string]any{"cap": nil}); p["cap"] != nil {
		t.Errorf("PATCH cap null = %v, want the cap cleared", p["cap"])
	}
	if p := a.must(200, "GET", "/v1/metrics/revenue", nil); p["cap"] != nil {
		t.Errorf("after PATCH cap null, GET = %v, want no cap stored", p["cap"])
	}
	for _, field := range []string{"name", "window_hours", "direction", "event", "cuped_hours"} {
		before := a.must(200, "GET", "/v1/metrics/revenue", nil)
		r := a.do("PATCH", "/v1/metrics/revenue", a.admin, map[string]any{field: nil, "description": "changed"})
		if code, got, msg := r.errorOf(t); r.Status != 400 || code != "invalid_argument" || got != field {
			t.Errorf("PATCH %s null = %d %s %q (%s), want 400 naming %s", field, r.Status, code, got, msg, field)
		}
		if after := a.must(200, "GET", "/v1/metrics/revenue", nil); after["description"] != before["description"] {
			t.Errorf("a refused PATCH %s null changed the description to %v", field, after["description"])
		}
	}
	list := a.must(200, "GET", "/v1/metrics", nil)["items"].([]any)
	if len(list) != 2 { // revenue and plain
		t.Errorf("list = %v", list)
	}
	if r := a.do("GET", "/v1/metrics/nope", a.admin, nil); r.Status != http.StatusNotFound {
		t.Errorf("GET unknown metric = %d", r.Status)
	}
}

// TestPatchExperimentNull checks that an explicit null clears the nullable
// fields of a draft (targeting, overrides, layer_range) and is refused,
// naming the field and changing nothing, on any other field.
func TestPatchExperimentNull(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	b := experimentBody("nulls")
	b["layer"], b["layer_range"] = "checkout", []any{0, 100}
	a.must(201, "POST", "/v1/experiments", b)

	got := a.must(200, "PATCH", "/v1/experiments/nulls", map[string]any{"targeting": nil, "overrides": nil, "layer_range": nil})
	if got["targeting"] != nil {
		t.Errorf("targeting after null = %v, want none", got["targeting"])
	}
	if o, ok := got["overrides"].(map[string]any); !ok || len(o) != 0 {
		t.Errorf("overrides after null = %v, want {}", got["overrides"])
	}
	// A null layer range is allocated again: the largest free range.
	if r, ok := got["layer_range"].([]any); !ok || len(r) != 2 || r[0] != 0.0 || r[1] != 10000.0 {
		t.Errorf("layer_range after null = %v, want the whole free layer [0, 10000)", got["layer_range"])
	}
	stored := a.must(200, "GET", "/v1/experiments/nulls", nil)
	if stored["targeting"] != nil || len(stored["overrides"].(map[string]any)) != 0 {
		t.Errorf("stored after null = targeting %v overrides %v, want both cleared", stored["targeting"], stored["overrides"])
	}

	for _, field := range []string{"name", "hypothesis", "unit_type", "variants", "traffic", "layer", "salt", "metrics", "analysis"} {
		other := "name" // a valid change beside the null, which must not happen either
		if field == "name" {
			other = "hypothesis"
		}
		before := a.must(200, "GET", "/v1/experiments/nulls", nil)
		r := a.do("PATCH", "/v1/experiments/nulls", a.admin, map[string]any{field: nil, other: "changed"})
		if code, got, msg := r.errorOf(t); r.Status != 400 || code != "invalid_argument" || got != field || !strings.Contains(msg, "cannot be null") {
			t.Errorf("PATCH %s null = %d %s %q (%s), want 400 naming %s", field, r.Status, code, got, msg, field)
		}
		if after := a.must(200, "GET", "/v1/experiments/nulls", nil); after["revision"] != before["revision"] || after[other] != before[other] {
			t.Errorf("a refused PATCH %s null changed the experiment: %v -> %v", field, before, after)
		}
	}
}
