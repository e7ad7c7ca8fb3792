package stats

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// TestPowerCases checks power.json: every unrounded n, its exact ceiling,
// and the derived inputs, for proportions (R power.prop.test) and means
// (R power.t.test, strict = FALSE).
func TestPowerCases(t *testing.T) {
	tree := readTree(t, filepath.Join(sharedCases, "power.json"))
	got := results{}
	for _, kind := range []string{"proportions", "means"} {
		cases, ok := tree[kind].([]any)
		if !ok || len(cases) == 0 {
			t.Fatalf("power.json has no %s cases", kind)
		}
		for i, c := range cases {
			c := c.(map[string]any)
			p := fmt.Sprintf("%s/%d/", kind, i)
			in := func(key string) float64 { return number(t, p+key, c[key]) }
			alpha, power := in("alpha"), in("power")
			got.set(p+"alternative", "two-sided", "two.sided")
			var n float64
			var expr string
			if kind == "proportions" {
				p1, p2 := in("baseline_rate"), in("baseline_rate")*(1+in("relative_mde"))
				got.set(p+"p1", "baseline_rate", p1)
				got.set(p+"p2", "baseline_rate·(1+relative_mde)", p2)
				n = SampleSizeProportions(p1, p2, alpha, power)
				expr = fmt.Sprintf("SampleSizeProportions(%v, %v, %v, %v)", p1, p2, alpha, power)
			} else {
				delta, sd := in("baseline_mean")*in("relative_mde"), in("sd")
				z := ZQuantile(alpha) + ZQuantile(2*(1-power))
				got.set(p+"delta", "baseline_mean·relative_mde", delta)
				got.set(p+"n_per_arm_normal_approx", "2(z_{1−α/2}+z_power)²·sd²/delta²", 2*z*z*sd*sd/(delta*delta))
				n = SampleSizeMeans(delta, sd, alpha, power)
				expr = fmt.Sprintf("SampleSizeMeans(%v, %v, %v, %v)", delta, sd, alpha, power)
			}
			got.set(p+"n_per_arm", expr, n)
			got.set(p+"n_per_arm_ceiling", "⌈"+expr+"⌉", int64(math.Ceil(n)))
		}
	}
	skip := func(path string) bool {
		switch path {
		case "description", "tolerance_rule":
			return true
		}
		// Inputs, read above.
		return skipKeys("id", "baseline_rate", "relative_mde", "baseline_mean", "sd", "alpha", "power")(path)
	}
	if n := checkTree(t, tree, got, skip); n < 40 {
		t.Errorf("checked only %d values of power.json", n)
	}
}

// TestPowerRoundTrip checks that the power at the computed sample size is
// the power asked for, and that the MDE at that size is the effect asked
// for: the inverse functions solve the same equations.
func TestPowerRoundTrip(t *testing.T) {
	tests := []struct {
		name               string
		p1, p2, delta, sd  float64
		alpha, power, want float64
	}{
		{name: "typical", p1: 0.05, p2: 0.055, delta: 2.5, sd: 120, alpha: 0.05, power: 0.8},
		{name: "strict alpha", p1: 0.3, p2: 0.33, delta: 0.3, sd: 9, alpha: 0.01, power: 0.9},
		{name: "small n", p1: 0.2, p2: 0.4, delta: 5, sd: 5, alpha: 0.05, power: 0.8},
		{name: "large n", p1: 0.001, p2: 0.0011, delta: 0.01, sd: 3, alpha: 0.05, power: 0.8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := SampleSizeProportions(tt.p1, tt.p2, tt.alpha, tt.power)
			if got := PowerProportions(n, tt.p1, tt.p2, tt.alpha); math.Abs(got-tt.power) > 1e-9 {
				t.Errorf("PowerProportions(%v, ...) = %v, want %v", n, got, tt.power)
			}
			if got := MDEProportions(n, tt.p1, tt.alpha, tt.power); math.Abs(got-(tt.p2-tt.p1)) > 1e-9*tt.p2 {
				t.Errorf("MDEProportions(%v, %v, ...) = %v, want %v", n, tt.p1, got, tt.p2-tt.p1)
			}
			n = SampleSizeMeans(tt.delta, tt.sd, tt.alpha, tt.power)
			if got := PowerMeans(n, tt.delta, tt.sd, tt.alpha); math.Abs(got-tt.power) > 1e-9 {
				t.Errorf("PowerMeans(%v, ...) = %v, want %v", n, got, tt.power)
			}
			if got := MDEMeans(n, tt.sd, tt.alpha, tt.power); math.Abs(got-tt.delta) > 1e-9*tt.delta {
				t.Errorf("MDEMeans(%v, %v, ...) = %v, want %v", n, tt.sd, got, tt.delta)
			}
			if got := PowerMeans(n, -tt.delta, tt.sd, tt.alpha); math.Abs(got-tt.power) > 1e-9 {
				t.Errorf("PowerMeans(%v, %v, ...) = %v, want %v (sign of delta must not matter)", n, -tt.delta, got, tt.power)
			}
		})
	}
}

func TestPowerEdges(t *testing.T) {
	for _, got := range []float64{
		SampleSizeProportions(0.1, 0.12, 0, 0.8),
		SampleSizeProportions(0.1, 1.2, 0.05, 0.8),
		SampleSizeMeans(1, 0, 0.05, 0.8),
		SampleSizeMeans(1, 1, 0.05, 1),
		PowerMeans(1, 1, 1, 0.05),
		MDEMeans(100, 1, 0.05, -0.5),
		MDEProportions(100, 0.1, 1.5, 0.8),
	} {
		if !math.IsNaN(got) {
			t.Errorf("power analysis with an invalid input = %v, want NaN", got)
		}
	}

	if got := SampleSizeProportions(0.1, 0.1, 0.05, 0.8); !math.IsInf(got, 1) {
		t.Errorf("SampleSizeProportions(0.1, 0.1, ...) = %v, want +Inf", got)
	}
	if got := SampleSizeMeans(0, 1, 0.05, 0.8); !math.IsInf(got, 1) {
		t.Errorf("SampleSizeMeans(0, 1, ...) = %v, want +Inf", got)
	}
	if got := MDEProportions(10, 0.5, 0.05, 0.99); !math.IsNaN(got) {
		t.Errorf("MDEProportions(10, 0.5, 0.05, 0.99) = %v, want NaN (not reachable)", got)
	}
}
