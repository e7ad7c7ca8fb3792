package assign

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func holdoutExp(key, unitType, layer string, r *LayerRange) Experiment {
	return Experiment{Key: key, UnitType: unitType, Traffic: 1, Running: true, Layer: layer, LayerRange: r,
		Variants: []Variant{{Key: "control", Weight: 0.5, Payload: json.RawMessage(`{"c":1}`)}, {Key: "treat", Weight: 0.5}}}
}

// heldOutID returns the first id "prefix-N" that holdout key at fraction
// holds out (want true) or keeps in (want false), computed from Bucket
// alone, independently of the compiled holdout.
func heldOutID(tb testing.TB, key, prefix string, fraction float64, want bool) string {
	tb.Helper()
	for i := 0; i < 100000; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if (Bucket("holdout:"+key+":"+id) < int(math.Floor(10000*fraction+1e-6))) == want {
			return id
		}
	}
	tb.Fatalf("no id held out = %v", want)
	return ""
}

func TestHoldoutCompileErrors(t *testing.T) {
	exps := []Experiment{holdoutExp("a", "customer", "", nil)}
	tests := []struct {
		name  string
		h     []Holdout
		field string
		msg   string
	}{
		{"fraction above 0.1", []Holdout{{Key: "h", UnitType: "customer", Fraction: 0.11}}, "fraction", "must be in [0, 0.1]"},
		{"negative fraction", []Holdout{{Key: "h", UnitType: "customer", Fraction: -0.01}}, "fraction", "must be in [0, 0.1]"},
		{"NaN fraction", []Holdout{{Key: "h", UnitType: "customer", Fraction: math.NaN()}}, "fraction", "must be in"},
		{"no key", []Holdout{{UnitType: "customer", Fraction: 0.05}}, "key", "is required"},
		{"no unit type", []Holdout{{Key: "h", Fraction: 0.05}}, "unit_type", "is required"},
		{"duplicate key", []Holdout{{Key: "h", UnitType: "customer", Fraction: 0.05}, {Key: "h", UnitType: "device", Fraction: 0.05}}, "key", "duplicate holdout key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(Config{Experiments: exps, Holdouts: tt.h})
			var he *HoldoutError
			if !errors.As(err, &he) {
				t.Fatalf("Compile = %v, want a *HoldoutError", err)
			}
			if he.Field != tt.field || !strings.Contains(he.Msg, tt.msg) {
				t.Errorf("Compile = %q at %q, want %q at %q", he.Msg, he.Field, tt.msg, tt.field)
			}
		})
	}
}

func TestHoldoutAssign(t *testing.T) {
	const key = "program"
	held := heldOutID(t, key, "c", 0.05, true)
	kept := heldOutID(t, key, "c", 0.05, false)
	exps := []Experiment{
		holdoutExp("direct", "customer", "", nil),
		holdoutExp("in-layer", "customer", "home", &LayerRange{0, 10000}),
		holdoutExp("uncovered", "customer", "", nil),
		holdoutExp("on-device", "device", "", nil),
	}
	exps[0].Overrides = map[string]string{"qa": "treat"}
	running := Holdout{Key: key, UnitType: "customer", Fraction: 0.05, Experiments: []string{"direct", "on-device", "missing"}, Layers: []string{"home"}, Running: true}
	stopped := running
	stopped.Running = false
	tests := []struct {
		name       string
		holdout    Holdout
		experiment string
		ids        map[string]string
		attrs      map[string]any
		want       Result
	}{
		{"held out of a listed experiment", running, "direct", map[string]string{"customer": held}, nil,
			Result{Experiment: "direct", Variant: "control", Index: 0, Reason: ReasonHoldout, Holdout: key, WouldEnroll: true, Payload: json.RawMessage(`{"c":1}`)}},
		{"held out of an experiment of a listed layer", running, "in-layer", map[string]string{"customer": held}, nil,
			Result{Experiment: "in-layer", Variant: "control", Index: 0, Reason: ReasonHoldout, Holdout: key, WouldEnroll: true, Payload: json.RawMessage(`{"c":1}`)}},
		{"not held out of an uncovered experiment", running, "uncovered", map[string]string{"customer": held}, nil,
			Result{Experiment: "uncovered", Variant: "", Index: 0, Enrolled: true, Reason: ReasonBucket}},
		{"a customer's device is held out through the customer id", running, "on-device", map[string]string{"customer": held, "device": "d-1"}, nil,
			Result{Experiment: "on-device", Variant: "control", Index: 0, Reason: ReasonHoldout, Holdout: key, WouldEnroll: true, Payload: json.RawMessage(`{"c":1}`)}},
		{"a device without a customer id is not held out", running, "on-device", map[string]string{"device": "d-1"}, nil,
			Result{Experiment: "on-device", Enrolled: true, Reason: ReasonBucket}},
		{"a unit kept in is enrolled", running, "direct", map[string]string{"customer": kept}, nil,
			Result{Experiment: "direct", Enrolled: true, Reason: ReasonBucket}},
		{"an override wins over the holdout", running, "direct", map[string]string{"customer": "qa"}, nil,
			Result{Experiment: "direct", Variant: "treat", Index: 1, Enrolled: true, Reason: ReasonOverride}},
		{"a stopped holdout releases its units", stopped, "direct", map[string]string{"customer": held}, nil,
			Result{Experiment: "direct", Enrolled: true, Reason: ReasonBucket}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Experiments: exps, Holdouts: []Holdout{tt.holdout}}
			if tt.ids["customer"] == "qa" {
				cfg.Holdouts[0].Fraction = 0.1 // the override must win whatever the bucket
			}
			s, err := Compile(cfg)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got := s.AssignUnit(tt.experiment, tt.ids, tt.attrs)
			if tt.want.Reason == ReasonBucket { // the variant is the experiment's business
				tt.want.Variant, tt.want.Index, tt.want.Payload = got.Variant, got.Index, got.Payload
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AssignUnit(%q, %v) mismatch (-want +got):\n%s", tt.experiment, tt.ids, diff)
			}
		})
	}
}

