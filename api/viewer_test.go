package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// viewerMay is every operation a viewer key may call, as the scope is
// defined: reads of experiments, their history, results and timeseries,
// reads of metrics, of saved audiences and of holdouts (and their history and
// results), and the
// power calculator. Never a unit's data, a write
// or an SDK route. The public operations (no key needed) are allowed too.
var viewerMay = map[string]bool{
	"GET /v1/experiments":                          true,
	"GET /v1/experiments/{key}":                    true,
	"GET /v1/experiments/{key}/history":            true,
	"GET /v1/experiments/{key}/epochs":             true, // a bandit's weight epochs
	"GET /v1/experiments/{key}/results":            true,
	"GET /v1/experiments/{key}/results/timeseries": true,
	"GET /v1/experiments/{key}/uplift":             true,
	"GET /v1/experiments/{key}/attributes":         true, // what ?segment= can take
	"GET /v1/audiences":                            true,
	"GET /v1/audiences/{key}":                      true,
	"GET /v1/audiences/{key}/history":              true,
	"GET /v1/holdouts":                             true,
	"GET /v1/holdouts/{key}":                       true,
	"GET /v1/holdouts/{key}/history":               true,
	"GET /v1/holdouts/{key}/results":               true,
	"GET /v1/holdouts/{key}/results/timeseries":    true,
	"GET /v1/metrics":                              true,
	"GET /v1/metrics/{key}":                        true,
	"POST /v1/power":                               true,
	// Every key may read its own name and scope.
	"GET /v1/key": true,
}

// TestViewerScope sends every operation of the OpenAPI document, with its
// examples, under a viewer key: the ones viewerMay lists (and the public
// ones) answer as they do for an admin key, every other one is a 403
// permission_denied that says what a viewer may do, and afterwards nothing
// has changed. The operations come from the document, so a route added
// later is checked too, and refused unless listed here; the document's
// security must say the same (TestOpenAPIDocumentValid ties it to the
// server's route groups).
func TestViewerScope(t *testing.T) {
	h := newHostileEnv(t)
	a, c := h.a, h.c
	// Data a forbidden call could change: an event of the examples' unit.
	a.must(http.StatusOK, "POST", "/v1/events", map[string]any{"events": []any{map[string]any{
		"id": uuid.NewString(), "type": "track", "event": "purchase", "value": 12.5,
		"unit_type": "customer", "unit_id": "c-42"}}})
	before := viewerSnapshot(a)

	ops := c.operations()
	seen := map[string]bool{}
	allowed, forbidden := 0, 0
	for _, o := range ops {
		name := strings.ToUpper(o.method) + " " + o.path
		seen[name] = true
		public := schemesOf(c.doc, o.op) == ""
		documented := strings.Contains("|"+schemesOf(c.doc, o.op)+"|", "|viewerKey|")
		if documented != viewerMay[name] {
			t.Errorf("%s: the document's security allows a viewer key: %v; the viewer scope: %v", name, documented, viewerMay[name])
		}
		x := c.exampleCall(o)
		if public || viewerMay[name] {
			// What an admin gets (these are reads), the viewer gets.
			admin := a.do(x.method, x.path, a.admin, x.body)
			if admin.Status >= 300 {
				t.Fatalf("%s with an admin key = %d; the examples should make it succeed: %.300s", name, admin.Status, admin.Body)
			}
			x.key, x.want = a.viewer, admin.Status
			c.do(a, x)
			allowed++
			continue
		}
		x.key, x.want, x.rejected = a.viewer, http.StatusForbidden, true
		r := c.do(a, x)
		if code, _, msg := r.errorOf(t); code != "permission_denied" || !strings.Contains(msg, "a viewer key may only read experiments, metrics, saved audiences, holdouts, results and history") {
			t.Errorf("%s with a viewer key: error %s %q, want permission_denied saying what a viewer may do", name, code, msg)
		}
		forbidden++
	}
	for name := range viewerMay {
		if !seen[name] {
			t.Errorf("viewerMay lists %s, which the document does not have", name)
		}
	}
	if allowed < len(viewerMay) || forbidden < 15 {
		t.Fatalf("%d operations allowed and %d forbidden; the document's operations were not all sent", allowed, forbidden)
	}

	// A viewer key is a valid key: an unknown route is a 404 for it, not a 403.
	if r := a.do("GET", "/v1/nothing", a.viewer, nil); r.Status != http.StatusNotFound {
		t.Errorf("GET /v1/nothing with a viewer key = %d, want 404", r.Status)
	}
	// An sdk key may not read what a viewer reads.
	if r := a.do("GET", "/v1/experiments", a.sdk, nil); r.Status != http.StatusForbidden {
		t.Errorf("GET /v1/experiments with an sdk key = %d, want 403", r.Status)
	}
	if diff := cmp.Diff(before, viewerSnapshot(a)); diff != "" {
		t.Errorf("the viewer's refused calls changed something (-before +after):\n%s", diff)
	}
}

// viewerSnapshot reads, with the admin key, everything a viewer's write
// could change: definitions, their audit log, the SDK configuration, the
// examples' unit and its consent.
func viewerSnapshot(a *testAPI) map[string]string {
	a.t.Helper()
	out := map[string]string{}
	paths := []string{
		"/v1/experiments?status=all", "/v1/metrics", "/v1/experiments/checkout-button/history",
		"/v1/units/customer/c-42",
	}
	for _, p := range paths {
		r := a.do("GET", p, a.admin, nil)
		if r.Status != http.StatusOK {
			a.t.Fatalf("GET %s = %d: %.300s", p, r.Status, r.Body)
		}
		out[p] = string(r.Body)
	}
	r := a.do("GET", "/v1/sdk/config", a.admin, nil)
	out["sdk config etag"] = r.Header.Get("ETag")
	return out
}
