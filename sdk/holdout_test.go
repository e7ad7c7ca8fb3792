package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/flywheel-oss/flywheel/assign"
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
