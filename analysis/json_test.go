package analysis

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden pins the whole JSON document of a sample experiment, with
// every kind of metric, warnings and segments. Numbers are compared with a
// relative tolerance of 1e-9 (platforms may fuse multiply-adds); keys,
// strings, nulls and booleans exactly. Run with -update to rewrite.
func TestGolden(t *testing.T) {
	in := sampleInput()
	got, err := json.MarshalIndent(Analyze(in, Options{Segment: "device"}), "", "  ")
	if err != nil {
		t.Fatalf("json.Marshal(Results): %v", err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "results.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if diffs := jsonDiff("", g, w); len(diffs) > 0 {
		t.Errorf("results differ from %s (go test -update rewrites it):\n%s", golden, strings.Join(diffs, "\n"))
	}
}

// jsonDiff lists where got and want differ.
func jsonDiff(at string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{at + ": got " + describe(got) + ", want an object"}
		}
		var out []string
		for k := range w {
			if _, ok := g[k]; !ok {
				out = append(out, at+"/"+k+": missing")
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				out = append(out, at+"/"+k+": unexpected")
				continue
			}
			out = append(out, jsonDiff(at+"/"+k, g[k], w[k])...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{at + ": got " + describe(got) + ", want " + describe(want)}
		}
		var out []string
		for i := range w {
			out = append(out, jsonDiff(at+"/"+itoa(i), g[i], w[i])...)
		}
		return out
	case float64:
		g, ok := got.(float64)
		if !ok || math.Abs(g-w) > 1e-9*math.Max(math.Abs(w), 1e-300) {
			return []string{at + ": got " + describe(got) + ", want " + describe(want)}
		}
		return nil
	default:
		if !reflect.DeepEqual(got, want) {
			return []string{at + ": got " + describe(got) + ", want " + describe(want)}
		}
		return nil
	}
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestUndefinedIsNull checks that undefined values become JSON null and
// never a marshalling error.
func TestUndefinedIsNull(t *testing.T) {
	tests := []struct {
		name    string
		control MetricStats
		green   MetricStats
		// nulls are paths in the green entry that must be null, defined
		// paths that must be numbers.
		nulls, defined [][]any
	}{
		{
			name:    "control with no conversions",
			control: convRow("purchase", "control", 1000, 0),
			green:   convRow("purchase", "green", 1000, 5),
			nulls:   [][]any{{"lift"}},
			defined: [][]any{{"diff", "estimate"}, {"diff", "ci", 0}, {"p_value"}, {"p_value_adjusted"}, {"chance_to_win"}},
		},
		{
			name:    "no conversions anywhere",
			control: convRow("purchase", "control", 1000, 0),
			green:   convRow("purchase", "green", 1000, 0),
			nulls:   [][]any{{"lift"}, {"p_value"}, {"p_value_adjusted"}},
			defined: [][]any{{"diff", "estimate"}},
		},
		{
			name:    "no units",
			control: convRow("purchase", "control", 0, 0),
			green:   convRow("purchase", "green", 0, 0),
			nulls:   [][]any{{"diff"}, {"lift"}, {"p_value"}, {"chance_to_win"}, {"expected_loss"}, {"mean"}, {"stddev"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := healthyInput()
			in.Stats = []MetricStats{tt.control, tt.green}
			doc := analyzeJSON(t, in, Options{})
			green := path(doc, "metrics", 0, "variants", 1).(map[string]any)
			for _, p := range tt.nulls {
				v, ok := green[p[0].(string)]
				if len(p) > 1 {
					v = path(green, p...)
				}
				if !ok || v != nil {
					t.Errorf("green%v = %v (present %v), want null", p, v, ok)
				}
			}
			for _, p := range tt.defined {
				if _, ok := path(green, p...).(float64); !ok {
					t.Errorf("green%v = %v, want a number", p, path(green, p...))
				}
			}
		})
	}
}

// TestFloatJSON checks the round trip of Float and Estimate through JSON.
func TestFloatJSON(t *testing.T) {
	tests := []struct {
		in   Float
		want string
	}{
		{Float(math.NaN()), "null"},
		{Float(math.Inf(1)), "null"},
		{Float(math.Inf(-1)), "null"},
		{0.25, "0.25"},
		{1e-30, "1e-30"},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.in)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%v) = %s, %v; want %s", float64(tt.in), b, err, tt.want)
		}
		var back Float
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if tt.in.Defined() && back != tt.in || !tt.in.Defined() && !math.IsNaN(float64(back)) {
			t.Errorf("round trip of %v = %v", float64(tt.in), float64(back))
		}
	}

	e := Estimate{Estimate: 0.1, CI: [2]Float{Float(math.Inf(-1)), 0.3}}
	b, err := json.Marshal(e)
	if err != nil || string(b) != `{"estimate":0.1,"ci":[null,0.3]}` {
		t.Errorf("json.Marshal(%v) = %s, %v", e, b, err)
	}
	b, _ = json.Marshal(undefinedEstimate())
	if string(b) != "null" {
		t.Errorf("json.Marshal(undefined estimate) = %s, want null", b)
	}
	var back Estimate
	if err := json.Unmarshal([]byte("null"), &back); err != nil || back.Defined() {
		t.Errorf("json.Unmarshal(null) = %v, %v; want an undefined estimate", back, err)
	}

	// A whole document survives a round trip.
	r := Analyze(sampleInput(), Options{Segment: "device"})
	b, err = json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var decoded Results
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatalf("json.Unmarshal(Results): %v", err)
	}
	b2, _ := json.Marshal(decoded)
	if string(b) != string(b2) {
		t.Errorf("Results do not survive a JSON round trip:\n%s\n%s", b, b2)
	}
}

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		got     Freshness
		want    Freshness
		pending bool
	}{
		{"complete", Complete(now), Freshness{ComputedAt: now, AsOf: now}, false},
		{"nothing pending", Pending(now, now.Add(-time.Minute), 0), Freshness{ComputedAt: now, AsOf: now}, false},
		{"pending", Pending(now, now.Add(-1500*time.Millisecond), 7), Freshness{ComputedAt: now, AsOf: now.Add(-1500 * time.Millisecond), LagSeconds: 1.5, PendingEvents: 7}, true},
		{"pending, received now", Pending(now, now, 3), Freshness{ComputedAt: now, AsOf: now, LagSeconds: 1e-6, PendingEvents: 3}, true},
		{"pending, clock behind", Pending(now, now.Add(time.Second), 3), Freshness{ComputedAt: now, AsOf: now, LagSeconds: 1e-6, PendingEvents: 3}, true},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, tt.got, tt.want)
		}
		if (tt.got.LagSeconds > 0) != tt.pending {
			t.Errorf("%s: lag %v with pending %d: lag must be 0 exactly when nothing is pending", tt.name, tt.got.LagSeconds, tt.got.PendingEvents)
		}
	}
}
