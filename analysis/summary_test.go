package analysis

import (
	"testing"

	"github.com/flywheel-oss/flywheel"
)

// twoArms builds a metric result with a control of the given mean and one
// compared variant.
func twoArms(metric string, dir flywheel.Direction, controlMean float64, c Comparison) MetricResult {
	return MetricResult{
		Metric:    metric,
		Direction: dir,
		Variants: []VariantResult{
			{Variant: "control", Units: 10000, Mean: Float(controlMean)},
			{Variant: "green", Units: 10000, Comparison: &c},
		},
	}
}

func cmp(diff, lift, lo, hi, p, adj float64, sig bool) Comparison {
	return Comparison{
		Diff:           Estimate{Estimate: Float(diff), CI: [2]Float{Float(diff - 0.01), Float(diff + 0.01)}},
		Lift:           Estimate{Estimate: Float(lift), CI: [2]Float{Float(lo), Float(hi)}},
		PValue:         Float(p),
		PValueAdjusted: Float(adj),
		Significant:    sig,
	}
}

func TestSummary(t *testing.T) {
	inc, dec := flywheel.DirectionIncrease, flywheel.DirectionDecrease
	tests := []struct {
		name       string
		m          MetricResult
		alpha      float64
		sequential bool
		srmOK      bool
		want       string
	}{
		{
			name:  "increase, significant",
			m:     twoArms("purchase", inc, 0.101, cmp(0.011, 0.109, 0.02, 0.20, 0.011, 0.011, true)),
			alpha: 0.05, srmOK: true,
			want: "green raises purchase by 10.9% (95% CI 2.0% to 20.0%), p = 0.011: significant",
		},
		{
			name:  "increase, not significant",
			m:     twoArms("purchase", inc, 0.101, cmp(0.004, 0.04, -0.02, 0.10, 0.21, 0.21, false)),
			alpha: 0.05, srmOK: true,
			want: "green raises purchase by 4.0% (95% CI -2.0% to 10.0%), p = 0.21: not significant",
		},
		{
			name:  "decrease metric goes down",
			m:     twoArms("refund", dec, 0.05, cmp(-0.0016, -0.032, -0.06, -0.004, 0.02, 0.02, true)),
			alpha: 0.05, srmOK: true,
			want: "green lowers refund by 3.2% (95% CI -6.0% to -0.4%), p = 0.02: significant (good: refund should decrease)",
		},
		{
			name:  "decrease metric goes up",
			m:     twoArms("refund", dec, 0.05, cmp(0.0016, 0.032, 0.004, 0.06, 0.02, 0.02, true)),
			alpha: 0.05, srmOK: true,
			want: "green raises refund by 3.2% (95% CI 0.4% to 6.0%), p = 0.02: significant (bad: refund should decrease)",
		},
		{
			name:  "increase metric goes down",
			m:     twoArms("purchase", inc, 0.1, cmp(-0.003, -0.03, -0.08, 0.02, 0.4, 0.4, false)),
			alpha: 0.05, srmOK: true,
			want: "green lowers purchase by 3.0% (95% CI -8.0% to 2.0%), p = 0.4: not significant (bad: purchase should increase)",
		},
		{
			name:  "alpha 0.1 and the adjusted p",
			m:     twoArms("purchase", inc, 0.1, cmp(0.005, 0.05, 0.001, 0.099, 0.03, 0.06, true)),
			alpha: 0.1, srmOK: true,
			want: "green raises purchase by 5.0% (90% CI 0.1% to 9.9%), p = 0.03 (adjusted p = 0.06): significant",
		},
		{
			name:  "tiny p",
			m:     twoArms("purchase", inc, 0.1, cmp(0.02, 0.2, 0.15, 0.25, 1e-9, 2e-9, true)),
			alpha: 0.05, srmOK: true,
			want: "green raises purchase by 20.0% (95% CI 15.0% to 25.0%), p < 0.001: significant",
		},
		{
			name:  "p just below alpha keeps its side",
			m:     twoArms("purchase", inc, 0.1, cmp(0.01, 0.1, 0.001, 0.199, 0.0496, 0.0496, true)),
			alpha: 0.05, srmOK: true,
			want: "green raises purchase by 10.0% (95% CI 0.1% to 19.9%), p = 0.0496: significant",
		},
		{
			name:  "control mean 0: absolute difference",
			m:     twoArms("purchase", inc, 0, Comparison{Diff: Estimate{0.0112, [2]Float{0.0026, 0.0194}}, Lift: undefinedEstimate(), PValue: 0.011, PValueAdjusted: 0.011, Significant: true}),
			alpha: 0.05, srmOK: true,
			want: "green raises purchase by 0.0112 (95% CI 0.0026 to 0.0194), p = 0.011: significant",
		},
		{
			name:  "sequential",
			m:     twoArms("purchase", inc, 0.1, cmp(0.011, 0.109, 0.02, 0.20, 0.011, 0.011, true)),
			alpha: 0.05, sequential: true, srmOK: true,
			want: "green raises purchase by 10.9% (95% confidence sequence 2.0% to 20.0%), always-valid p = 0.011: significant",
		},
		{
			name:  "sample ratio mismatch",
			m:     twoArms("purchase", inc, 0.101, cmp(0.011, 0.109, 0.02, 0.20, 0.011, 0.011, true)),
			alpha: 0.05, srmOK: false,
			want: "green raises purchase by 10.9% (95% CI 2.0% to 20.0%), p = 0.011: significant (sample ratio mismatch: do not trust)",
		},
		{
			name:  "no data",
			m:     twoArms("purchase", inc, 0, Comparison{Diff: undefinedEstimate(), Lift: undefinedEstimate(), PValue: nan(), PValueAdjusted: nan()}),
			alpha: 0.05, srmOK: true,
			want: "green vs control on purchase: not enough data",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.m, tt.alpha, tt.sequential, tt.srmOK); got != tt.want {
				t.Errorf("summarize() =\n%q, want\n%q", got, tt.want)
			}
		})
	}
}

// TestSummaryFromAnalyze checks the summary that Analyze writes for a
// primary metric, and that a three-arm metric gets one sentence per arm.
func TestSummaryFromAnalyze(t *testing.T) {
	r := Analyze(sampleInput(), Options{})
	if got, want := r.Metrics[0].Summary, "green raises purchase by 10.9% (95% CI 2.0% to 19.8%), p = 0.011: significant"; got != want {
		t.Errorf("purchase summary = %q, want %q", got, want)
	}
	in := healthyInput()
	in.Experiment.Variants = []flywheel.Variant{{Key: "control", Weight: 1}, {Key: "green", Weight: 1}, {Key: "blue", Weight: 1}}
	in.Arms = append(in.Arms, ArmCounts{Variant: "blue", Units: 100_000})
	in.Stats = append(in.Stats, convRow("purchase", "blue", 100_000, 10_000))
	r = Analyze(in, Options{})
	// Holm over two comparisons: 2 × 0.0327 for green, max(0.0653, 0.457)
	// for blue, which rounds like its raw p and is not repeated.
	want := "green raises purchase by 2.9% (95% CI 0.2% to 5.5%), p = 0.033 (adjusted p = 0.065): not significant; " +
		"blue lowers purchase by 1.0% (95% CI -3.6% to 1.6%), p = 0.46: not significant (bad: purchase should increase)"
	if got := r.Metrics[0].Summary; got != want {
		t.Errorf("three-arm summary =\n%q, want\n%q", got, want)
	}
}
