package assign

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mustCompile compiles experiments into a snapshot or fails the test.
func mustCompile(tb testing.TB, exps ...Experiment) *Snapshot {
	tb.Helper()
	s, err := Compile(Config{Revision: 7, Experiments: exps})
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return s
}

// unitWithBucket returns the first id "u-N" for which Bucket(prefix+id)
// satisfies ok.
func unitWithBucket(tb testing.TB, prefix string, ok func(b int) bool) string {
	tb.Helper()
	for i := range 10_000_000 {
		id := fmt.Sprintf("u-%d", i)
		if ok(Bucket(prefix + id)) {
			return id
		}
	}
	tb.Fatalf("no unit id with the wanted bucket of %q", prefix)
	return ""
}

func bucketIs(want int) func(int) bool { return func(b int) bool { return b == want } }

// halves returns a running 50/50 experiment with full traffic.
func halves(key string) Experiment {
	return Experiment{
		Key:      key,
		UnitType: "customer",
		Variants: []Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5, Payload: json.RawMessage(`{"color":"#0a0"}`)}},
		Traffic:  1,
		Running:  true,
	}
}

func TestAssignRules(t *testing.T) {
	targeted := halves("targeted")
	targeted.Targeting = json.RawMessage(`{"country": {"$in": ["FR", "BE"]}, "stage": "prospect"}`)
	targeted.Overrides = map[string]string{"qa-1": "treatment"}

	layered := halves("layered")
	layered.Layer = "home"
	layered.LayerRange = &LayerRange{From: 0, To: 5000}

	thirds := halves("thirds")
	thirds.Variants = []Variant{{Key: "a", Weight: 1.0 / 3}, {Key: "b", Weight: 1.0 / 3}, {Key: "c", Weight: 1.0 / 3}}

	ninety := halves("ninety")
	ninety.Variants = []Variant{{Key: "big", Weight: 0.9}, {Key: "small", Weight: 0.1}}

	dark := halves("dark")
	dark.Traffic = 0

	stopped := halves("stopped")
	stopped.Running = false

	salted := halves("salted")
	salted.Salt = "pepper"

	s := mustCompile(t, targeted, layered, thirds, ninety, dark, stopped, salted)
	fr := map[string]any{"country": "FR", "stage": "prospect"}
	us := map[string]any{"country": "US", "stage": "prospect"}
	payload := json.RawMessage(`{"color":"#0a0"}`)

	// A unit inside the layer range gets the variant its own bucket says.
	layerIn := unitWithBucket(t, "layer:home:", bucketIs(4999))
	layerInWant := Result{Experiment: "layered", Variant: "control", Index: 0, Enrolled: true, Reason: ReasonBucket}
	if Bucket("layered:"+layerIn) >= 5000 {
		layerInWant.Variant, layerInWant.Index, layerInWant.Payload = "treatment", 1, payload
	}

	tests := []struct {
		name  string
		exp   string
		unit  string
		attrs map[string]any
		want  Result
	}{
		{"override beats targeting", "targeted", "qa-1", us,
			Result{Experiment: "targeted", Variant: "treatment", Index: 1, Enrolled: true, Reason: ReasonOverride, Payload: payload}},
		{"targeting miss", "targeted", "u-1", us,
			Result{Experiment: "targeted", Index: -1, Reason: ReasonTargeting}},
		{"targeting miss on missing attributes", "targeted", "u-1", nil,
			Result{Experiment: "targeted", Index: -1, Reason: ReasonTargeting}},
		{"targeting hit", "targeted", unitWithBucket(t, "targeted:", bucketIs(0)), fr,
			Result{Experiment: "targeted", Variant: "control", Index: 0, Enrolled: true, Reason: ReasonBucket}},
		{"layer in", "layered", layerIn, nil, layerInWant},
		{"layer out", "layered", unitWithBucket(t, "layer:home:", bucketIs(5000)), nil,
			Result{Experiment: "layered", Index: -1, Reason: ReasonLayer}},
		{"thirds first bucket", "thirds", unitWithBucket(t, "thirds:", bucketIs(0)), nil,
			Result{Experiment: "thirds", Variant: "a", Index: 0, Enrolled: true, Reason: ReasonBucket}},
		{"thirds 3332 is a", "thirds", unitWithBucket(t, "thirds:", bucketIs(3332)), nil,
			Result{Experiment: "thirds", Variant: "a", Index: 0, Enrolled: true, Reason: ReasonBucket}},
		{"thirds 3333 is b", "thirds", unitWithBucket(t, "thirds:", bucketIs(3333)), nil,
			Result{Experiment: "thirds", Variant: "b", Index: 1, Enrolled: true, Reason: ReasonBucket}},
		{"thirds 6666 is c", "thirds", unitWithBucket(t, "thirds:", bucketIs(6666)), nil,
			Result{Experiment: "thirds", Variant: "c", Index: 2, Enrolled: true, Reason: ReasonBucket}},
		{"thirds 9998 is c", "thirds", unitWithBucket(t, "thirds:", bucketIs(9998)), nil,
			Result{Experiment: "thirds", Variant: "c", Index: 2, Enrolled: true, Reason: ReasonBucket}},
		{"thirds 9999 is unenrolled", "thirds", unitWithBucket(t, "thirds:", bucketIs(9999)), nil,
			Result{Experiment: "thirds", Index: -1, Reason: ReasonTraffic}},
		{"ninety 8999 is big", "ninety", unitWithBucket(t, "ninety:", bucketIs(8999)), nil,
			Result{Experiment: "ninety", Variant: "big", Index: 0, Enrolled: true, Reason: ReasonBucket}},
		{"ninety 9000 is small", "ninety", unitWithBucket(t, "ninety:", bucketIs(9000)), nil,
			Result{Experiment: "ninety", Variant: "small", Index: 1, Enrolled: true, Reason: ReasonBucket}},
		{"ninety 9999 is small", "ninety", unitWithBucket(t, "ninety:", bucketIs(9999)), nil,
			Result{Experiment: "ninety", Variant: "small", Index: 1, Enrolled: true, Reason: ReasonBucket}},
		{"salt replaces the key in the hash", "salted", unitWithBucket(t, "pepper:", bucketIs(9999)), nil,
			Result{Experiment: "salted", Variant: "treatment", Index: 1, Enrolled: true, Reason: ReasonBucket, Payload: payload}},
		{"not running", "stopped", "u-1", nil,
			Result{Experiment: "stopped", Index: -1, Reason: ReasonNotRunning}},
		{"not running ignores overrides", "stopped", "qa-1", nil,
			Result{Experiment: "stopped", Index: -1, Reason: ReasonNotRunning}},
		{"unknown key", "nope", "u-1", nil,
			Result{Experiment: "nope", Index: -1, Reason: ReasonNotRunning}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Assign(tt.exp, tt.unit, tt.attrs)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Assign(%q, %q) mismatch (-want +got):\n%s", tt.exp, tt.unit, diff)
			}
		})
	}
}

