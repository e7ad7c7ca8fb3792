package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/sdk"
)

type holdoutCases struct {
	Config assign.Config `json:"config"`
	Cases  []struct {
		Name       string            `json:"name"`
		Experiment string            `json:"experiment"`
		IDs        map[string]string `json:"ids"`
		Attributes map[string]any    `json:"attributes"`
		Want       struct {
			Variant  string     `json:"variant"`
			Enrolled bool       `json:"enrolled"`
			Reason   sdk.Reason `json:"reason"`
			Holdout  string     `json:"holdout"`
		} `json:"want"`
	} `json:"cases"`
}

func readHoldoutCases(t testing.TB) holdoutCases {
	t.Helper()
	raw, err := os.ReadFile("../assign/testdata/holdout-cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var f holdoutCases
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestHoldoutCases: the SDK, bootstrapped with the config as the server
// serves it, gives every holdout conformance case its answer, and the
// same answer as the server's compiled snapshot.
func TestHoldoutCases(t *testing.T) {
	f := readHoldoutCases(t)
	body, err := json.Marshal(f.Config)
	if err != nil {
		t.Fatal(err)
	}
	server, err := assign.Compile(f.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{}, sdk.WithBootstrap(body))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close(ctx)
	held := 0
	for _, tc := range f.Cases {
		unit := sdk.Unit{IDs: tc.IDs, Attributes: tc.Attributes}
		got := c.Assign(ctx, unit, tc.Experiment)
		if got.Variant != tc.Want.Variant || got.Enrolled != tc.Want.Enrolled || got.Reason != tc.Want.Reason || got.Holdout != tc.Want.Holdout {
			t.Errorf("case %q: SDK {%q %v %s %q}, want %+v", tc.Name, got.Variant, got.Enrolled, got.Reason, got.Holdout, tc.Want)
		}
		s := server.AssignUnit(tc.Experiment, tc.IDs, tc.Attributes)
		if s.Variant != got.Variant || s.Enrolled != got.Enrolled || s.Reason != got.Reason || s.Holdout != got.Holdout {
			t.Errorf("case %q: SDK {%q %v %s}, server {%q %v %s}", tc.Name, got.Variant, got.Enrolled, got.Reason, s.Variant, s.Enrolled, s.Reason)
		}
		if got.Reason == sdk.ReasonHoldout {
			held++
			if got.Index != 0 {
				t.Errorf("case %q: held out with index %d, want 0 (the control)", tc.Name, got.Index)
			}
		}
	}
	if held < 10 {
		t.Errorf("%d held-out cases, want at least 10", held)
	}
}

// TestHoldoutExposures: the SDK records a held-out unit that would have
// been enrolled in the holdout's "holdout" arm and a unit enrolled in a
// covered experiment in its "exposed" arm, once each, under the unit's id
// of the holdout's unit type; a held-out unit sends no exposure to the
// experiment itself.
func TestHoldoutExposures(t *testing.T) {
	var held, kept string
	for i := 0; held == "" || kept == ""; i++ {
		id := fmt.Sprintf("c-%d", i)
		if assign.Bucket("holdout:prog:"+id) < 1000 {
			if held == "" {
				held = id
			}
		} else if kept == "" {
			kept = id
		}
	}
	cfg := []byte(`{"revision":1,
	 "experiments":[{"key":"exp","unit_type":"device","traffic":1,"running":true,"variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5}]},
	   {"key":"other","unit_type":"device","traffic":1,"running":true,"variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5}]}],
	 "holdouts":[{"key":"prog","unit_type":"customer","fraction":0.1,"experiments":["exp"],"running":true}]}`)
	f := newFakeServer(t, cfg)
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: f.URL(), Key: "sdk-key"}, sdk.WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for i := 0; i < 3; i++ { // repeated calls log nothing more
		for _, u := range []sdk.Unit{{CustomerID: held, DeviceID: "d-held"}, {CustomerID: kept, DeviceID: "d-kept"}, {DeviceID: "d-anon"}} {
			c.Assign(ctx, u, "exp")
			c.Assign(ctx, u, "other")
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, ev := range f.events() {
		got[fmt.Sprintf("%s %s %s:%s", ev.Experiment, ev.Variant, ev.UnitType, ev.UnitID)]++
	}
	want := map[string]int{
		"holdout:prog holdout customer:" + held: 1,
		"holdout:prog exposed customer:" + kept: 1,
	}
	a := c.Assign(ctx, sdk.Unit{DeviceID: "d-kept"}, "exp")
	want["exp "+a.Variant+" device:d-kept"] = 1
	a = c.Assign(ctx, sdk.Unit{DeviceID: "d-anon"}, "exp")
	want["exp "+a.Variant+" device:d-anon"] = 1
	for _, d := range []string{"d-held", "d-kept", "d-anon"} {
		a := c.Assign(ctx, sdk.Unit{DeviceID: d}, "other")
		want["other "+a.Variant+" device:"+d] = 1
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events sent:\n%v\nwant\n%v", got, want)
	}
}

// TestHoldoutsAgreeWithServer: on a real server, the SDK's local decision
// equals POST /v1/assign's for customers and for devices known with their
// customer id, while a holdout runs (held-out units included), after its
// fraction grows, and after it stops.
func TestHoldoutsAgreeWithServer(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	two := []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}}
	admin(t, srv, 201, "POST", "/v1/experiments", map[string]any{"key": "checkout", "unit_type": "customer", "variants": two})
	admin(t, srv, 201, "POST", "/v1/experiments", map[string]any{"key": "hero", "unit_type": "device", "variants": two, "layer": "home"})
	admin(t, srv, 201, "POST", "/v1/experiments", map[string]any{"key": "other", "unit_type": "customer", "variants": two, "traffic": 0.5})
	for _, k := range []string{"checkout", "hero", "other"} {
		admin(t, srv, 200, "POST", "/v1/experiments/"+k+"/start", nil)
	}
	admin(t, srv, 201, "POST", "/v1/holdouts", map[string]any{"key": "prog", "name": "Program", "unit_type": "customer",
		"fraction": 0.05, "experiments": []string{"checkout"}, "layers": []string{"home"}})
	admin(t, srv, 200, "POST", "/v1/holdouts/prog/start", nil)

	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: srv.URL, Key: apptest.SDKKey}, sdk.WithStartupTimeout(30*time.Second), sdk.WithPollInterval(0), sdk.WithExposureLogging(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	serverAssignUnit := func(body map[string]any) map[string]any {
		t.Helper()
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", srv.URL+"/v1/assign", bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+apptest.SDKKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct{ Assignments []map[string]any }
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 || len(out.Assignments) != 1 {
			t.Fatalf("POST /v1/assign = %d, %v, %v", res.StatusCode, err, out)
		}
		return out.Assignments[0]
	}
	agree := func(stage string) (held int) {
		t.Helper()
		if err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 300; i++ {
			cust, dev := fmt.Sprintf("c-%d", i), fmt.Sprintf("d-%d", i)
			for _, x := range []struct {
				exp  string
				body map[string]any
				unit sdk.Unit
			}{
				{"checkout", map[string]any{"unit_type": "customer", "unit_id": cust}, sdk.Unit{CustomerID: cust}},
				{"other", map[string]any{"unit_type": "customer", "unit_id": cust}, sdk.Unit{CustomerID: cust}},
				{"hero", map[string]any{"unit_type": "device", "unit_id": dev, "ids": map[string]string{"customer": cust}}, sdk.Unit{CustomerID: cust, DeviceID: dev}},
				{"hero", map[string]any{"unit_type": "device", "unit_id": dev}, sdk.Unit{DeviceID: dev}},
			} {
				x.body["experiments"] = []string{x.exp}
				s := serverAssignUnit(x.body)
				l := c.Assign(ctx, x.unit, x.exp)
				sv, _ := s["variant"].(string)
				sh, _ := s["holdout"].(string)
				if string(l.Reason) != s["reason"] || l.Enrolled != s["enrolled"] || l.Variant != sv || l.Holdout != sh {
					t.Errorf("%s: %s %v: SDK {%s %v %q %q}, server %v", stage, x.exp, x.body, l.Reason, l.Enrolled, l.Variant, l.Holdout, s)
				}
				if l.Reason == sdk.ReasonHoldout {
					held++
				}
			}
		}
		return held
	}
	heldAt5 := agree("running at 5%")
	if heldAt5 == 0 {
		t.Errorf("no unit held out at 5%%")
	}
	admin(t, srv, 200, "PATCH", "/v1/holdouts/prog", map[string]any{"fraction": 0.1})
	if heldAt10 := agree("running at 10%"); heldAt10 <= heldAt5 {
		t.Errorf("held-out decisions at 10%% = %d, want more than at 5%% (%d)", heldAt10, heldAt5)
	}
	admin(t, srv, 200, "POST", "/v1/holdouts/prog/stop", nil)
	if held := agree("stopped"); held != 0 {
		t.Errorf("%d held-out decisions after stop, want 0", held)
	}
}

// TestHoldoutExposuresReachResults: the holdout arms the SDK records are
// accepted by a real server and counted in the holdout's results, the
// held-out units in arm holdout.
func TestHoldoutExposuresReachResults(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	two := []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}}
	admin(t, srv, 201, "POST", "/v1/experiments", map[string]any{"key": "hero", "unit_type": "device", "variants": two})
	admin(t, srv, 200, "POST", "/v1/experiments/hero/start", nil)
	admin(t, srv, 201, "POST", "/v1/holdouts", map[string]any{"key": "prog", "name": "Program", "unit_type": "customer", "fraction": 0.1, "experiments": []string{"hero"}})
	admin(t, srv, 200, "POST", "/v1/holdouts/prog/start", nil)
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: srv.URL, Key: apptest.SDKKey}, sdk.WithStartupTimeout(30*time.Second), sdk.WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	want := map[string]int{}
	for i := 0; i < 200; i++ {
		a := c.Assign(ctx, sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i), DeviceID: fmt.Sprintf("d-%d", i)}, "hero")
		if a.Reason == sdk.ReasonHoldout {
			want["holdout"]++
		} else {
			want["exposed"]++
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Rejected != 0 || st.Sent != uint64(200+want["exposed"]) {
		t.Fatalf("stats %+v: want %d sent (one holdout arm each, one exposure per enrolled device), none rejected", st, 200+want["exposed"])
	}
	var res struct {
		Metrics []any
		Health  struct {
			SRM struct{ Observed []int }
		}
		Units int
	}
	if err := json.Unmarshal(admin(t, srv, 200, "GET", "/v1/holdouts/prog/results", nil), &res); err != nil {
		t.Fatal(err)
	}
	if res.Units != 200 || len(res.Health.SRM.Observed) != 2 || res.Health.SRM.Observed[0] != want["holdout"] || res.Health.SRM.Observed[1] != want["exposed"] {
		t.Errorf("results: %d units, observed %v; want 200, [%d %d]", res.Units, res.Health.SRM.Observed, want["holdout"], want["exposed"])
	}
}
