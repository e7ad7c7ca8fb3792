package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/sdk"
)

// TestAudienceLifecycle drives saved audiences end to end on a real
// database: create, reference from an experiment, the SDK config carrying
// it, a change that names the running experiment it affects and moves the
// config version, the refused archive, the audit log, and the archive once
// unused.
func TestAudienceLifecycle(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")

	created := a.must(http.StatusCreated, "POST", "/v1/audiences", map[string]any{
		"key": "high-value", "name": "High value", "condition": map[string]any{"ltv": map[string]any{"$gte": 500}}})
	if created["key"] != "high-value" || created["name"] != "High value" {
		t.Fatalf("POST /v1/audiences = %v", created)
	}
	a.must(http.StatusCreated, "POST", "/v1/audiences", map[string]any{
		"key": "high-value-fr", "name": "High value in France",
		"condition": map[string]any{"$audience": "high-value", "country": "FR"}})

	exp := experimentBody("checkout")
	exp["targeting"] = map[string]any{"$or": []any{map[string]any{"$audience": "high-value-fr"}, map[string]any{"beta": true}}}
	a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
	a.must(http.StatusOK, "POST", "/v1/experiments/checkout/start", nil)
	// An unrelated audience stays out of the SDK config.
	a.must(http.StatusCreated, "POST", "/v1/audiences", map[string]any{"key": "unused", "name": "Unused", "condition": map[string]any{}})

	cfg := a.do("GET", "/v1/sdk/config", a.sdk, nil)
	if cfg.Status != http.StatusOK {
		t.Fatalf("GET /v1/sdk/config = %d: %s", cfg.Status, cfg.Body)
	}
	var body struct {
		Audiences map[string]json.RawMessage `json:"audiences"`
	}
	if err := json.Unmarshal(cfg.Body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Audiences) != 2 || body.Audiences["high-value"] == nil || body.Audiences["high-value-fr"] == nil {
		t.Fatalf("sdk config audiences = %s, want high-value and high-value-fr", cfg.Body)
	}
	etag := cfg.Header.Get("ETag")

	assign := func(attrs map[string]any) bool {
		t.Helper()
		r := a.must(http.StatusOK, "POST", "/v1/assign", map[string]any{"unit_type": "customer", "unit_id": "c-42", "experiments": []any{"checkout"}, "attributes": attrs})
		res := r["assignments"].([]any)[0].(map[string]any)
		return res["enrolled"] == true
	}
	// POST /v1/assign takes an sdk or admin key; must uses the admin key.
	if !assign(map[string]any{"country": "FR", "ltv": 900}) {
		t.Errorf("assign FR, ltv 900: not enrolled, want enrolled")
	}
	if assign(map[string]any{"country": "FR", "ltv": 100}) {
		t.Errorf("assign FR, ltv 100: enrolled, want not")
	}

	// Changing the inner audience affects the running experiment through
	// the outer one.
	patched := a.must(http.StatusOK, "PATCH", "/v1/audiences/high-value", map[string]any{"condition": map[string]any{"ltv": map[string]any{"$gte": 50}}})
	if got := patched["affected_experiments"]; !slices.Equal(toStrings(got), []string{"checkout"}) {
		t.Errorf("PATCH affected_experiments = %v, want [checkout]", got)
	}
	if !assign(map[string]any{"country": "FR", "ltv": 100}) {
		t.Errorf("assign FR, ltv 100 after the change: not enrolled, want enrolled")
	}
	if r := a.do("GET", "/v1/sdk/config", a.sdk, nil, "If-None-Match", etag); r.Status != http.StatusOK || r.Header.Get("ETag") == etag {
		t.Errorf("GET /v1/sdk/config after the change = %d with ETag %s, want 200 and a new ETag", r.Status, r.Header.Get("ETag"))
	}

	hist := a.must(http.StatusOK, "GET", "/v1/audiences/high-value/history", nil)
	items := hist["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("history has %d entries, want 2: %v", len(items), hist)
	}
	last := items[1].(map[string]any)
	if last["action"] != "update" || !slices.Equal(toStrings(last["affected_experiments"]), []string{"checkout"}) || last["changes"].(map[string]any)["condition"] == nil {
		t.Errorf("history entry = %v, want an update of condition naming checkout", last)
	}

	// The experiment's own log says its targeting's audience changed.
	eh := a.must(http.StatusOK, "GET", "/v1/experiments/checkout/history", nil)["items"].([]any)
	if e := eh[len(eh)-1].(map[string]any); e["action"] != "audience_update" || e["changes"].(map[string]any)["audiences.high-value.condition"] == nil {
		t.Errorf("experiment history ends with %v, want an audience_update of audiences.high-value.condition", e)
	}

	// Archiving an audience in use is refused, naming its users, and
	// changes nothing.
	r := a.do("POST", "/v1/audiences/high-value/archive", a.admin, nil)
	if code, _, msg := r.errorOf(t); r.Status != http.StatusConflict || code != "conflict" || !strings.Contains(msg, `"checkout"`) || !strings.Contains(msg, `"high-value-fr"`) {
		t.Errorf("archive in use = %d %s %q, want 409 naming checkout and high-value-fr", r.Status, code, msg)
	}
	got := a.must(http.StatusOK, "GET", "/v1/audiences/high-value", nil)
	if got["archived_at"] != nil {
		t.Errorf("refused archive archived it: %v", got)
	}
	// GET names the same users the refusal named.
	used, _ := got["used_by"].(map[string]any)
	if !slices.Equal(toStrings(used["experiments"]), []string{"checkout"}) || !slices.Equal(toStrings(used["audiences"]), []string{"high-value-fr"}) {
		t.Errorf("used_by = %v, want experiments [checkout] and audiences [high-value-fr]", got["used_by"])
	}
	if got := a.must(http.StatusOK, "GET", "/v1/audiences/unused", nil)["used_by"].(map[string]any); len(got["experiments"].([]any)) != 0 || len(got["audiences"].([]any)) != 0 {
		t.Errorf("used_by of an unused audience = %v, want empty lists", got)
	}

	// An unused audience archives, leaves the list, and no new reference
	// may name it.
	a.must(http.StatusOK, "POST", "/v1/audiences/unused/archive", nil)
	list := a.must(http.StatusOK, "GET", "/v1/audiences", nil)
	if n := len(list["items"].([]any)); n != 2 {
		t.Errorf("GET /v1/audiences lists %d, want 2", n)
	}
	if n := len(a.must(http.StatusOK, "GET", "/v1/audiences?archived=true", nil)["items"].([]any)); n != 3 {
		t.Errorf("GET /v1/audiences?archived=true lists %d, want 3", n)
	}
	exp2 := experimentBody("other")
	exp2["targeting"] = map[string]any{"$audience": "unused"}
	r = a.do("POST", "/v1/experiments", a.admin, exp2)
	if code, field, msg := r.errorOf(t); r.Status != http.StatusBadRequest || field != "targeting.$audience" || !strings.Contains(msg, "unknown audience") {
		t.Errorf("experiment referencing an archived audience = %d %s %s %q, want 400 at targeting.$audience", r.Status, code, field, msg)
	}

	// Viewers read, never write.
	if r := a.do("GET", "/v1/audiences/high-value", a.viewer, nil); r.Status != http.StatusOK {
		t.Errorf("viewer GET audience = %d, want 200", r.Status)
	}
	if r := a.do("PATCH", "/v1/audiences/high-value", a.viewer, map[string]any{"name": "x"}); r.Status != http.StatusForbidden {
		t.Errorf("viewer PATCH audience = %d, want 403", r.Status)
	}
}