func TestHoldoutWouldEnroll(t *testing.T) {
	held := heldOutID(t, "h", "c", 0.1, true)
	e := holdoutExp("fr-only", "customer", "", nil)
	e.Targeting = json.RawMessage(`{"country": "FR"}`)
	s, err := Compile(Config{Experiments: []Experiment{e}, Holdouts: []Holdout{{Key: "h", UnitType: "customer", Fraction: 0.1, Experiments: []string{"fr-only"}, Running: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		country string
		would   bool
	}{{"FR", true}, {"DE", false}} {
		r := s.Assign("fr-only", held, map[string]any{"country": tt.country})
		if r.Reason != ReasonHoldout || r.Enrolled || r.WouldEnroll != tt.would || r.Variant != "control" {
			t.Errorf("Assign(country %s) = %+v, want held out with WouldEnroll %v", tt.country, r, tt.would)
		}
	}
}

// TestHoldoutStableUnderRamp: the units held out at 2% are held out at 5%
// and at 10%, and the share held out is the fraction.
func TestHoldoutStableUnderRamp(t *testing.T) {
	exps := []Experiment{holdoutExp("e", "customer", "", nil)}
	compile := func(f float64) *Snapshot {
		s, err := Compile(Config{Experiments: exps, Holdouts: []Holdout{{Key: "ramp", UnitType: "customer", Fraction: f, Experiments: []string{"e"}, Running: true}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	fractions := []float64{0, 0.02, 0.05, 0.1}
	snaps := make([]*Snapshot, len(fractions))
	for i, f := range fractions {
		snaps[i] = compile(f)
	}
	const n = 40000
	counts := make([]int, len(fractions))
	for u := 0; u < n; u++ {
		id := fmt.Sprintf("u%d", u)
		prev := false
		for i, s := range snaps {
			h := s.Assign("e", id, nil).Reason == ReasonHoldout
			if prev && !h {
				t.Fatalf("unit %s held out at %g but not at %g", id, fractions[i-1], fractions[i])
			}
			if h {
				counts[i]++
			}
			prev = h
		}
	}
	for i, f := range fractions {
		got := float64(counts[i]) / n
		if math.Abs(got-f) > 4*math.Sqrt(f*(1-f)/n)+1e-9 {
			t.Errorf("fraction %g holds out %.4f of units", f, got)
		}
	}
}

// TestHoldoutBucketIndependent: the holdout's bucket uses its own salt,
// so held-out units are spread evenly over the variants they would have
// had.
func TestHoldoutBucketIndependent(t *testing.T) {
	s, err := Compile(Config{Experiments: []Experiment{holdoutExp("e", "customer", "", nil)}})
	if err != nil {
		t.Fatal(err)
	}
	var byVariant [2]int
	n := 0
	for u := 0; n < 2000; u++ {
		id := fmt.Sprintf("u%d", u)
		if Bucket("holdout:indep:"+id) < 1000 {
			n++
			byVariant[s.Assign("e", id, nil).Index]++
		}
	}
	if byVariant[0] < 880 || byVariant[0] > 1120 {
		t.Errorf("held-out units by would-be variant = %v, want about 1000 each", byVariant)
	}
}

// holdoutCase is one case of testdata/holdout-cases.json.
type holdoutCase struct {
	Name       string            `json:"name"`
	Experiment string            `json:"experiment"`
	IDs        map[string]string `json:"ids"`
	Attributes map[string]any    `json:"attributes"`
	Want       holdoutWant       `json:"want"`
}

type holdoutWant struct {
	Variant     string `json:"variant"`
	Enrolled    bool   `json:"enrolled"`
	Reason      Reason `json:"reason"`
	Holdout     string `json:"holdout,omitempty"`
	WouldEnroll bool   `json:"would_enroll,omitempty"`
}

type holdoutFile struct {
	Description string        `json:"description"`
	Config      Config        `json:"config"`
	Cases       []holdoutCase `json:"cases"`
}

const holdoutFileName = "testdata/holdout-cases.json"

// TestHoldoutCases checks the holdout conformance cases, which the SDK
// also checks (sdk/holdout_test.go). With -update it rewrites each
// case's want from the current code; TestHoldoutCasesIndependent then
// checks them from Bucket alone.
func TestHoldoutCases(t *testing.T) {
	raw, err := os.ReadFile(holdoutFileName)
	if err != nil {
		t.Fatal(err)
	}
	var f holdoutFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	s, err := Compile(f.Config)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if len(f.Cases) < 100 {
		t.Fatalf("%d cases, want at least 100", len(f.Cases))
	}
	reasons := map[Reason]int{}
	for i, c := range f.Cases {
		r := s.AssignUnit(c.Experiment, c.IDs, c.Attributes)
		got := holdoutWant{Variant: r.Variant, Enrolled: r.Enrolled, Reason: r.Reason, Holdout: r.Holdout, WouldEnroll: r.WouldEnroll}
		reasons[r.Reason]++
		if *update {
			f.Cases[i].Want = got
			continue
		}
		if got != c.Want {
			t.Errorf("case %q: AssignUnit = %+v, want %+v", c.Name, got, c.Want)
		}
	}
	if reasons[ReasonHoldout] < 10 || reasons[ReasonBucket] < 10 || reasons[ReasonTargeting] < 1 || reasons[ReasonOverride] < 1 {
		t.Errorf("cases by reason %v: want holdout, bucket, targeting and override cases", reasons)
	}
	if *update {
		out, err := json.MarshalIndent(f, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(holdoutFileName, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHoldoutCasesIndependent recomputes each case's holdout decision
// from the contract (Bucket("holdout:"+key+":"+id) < floor(10000f+1e-6),
// through the experiments listed or their layers) without the compiled
// holdout, so that -update cannot pin a wrong answer.
func TestHoldoutCasesIndependent(t *testing.T) {
	raw, err := os.ReadFile(holdoutFileName)
	if err != nil {
		t.Fatal(err)
	}
	var f holdoutFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	layerOf := map[string]string{}
	control := map[string]string{}
	for _, e := range f.Config.Experiments {
		layerOf[e.Key], control[e.Key] = e.Layer, e.Variants[0].Key
	}
	for _, c := range f.Cases {
		if c.Want.Reason == ReasonOverride {
			continue
		}
		heldBy := ""
		for _, h := range f.Config.Holdouts {
			covers := false
			for _, k := range h.Experiments {
				covers = covers || k == c.Experiment
			}
			for _, l := range h.Layers {
				covers = covers || (l != "" && l == layerOf[c.Experiment])
			}
			id := c.IDs[h.UnitType]
			if heldBy == "" && h.Running && covers && id != "" && Bucket(HoldoutPrefix+h.Key+":"+id) < int(math.Floor(10000*h.Fraction+1e-6)) {
				heldBy = h.Key
			}
		}
		if c.Want.Holdout != heldBy || (heldBy != "") != (c.Want.Reason == ReasonHoldout) {
			t.Errorf("case %q: want held out by %q, file says %+v", c.Name, heldBy, c.Want)
		}
		if heldBy != "" && (c.Want.Variant != control[c.Experiment] || c.Want.Enrolled) {
			t.Errorf("case %q: a held-out unit gets the control, not enrolled; file says %+v", c.Name, c.Want)
		}
	}
}