func TestTrafficZeroEnrollsNobody(t *testing.T) {
	dark := halves("dark")
	dark.Traffic = 0
	s := mustCompile(t, dark)
	for i := range 20_000 {
		id := fmt.Sprintf("id-%d", i)
		if got := s.Assign("dark", id, nil); got.Enrolled || got.Reason != ReasonTraffic || got.Index != -1 {
			t.Fatalf("Assign(dark, %q) = %+v, want not enrolled by traffic", id, got)
		}
	}
}

func TestVariantRanges(t *testing.T) {
	third := 1.0 / 3
	tests := []struct {
		name    string
		weights []float64
		traffic float64
		want    [][2]int
	}{
		{"thirds", []float64{third, third, third}, 1, [][2]int{{0, 3333}, {3333, 6666}, {6666, 9999}}},
		{"halves", []float64{0.5, 0.5}, 1, [][2]int{{0, 5000}, {5000, 10000}}},
		{"halves at 10%", []float64{0.5, 0.5}, 0.1, [][2]int{{0, 500}, {5000, 5500}}},
		{"ninety ten", []float64{0.9, 0.1}, 1, [][2]int{{0, 9000}, {9000, 10000}}},
		{"traffic 0", []float64{0.5, 0.5}, 0, [][2]int{{0, 0}, {5000, 5000}}},
		{"fifths at 50%", []float64{0.2, 0.2, 0.2, 0.2, 0.2}, 0.5, [][2]int{{0, 1000}, {2000, 3000}, {4000, 5000}, {6000, 7000}, {8000, 9000}}},
		{"uneven", []float64{0.1, 0.2, 0.3, 0.4}, 1, [][2]int{{0, 1000}, {1000, 3000}, {3000, 6000}, {6000, 10000}}},
		{"sevenths", []float64{1.0 / 7, 1.0 / 7, 1.0 / 7, 1.0 / 7, 1.0 / 7, 1.0 / 7, 1.0 / 7}, 1,
			[][2]int{{0, 1428}, {1428, 2856}, {2857, 4285}, {4285, 5713}, {5714, 7142}, {7142, 8570}, {8571, 9999}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, variantRanges(tt.weights, tt.traffic)); diff != "" {
				t.Errorf("variantRanges(%v, %v) mismatch (-want +got):\n%s", tt.weights, tt.traffic, diff)
			}
		})
	}
}

