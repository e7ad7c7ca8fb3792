package analysis

import (
	"github.com/flywheel-oss/flywheel"
)

// Results is the document of GET /v1/experiments/{key}/results.
type Results struct {
	Experiment string            `json:"experiment"`
	Status     flywheel.Status   `json:"status"`
	Analysis   flywheel.Analysis `json:"analysis"`
	// Estimator is how the arms are compared: "pooled", or for a bandit
	// "epoch-stratified" (within each weight epoch, combined by the epochs'
	// sizes; README, Bandits).
	Estimator string `json:"estimator"`
	// Freshness: computed_at, as_of, lag_seconds, pending_events.
	Freshness
	// Units is the number of analysed units over every arm.
	Units int64 `json:"units"`
	// Alpha and Adjustment echo the options the numbers were computed with.
	Alpha      Float      `json:"alpha"`
	Adjustment Adjustment `json:"adjustment"`
	Health     Health     `json:"health"`
	// Metrics are in the order of Experiment.Metrics.All(): primary,
	// guardrails, secondary.
	Metrics []MetricResult `json:"metrics"`
	// Segments are keyed by segment value; empty without Options.Segment.
	Segments map[string]SegmentResult `json:"segments"`

	// Sequential holds the mSPRT states the server stores for the next
	// recompute of a sequential experiment (see SequentialState); nil for
	// fixed-horizon experiments. Store it only from recomputes made with
	// the experiment's usual alpha.
	Sequential []SequentialState `json:"-"`
}

// Health is what says whether the results can be trusted.
type Health struct {
	SRM SRMCheck `json:"srm"`
	// MultipleExposures counts units exposed to more than one variant
	// (excluded from analysis).
	MultipleExposures int64 `json:"multiple_exposures"`
	// Overridden counts units excluded because their variant was forced.
	Overridden int64 `json:"overridden"`
	// OptedOut counts removed units per variant, in variant order.
	OptedOut []int64 `json:"opted_out"`
	// CrossoverShare is the share of linked customers whose devices saw
	// different variants; null when not measured.
	CrossoverShare Float `json:"crossover_share"`
	// Warnings are plain-English problems, the most serious first; never
	// null.
	Warnings []string `json:"warnings"`
	// Failed names the trust checks that failed, the most serious first
	// (TrustChecks): any name here means "do not trust these numbers yet",
	// and Warnings says why in words. Never null.
	Failed []string `json:"failed"`
}

// TrustCheck is a check that Health.Failed may name, with the start of
// its warning.
type TrustCheck struct{ Name, Warning string }

// TrustChecks returns the checks that Health.Failed may name, in the order
// a results document reports them.
func TrustChecks() []TrustCheck {
	return []TrustCheck{
		{"srm", "sample ratio mismatch"},
		{"too_few_units", "too few units"},
		{"multiple_exposures", "multiple exposures"},
		{"crossover", "crossover"},
		{"pre_exposure_imbalance", "pre-exposure imbalance"},
		{"opt_outs_differ", "opt-outs differ"},
	}
}

// SRMCheck is the sample ratio mismatch test of the arm sizes against the
// configured weights.
type SRMCheck struct {
	PValue Float `json:"p_value"`
	// Observed are the units per variant and Expected the configured
	// weights normalised to sum to 1, in variant order.
	Observed []int64 `json:"observed"`
	Expected []Float `json:"expected"`
	ChiSq    Float   `json:"chi_square"`
	// OK is false when PValue < SRMThreshold; an undefined test (no units)
	// is OK, and the small-sample warning says why.
	OK bool `json:"ok"`
}

// MetricResult is the analysis of one metric.
type MetricResult struct {
	Metric    string              `json:"metric"`
	Type      flywheel.MetricType `json:"type"`
	Role      string              `json:"role"`
	Direction flywheel.Direction  `json:"direction"`
	// Variants are in the experiment's order, control first.
	Variants []VariantResult `json:"variants"`
	// Summary is one plain-English sentence per non-control variant,
	// joined by "; " (see summarize).
	Summary string `json:"summary"`
	// SampleSize is the sample-size check of a primary metric.
	SampleSize *SampleSize `json:"sample_size,omitempty"`
}

// VariantResult is one arm of one metric. The control carries only
// Variant, Units, Mean and StdDev; other arms add their Comparison.
type VariantResult struct {
	Variant string `json:"variant"`
	Units   int64  `json:"units"`
	// Mean is the arm's rate, mean or ratio; StdDev the per-unit standard
	// deviation (n−1 denominator; for a ratio, of the linearised values).
	Mean   Float `json:"mean"`
	StdDev Float `json:"stddev"`
	// Maturing counts the arm's units (among Units) whose metric window
	// has not passed yet: their values may still grow.
	Maturing int64 `json:"maturing"`
	*Comparison
}

// Comparison is a non-control arm against the control.
type Comparison struct {
	// Diff is variant − control in the metric's units; Lift is
	// variant/control − 1 (null when the control mean is 0).
	Diff           Estimate `json:"diff"`
	Lift           Estimate `json:"lift"`
	PValue         Float    `json:"p_value"`
	PValueAdjusted Float    `json:"p_value_adjusted"`
	Significant    bool     `json:"significant"`
	// ChanceToWin is the posterior probability that the variant is better
	// (higher, or lower for a "decrease" metric); ExpectedLoss the
	// posterior expected shortfall of shipping it, in the metric's units.
	ChanceToWin  Float       `json:"chance_to_win"`
	ExpectedLoss Float       `json:"expected_loss"`
	CUPED        *CUPEDBlock `json:"cuped,omitempty"`
}

// CUPEDBlock is the comparison on CUPED-adjusted values.
type CUPEDBlock struct {
	Theta Float `json:"theta"`
	// VarianceReduction is 1 − SE′²/SE² of this comparison's difference.
	VarianceReduction Float    `json:"variance_reduction"`
	Diff              Estimate `json:"diff"`
	Lift              Estimate `json:"lift"`
	PValue            Float    `json:"p_value"`
	PValueAdjusted    Float    `json:"p_value_adjusted"`
}

// SampleSize is the planning check of a primary metric: the units per arm
// needed to detect RelativeMDE with Power at level Alpha (alpha divided by
// the size of the primary family), from the control arm's baseline.
type SampleSize struct {
	RelativeMDE Float `json:"relative_mde"`
	Power       Float `json:"power"`
	Alpha       Float `json:"alpha"`
	UnitsPerArm Float `json:"units_per_arm"`
	// SmallestArm is the size of the smallest arm now.
	SmallestArm int64 `json:"smallest_arm"`
}

// SegmentResult is the exploratory analysis within one segment value.
type SegmentResult struct {
	Segment string `json:"segment"` // the attribute, e.g. "device"
	Value   string `json:"value"`   // e.g. "mobile"
	// Exploratory is always true: segment results are not corrected for
	// the number of segments looked at.
	Exploratory bool           `json:"exploratory"`
	Units       int64          `json:"units"`
	SRM         SRMCheck       `json:"srm"`
	Metrics     []MetricResult `json:"metrics"`
	Warnings    []string       `json:"warnings"`
}
