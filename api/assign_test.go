package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel/assign"
)

func TestAssign(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(201, "POST", "/v1/experiments", experimentBody("checkout-button"))
	draft := experimentBody("later")
	draft["metrics"] = map[string]any{}
	a.must(201, "POST", "/v1/experiments", draft)
	dev := experimentBody("device-exp")
	dev["unit_type"], dev["metrics"], dev["targeting"] = "device", map[string]any{}, nil
	a.must(201, "POST", "/v1/experiments", dev)

	req := func(id string, attrs map[string]any, exps ...string) map[string]any {
		b := map[string]any{"unit_type": "customer", "unit_id": id, "attributes": attrs}
		if exps != nil {
			b["experiments"] = exps
		}
		r := a.do("POST", "/v1/assign", a.sdk, b)
		if r.Status != 200 {
			t.Fatalf("assign = %d: %s", r.Status, r.Body)
		}
		return r.json(t)
	}
	first := func(m map[string]any) map[string]any {
		as := m["assignments"].([]any)
		if len(as) != 1 {
			t.Fatalf("assignments = %v, want one", as)
		}
		return as[0].(map[string]any)
	}
	if got := first(req("c-1", nil, "checkout-button")); got["reason"] != "not_running" || got["enrolled"] != false || got["variant"] != nil {
		t.Fatalf("draft = %v, want not_running and no variant", got)
	}
	a.must(200, "POST", "/v1/experiments/checkout-button/start", nil)
	a.must(200, "POST", "/v1/experiments/device-exp/start", nil)

	// The server answers exactly what the assign package computes.
	var def assign.Experiment
	raw, _ := json.Marshal(experimentBody("checkout-button"))
	if err := json.Unmarshal(raw, &def); err != nil {
		t.Fatal(err)
	}
	def.Salt, def.Running = "checkout-button", true
	snap, err := assign.Compile(assign.Config{Experiments: []assign.Experiment{def}})
	if err != nil {
		t.Fatal(err)
	}
	fr := map[string]any{"country": "FR"}
	enrolled := 0
	for i := range 200 {
		id := fmt.Sprintf("c-%d", i)
		got := first(req(id, fr, "checkout-button"))
		want := snap.Assign("checkout-button", id, fr)
		if got["reason"] != string(want.Reason) || got["enrolled"] != want.Enrolled {
			t.Fatalf("assign %s = %v, want %+v", id, got, want)
		}
		if want.Enrolled {
			enrolled++
			if got["variant"] != want.Variant {
				t.Fatalf("assign %s variant = %v, want %s", id, got["variant"], want.Variant)
			}
		}
	}
	if enrolled != 200 {
		t.Errorf("enrolled %d of 200 at traffic 1, want all", enrolled)
	}
	if got := first(req("c-1", map[string]any{"country": "US"}, "checkout-button")); got["reason"] != "targeting" || got["enrolled"] != false {
		t.Errorf("US = %v, want targeting", got)
	}
	got := first(req("qa-customer-1", nil, "checkout-button"))
	if got["reason"] != "override" || got["variant"] != "green" || got["payload"].(map[string]any)["color"] != "#0a0" {
		t.Errorf("override = %v, want green with its payload", got)
	}
	// An unknown experiment is not running, as the SDK answers it: an app
	// gets the same decision from the server and from local assignment.
	if got := first(req("c-1", fr, "no-such-experiment")); got["reason"] != "not_running" || got["enrolled"] != false || got["variant"] != nil {
		t.Errorf("unknown experiment = %v, want not_running, not enrolled", got)
	}
	if want := snap.Assign("no-such-experiment", "c-1", fr); want.Reason != "not_running" {
		t.Errorf("the snapshot (the SDK's assignment) answers %q for an unknown experiment", want.Reason)
	}
	// Omitted experiments: every running experiment of this unit type.
	all := req("c-2", fr)["assignments"].([]any)
	if len(all) != 1 || all[0].(map[string]any)["experiment"] != "checkout-button" {
		t.Errorf("all = %v, want only checkout-button (device-exp is on device ids, later is a draft)", all)
	}

	for _, tt := range []struct {
		name  string
		body  string
		code  int
		field string
	}{
		{"other unit type", `{"unit_type":"customer","unit_id":"c","experiments":["device-exp"]}`, 400, "experiments[0]"},
		{"no unit id", `{"unit_type":"customer"}`, 400, "unit_id"},
		{"bad unit type", `{"unit_type":"Customer","unit_id":"c"}`, 400, "unit_type"},
		{"attributes not an object", `{"unit_type":"customer","unit_id":"c","attributes":[1]}`, 400, "attributes"},
		{"unknown field", `{"unit_type":"customer","unit_id":"c","user":"x"}`, 400, "user"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do("POST", "/v1/assign", a.sdk, tt.body)
			if _, field, msg := r.errorOf(t); r.Status != tt.code || field != tt.field {
				t.Errorf("= %d field %q (%s), want %d field %q", r.Status, field, msg, tt.code, tt.field)
			}
		})
	}
}