func TestCompiledRange(t *testing.T) {
	e := halves("thirds")
	e.Variants = []Variant{{Key: "a", Weight: 1.0 / 3}, {Key: "b", Weight: 1.0 / 3}, {Key: "c", Weight: 1.0 / 3}}
	c, ok := mustCompile(t, e).Lookup("thirds")
	if !ok {
		t.Fatal(`Lookup("thirds") = false`)
	}
	for i, want := range [][2]int{{0, 3333}, {3333, 6666}, {6666, 9999}} {
		if start, end := c.Range(i); start != want[0] || end != want[1] {
			t.Errorf("Range(%d) = [%d, %d), want [%d, %d)", i, start, end, want[0], want[1])
		}
	}
}

func TestSnapshotAccessors(t *testing.T) {
	stopped := halves("b-stopped")
	stopped.Running = false
	s := mustCompile(t, halves("c-first"), stopped, halves("a-last"))
	if got := s.Revision(); got != 7 {
		t.Errorf("Revision() = %d, want 7", got)
	}
	if diff := cmp.Diff([]string{"c-first", "a-last"}, s.Keys()); diff != "" {
		t.Errorf("Keys() mismatch (-want +got):\n%s", diff)
	}
	if c, ok := s.Lookup("b-stopped"); !ok || c.Running() || c.Key() != "b-stopped" || c.Definition().Key != "b-stopped" {
		t.Errorf(`Lookup("b-stopped") = %v, %v; want the stopped experiment`, c, ok)
	}
	if _, ok := s.Lookup("zzz"); ok {
		t.Error(`Lookup("zzz") = true, want false`)
	}
	all := s.AppendAssignAll(nil, "u-1", nil)
	if len(all) != 2 || all[0].Experiment != "c-first" || all[1].Experiment != "a-last" {
		t.Errorf("AppendAssignAll = %+v, want c-first then a-last", all)
	}
	for _, r := range all {
		if want := s.Assign(r.Experiment, "u-1", nil); !cmp.Equal(r, want) {
			t.Errorf("AppendAssignAll gave %+v, Assign gives %+v", r, want)
		}
	}

	var nilSnap *Snapshot
	if got := nilSnap.Assign("x", "u", nil); got.Reason != ReasonNotRunning || got.Index != -1 {
		t.Errorf("nil Snapshot Assign = %+v, want not_running", got)
	}
	if nilSnap.Keys() != nil || nilSnap.Revision() != 0 || nilSnap.AppendAssignAll(nil, "u", nil) != nil {
		t.Error("nil Snapshot accessors are not empty")
	}
}

func TestAssignDoesNotAllocate(t *testing.T) {
	e := halves("checkout-button")
	e.Targeting = json.RawMessage(`{"country": {"$in": ["FR", "BE"]}, "stage": "prospect", "age": {"$gte": 18}, "ua": {"$regex": "Mobile"}, "plan": {"$exists": true}}`)
	e.Layer = "checkout"
	e.LayerRange = &LayerRange{From: 0, To: 10000}
	s := mustCompile(t, e)
	attrs := map[string]any{"country": "FR", "stage": "prospect", "age": 30.0, "ua": "Android Mobile", "plan": "pro"}
	var r Result
	allocs := testing.AllocsPerRun(1000, func() {
		r = s.Assign("checkout-button", "customer-000042", attrs)
	})
	if allocs != 0 {
		t.Errorf("Assign allocates %v times per call, want 0", allocs)
	}
	if !r.Enrolled {
		t.Errorf("Assign = %+v, want enrolled", r)
	}
}
