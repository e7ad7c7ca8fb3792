package sdk_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/flywheel-oss/flywheel/assign"
	"github.com/flywheel-oss/flywheel/sdk"
)

// vectors is the part of assign/testdata/vectors.json the SDK checks: the
// experiments (GET /v1/sdk/config wire format) and the cases.
type vectors struct {
	Experiments []assign.Experiment `json:"experiments"`
	Cases       []struct {
		Name       string         `json:"name"`
		Experiment string         `json:"experiment"`
		UnitID     string         `json:"unit_id"`
		Attributes map[string]any `json:"attributes"`
		Want       struct {
			Variant  string `json:"variant"`
			Index    int    `json:"index"`
			Enrolled bool   `json:"enrolled"`
			Reason   string `json:"reason"`
		} `json:"want"`
	} `json:"cases"`
}

func readVectors(t testing.TB) vectors {
	t.Helper()
	raw, err := os.ReadFile("../assign/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode vectors: %v", err)
	}
	return v
}

// TestGolden passes every case of the cross-SDK vectors through the SDK:
// a client bootstrapped from the vectors' experiments, with the unit id set
// under each experiment's unit type.
func TestGolden(t *testing.T) {
	v := readVectors(t)
	if len(v.Cases) < 300 {
		t.Fatalf("vectors hold %d cases, want at least 300", len(v.Cases))
	}
	bootstrap, err := json.Marshal(assign.Config{Revision: 1, Experiments: v.Experiments})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{}, sdk.WithBootstrap(bootstrap))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close(ctx)
	unitTypes := map[string]string{}
	for _, e := range v.Experiments {
		unitTypes[e.Key] = e.UnitType
	}
	for _, tc := range v.Cases {
		unit := sdk.Unit{IDs: map[string]string{unitTypes[tc.Experiment]: tc.UnitID}, Attributes: tc.Attributes}
		got := c.Assign(ctx, unit, tc.Experiment)
		w := tc.Want
		if tc.UnitID == "" && w.Reason != "not_running" {
			// The one deliberate difference: the pure function assigns the
			// empty id like any other, the SDK (like the server's API,
			// which rejects an empty unit_id) enrols nobody without an id.
			w.Variant, w.Index, w.Enrolled, w.Reason = "", -1, false, string(sdk.ReasonNoUnitID)
		}
		if got.Variant != w.Variant || got.Index != w.Index || got.Enrolled != w.Enrolled || string(got.Reason) != w.Reason {
			t.Errorf("case %q: Assign(%q, %q) = {%q %d %v %s}, want {%q %d %v %s}", tc.Name, tc.Experiment, tc.UnitID,
				got.Variant, got.Index, got.Enrolled, got.Reason, w.Variant, w.Index, w.Enrolled, w.Reason)
		}
		// The typed fields give the same answer as IDs.
		typed := sdk.Unit{Attributes: tc.Attributes}
		switch unitTypes[tc.Experiment] {
		case sdk.UnitCustomer:
			typed.CustomerID = tc.UnitID
		case sdk.UnitDevice:
			typed.DeviceID = tc.UnitID
		}
		if again := c.Assign(ctx, typed, tc.Experiment); again.Variant != got.Variant || again.Reason != got.Reason || string(again.Payload) != string(got.Payload) {
			t.Errorf("case %q: Assign with typed ids = %+v, with IDs %+v", tc.Name, again, got)
		}
	}
}