// TestAudienceBadInput checks that every bad audience or reference is a
// 400 (or 404, 409) naming the field, and changes nothing.
func TestAudienceBadInput(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/audiences", map[string]any{"key": "fr", "name": "France", "condition": map[string]any{"country": "FR"}})
	a.must(http.StatusCreated, "POST", "/v1/audiences", map[string]any{"key": "outer", "name": "Outer", "condition": map[string]any{"$audience": "fr"}})
	rev := a.do("GET", "/v1/sdk/config", a.sdk, nil).Header.Get("ETag")

	withTargeting := func(key string, targeting any) map[string]any {
		e := experimentBody(key)
		e["targeting"] = targeting
		return e
	}
	tests := []struct {
		name          string
		method, path  string
		body          any
		status        int
		field, substr string
	}{
		{"unknown audience in an experiment", "POST", "/v1/experiments",
			withTargeting("e1", map[string]any{"country": "FR", "$or": []any{map[string]any{"$audience": "nope"}}}), 400, "targeting.$or[0].$audience", `unknown audience "nope"`},
		{"a reference that is not a string", "POST", "/v1/experiments",
			withTargeting("e2", map[string]any{"$audience": 7}), 400, "targeting.$audience", "must be the key"},
		{"unknown audience in an audience", "POST", "/v1/audiences",
			map[string]any{"key": "x", "name": "X", "condition": map[string]any{"$nor": []any{map[string]any{"$audience": "nope"}}}}, 400, "condition.$nor[0].$audience", `unknown audience "nope"`},
		{"a self reference", "POST", "/v1/audiences",
			map[string]any{"key": "self", "name": "Self", "condition": map[string]any{"$audience": "self"}}, 400, "condition.$audience", "cycle"},
		{"a cycle through a patch", "PATCH", "/v1/audiences/fr",
			map[string]any{"condition": map[string]any{"$audience": "outer"}}, 400, "condition.$audience", "fr → outer → fr"},
		{"an invalid condition", "POST", "/v1/audiences",
			map[string]any{"key": "bad", "name": "Bad", "condition": map[string]any{"age": map[string]any{"$gt": true}}}, 400, "condition.age.$gt", ""},
		{"a condition that is not an object", "POST", "/v1/audiences",
			map[string]any{"key": "arr", "name": "Arr", "condition": []any{}}, 400, "condition", ""},
		{"a condition over 64 KiB", "POST", "/v1/audiences",
			map[string]any{"key": "big", "name": "Big", "condition": map[string]any{"x": strings.Repeat("y", 64<<10)}}, 400, "condition", "at most 65536 bytes"},
		{"no condition", "POST", "/v1/audiences", map[string]any{"key": "none", "name": "None"}, 400, "condition", "required"},
		{"no name", "POST", "/v1/audiences", map[string]any{"key": "noname", "condition": map[string]any{}}, 400, "name", "required"},
		{"a bad key", "POST", "/v1/audiences", map[string]any{"key": "Bad Key", "name": "B", "condition": map[string]any{}}, 400, "key", ""},
		{"a duplicate key", "POST", "/v1/audiences", map[string]any{"key": "fr", "name": "Again", "condition": map[string]any{}}, 409, "key", "already exists"},
		{"an unknown field", "POST", "/v1/audiences", map[string]any{"key": "u", "name": "U", "condition": map[string]any{}, "color": "red"}, 400, "", ""},
		{"a null condition in a patch", "PATCH", "/v1/audiences/fr", map[string]any{"condition": nil}, 400, "condition", ""},
		{"patch of an unknown audience", "PATCH", "/v1/audiences/nope", map[string]any{"name": "N"}, 404, "", ""},
		{"archive of an unknown audience", "POST", "/v1/audiences/nope/archive", nil, 404, "", ""},
		{"archive of an audience another uses", "POST", "/v1/audiences/fr/archive", nil, 409, "", `"outer"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(tt.method, tt.path, a.admin, tt.body)
			if r.Status != tt.status {
				t.Fatalf("%s %s = %d, want %d: %s", tt.method, tt.path, r.Status, tt.status, r.Body)
			}
			_, field, msg := r.errorOf(t)
			if (tt.field != "" && field != tt.field) || !strings.Contains(msg, tt.substr) {
				t.Errorf("%s %s: error at %q: %q, want at %q containing %q", tt.method, tt.path, field, msg, tt.field, tt.substr)
			}
		})
	}
	// Nothing changed: the same audiences, no experiment, the same config.
	if n := len(a.must(http.StatusOK, "GET", "/v1/audiences?archived=true", nil)["items"].([]any)); n != 2 {
		t.Errorf("audiences after bad input: %d, want 2", n)
	}
	if n := len(a.must(http.StatusOK, "GET", "/v1/experiments?status=all", nil)["items"].([]any)); n != 0 {
		t.Errorf("experiments after bad input: %d, want 0", n)
	}
	if got := a.must(http.StatusOK, "GET", "/v1/audiences/fr", nil); got["name"] != "France" || !strings.Contains(string(mustJSON(t, got["condition"])), `"FR"`) {
		t.Errorf("audience fr after bad patches = %v", got)
	}
	if got := a.do("GET", "/v1/sdk/config", a.sdk, nil).Header.Get("ETag"); got != rev {
		t.Errorf("sdk config ETag after bad input = %s, want %s", got, rev)
	}
}

func toStrings(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestAudiencesServerAndSDKAgree runs the real SDK against the server:
// experiments targeted through nested audiences, assigned by POST
// /v1/assign and locally by an SDK that fetched GET /v1/sdk/config, agree
// on every unit, before and after an audience changes (the SDK picks the
// change up with its next Refresh).
func TestAudiencesServerAndSDKAgree(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	for _, au := range []map[string]any{
		{"key": "high-value", "name": "High value", "condition": map[string]any{"ltv": map[string]any{"$gte": 500}}},
		{"key": "mobile", "name": "Mobile", "condition": map[string]any{"platform": map[string]any{"$in": []any{"ios", "android"}}}},
		{"key": "hv-desktop", "name": "High value on desktop", "condition": map[string]any{"$audience": "high-value", "$nor": []any{map[string]any{"$audience": "mobile"}}}},
	} {
		a.must(http.StatusCreated, "POST", "/v1/audiences", au)
	}
	targetings := map[string]any{
		"e-nested": map[string]any{"$audience": "hv-desktop"},
		"e-or":     map[string]any{"$or": []any{map[string]any{"$audience": "mobile"}, map[string]any{"country": "FR"}}},
		"e-mixed":  map[string]any{"$audience": "high-value", "country": map[string]any{"$ne": "DE"}},
	}
	for key, tg := range targetings {
		e := experimentBody(key)
		e["targeting"] = tg
		e["overrides"] = map[string]any{}
		a.must(http.StatusCreated, "POST", "/v1/experiments", e)
		a.must(http.StatusOK, "POST", "/v1/experiments/"+key+"/start", nil)
	}
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: a.srv.URL, Key: a.sdk})
	if err != nil {
		t.Fatalf("sdk.New: %v", err)
	}
	defer c.Close(ctx)
	if err := c.EnsureLoaded(ctx); err != nil {
		t.Fatalf("EnsureLoaded: %v", err)
	}
	var attrs []map[string]any
	for _, ltv := range []any{nil, 100.0, 500.0, 900.0} {
		for _, platform := range []any{nil, "ios", "web"} {
			for _, country := range []any{"FR", "DE"} {
				m := map[string]any{"country": country}
				if ltv != nil {
					m["ltv"] = ltv
				}
				if platform != nil {
					m["platform"] = platform
				}
				attrs = append(attrs, m)
			}
		}
	}
	check := func(stage string) (enrolled int) {
		t.Helper()
		for i, at := range attrs {
			unit := fmt.Sprintf("c-%d", i)
			r := a.must(http.StatusOK, "POST", "/v1/assign", map[string]any{"unit_type": "customer", "unit_id": unit, "attributes": at})
			for _, x := range r["assignments"].([]any) {
				s := x.(map[string]any)
				key := s["experiment"].(string)
				got := c.Assign(ctx, sdk.Unit{IDs: map[string]string{"customer": unit}, Attributes: at}, key)
				variant, _ := s["variant"].(string)
				if got.Enrolled != (s["enrolled"] == true) || got.Variant != variant || string(got.Reason) != s["reason"] {
					t.Errorf("%s: %s for %v: server {%v %v %v}, SDK {%q %v %s}", stage, key, at, s["variant"], s["enrolled"], s["reason"], got.Variant, got.Enrolled, got.Reason)
				}
				if got.Enrolled {
					enrolled++
				}
			}
		}
		return enrolled
	}
	before := check("before")
	if before == 0 {
		t.Fatal("nobody enrolled: the cases test nothing")
	}
	a.must(http.StatusOK, "PATCH", "/v1/audiences/high-value", map[string]any{"condition": map[string]any{"ltv": map[string]any{"$gte": 50}}})
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if after := check("after"); after <= before {
		t.Errorf("enrolled %d after widening high-value, %d before: want more", after, before)
	}
}

// TestAudienceLimit: with MaxLiveAudiences audiences that are not
// archived, creating one more is a 409 and changes nothing; archived ones
// do not count.
func TestAudienceLimit(t *testing.T) {
	a := newTestAPI(t)
	conn := pgtest.Connect(t, a.url)
	if _, err := conn.Exec(context.Background(), `INSERT INTO audiences (key, name, condition, created_at, updated_at)
		SELECT 'a-' || i, 'A', '{}', now(), now() FROM generate_series(1, $1) AS i`, flywheel.MaxLiveAudiences); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"key": "one-more", "name": "One more", "condition": map[string]any{}}
	r := a.do("POST", "/v1/audiences", a.admin, body)
	if code, _, msg := r.errorOf(t); r.Status != http.StatusConflict || !strings.Contains(msg, "archive one first") {
		t.Fatalf("POST /v1/audiences past the limit = %d %s %q, want 409", r.Status, code, msg)
	}
	if r := a.do("GET", "/v1/audiences/one-more", a.admin, nil); r.Status != http.StatusNotFound {
		t.Errorf("GET the refused audience = %d, want 404", r.Status)
	}
	a.must(http.StatusOK, "POST", "/v1/audiences/a-1/archive", nil)
	a.must(http.StatusCreated, "POST", "/v1/audiences", body)
}
