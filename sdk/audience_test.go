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

// TestAudiencesAgreeWithServer runs the audience conformance cases
// (assign/testdata/audience-cases.json) through the SDK and through the
// compiled snapshot the server assigns with: one experiment per case whose
// targeting is the case's condition, in a config that carries the
// audiences. Both must enrol exactly the units the case expects.
func TestAudiencesAgreeWithServer(t *testing.T) {
	raw, err := os.ReadFile("../assign/testdata/audience-cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Audiences assign.Audiences    `json:"audiences"`
		Cases     [][]json.RawMessage `json:"cases"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	cfg := assign.Config{Revision: 7, Audiences: f.Audiences}
	type want struct {
		name     string
		attrs    map[string]any
		expected bool
	}
	wants := map[string]want{}
	for i, c := range f.Cases {
		var w want
		if len(c) != 4 || json.Unmarshal(c[0], &w.name) != nil || json.Unmarshal(c[2], &w.attrs) != nil || json.Unmarshal(c[3], &w.expected) != nil {
			t.Fatalf("audience case %d is malformed", i)
		}
		key := fmt.Sprintf("case-%d", i)
		wants[key] = w
		cfg.Experiments = append(cfg.Experiments, assign.Experiment{Key: key, UnitType: "user", Traffic: 1, Running: true,
			Variants: []assign.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}}, Targeting: c[1]})
	}
	server, err := assign.Compile(cfg)
	if err != nil {
		t.Fatalf("assign.Compile: %v", err)
	}
	// The SDK gets the config as the server serves it: JSON.
	body, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{}, sdk.WithBootstrap(body))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close(ctx)
	for key, w := range wants {
		for _, unit := range []string{"u1", "u2", "u3"} {
			s := server.Assign(key, unit, w.attrs)
			got := c.Assign(ctx, sdk.Unit{IDs: map[string]string{"user": unit}, Attributes: w.attrs}, key)
			if s.Enrolled != w.expected || got.Enrolled != w.expected || got.Variant != s.Variant || string(got.Reason) != string(s.Reason) {
				t.Errorf("case %q, unit %q: server {%q %v %s}, SDK {%q %v %s}, want enrolled %v", w.name, unit,
					s.Variant, s.Enrolled, s.Reason, got.Variant, got.Enrolled, got.Reason, w.expected)
			}
		}
	}
}