func TestSDKConfig(t *testing.T) {
	a := newTestAPI(t)
	b := experimentBody("exp")
	b["metrics"] = map[string]any{}
	a.must(201, "POST", "/v1/experiments", b)
	a.must(200, "POST", "/v1/experiments/exp/start", nil)

	r := a.do("GET", "/v1/sdk/config", a.sdk, nil)
	etag := r.Header.Get("ETag")
	if r.Status != 200 || etag == "" {
		t.Fatalf("config = %d etag %q", r.Status, etag)
	}
	var cfg assign.Config
	if err := json.Unmarshal(r.Body, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Experiments) != 1 || cfg.Experiments[0].Key != "exp" || !cfg.Experiments[0].Running || cfg.Experiments[0].Overrides["qa-customer-1"] != "green" {
		t.Fatalf("config = %+v, want exp with its overrides", cfg)
	}
	if _, err := assign.Compile(cfg); err != nil {
		t.Fatalf("an SDK cannot compile the config: %v", err)
	}
	if r := a.do("GET", "/v1/sdk/config", a.sdk, nil, "If-None-Match", etag); r.Status != 304 {
		t.Fatalf("If-None-Match same etag = %d, want 304", r.Status)
	}
	a.must(200, "PATCH", "/v1/experiments/exp", map[string]any{"traffic": 0.2})
	r = a.do("GET", "/v1/sdk/config", a.sdk, nil, "If-None-Match", etag)
	if r.Status != 200 || r.Header.Get("ETag") == etag {
		t.Fatalf("after a change = %d etag %q, want 200 and a new etag", r.Status, r.Header.Get("ETag"))
	}
	if err := json.Unmarshal(r.Body, &cfg); err != nil || cfg.Experiments[0].Traffic != 0.2 {
		t.Fatalf("traffic in new config = %v (%v), want 0.2", cfg.Experiments[0].Traffic, err)
	}
}

func TestHealth(t *testing.T) {
	a := newTestAPI(t)
	if r := a.do("GET", "/readyz", "", nil); r.Status != 200 {
		t.Errorf("readyz = %d: %s", r.Status, r.Body)
	}
	a.do("GET", "/v1/experiments", a.admin, nil)
	r := a.do("GET", "/metrics", "", nil)
	if r.Status != 200 || !containsAll(string(r.Body), `flywheel_http_requests_total{method="GET",route="/v1/experiments",status="200"} 1`, "flywheel_http_request_duration_seconds_bucket") {
		t.Errorf("metrics = %d:\n%.2000s", r.Status, r.Body)
	}
	if id := a.do("GET", "/healthz", "", nil, "X-Request-ID", "abc-123").Header.Get("X-Request-ID"); id != "abc-123" {
		t.Errorf("X-Request-ID echoed = %q", id)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
