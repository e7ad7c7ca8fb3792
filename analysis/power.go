package analysis

import (
	"math"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// PowerRequest is the body of POST /v1/power: a sample-size question
// (RelativeMDE given) or an MDE question (UnitsPerArm given), for equal
// arms and a two-sided test.
type PowerRequest struct {
	// Type is conversion or mean (retention and count are accepted as
	// their families).
	Type flywheel.MetricType `json:"type"`
	// BaselineRate is the control's conversion rate (conversion), in (0, 1).
	BaselineRate float64 `json:"baseline_rate,omitempty"`
	// BaselineMean and SD are the control's mean and per-unit standard
	// deviation (mean). The mean is needed to read a relative MDE.
	BaselineMean float64 `json:"baseline_mean,omitempty"`
	SD           float64 `json:"sd,omitempty"`
	// Alpha (default 0.05) and Power (default 0.8); 0 means the default.
	Alpha float64 `json:"alpha,omitempty"`
	Power float64 `json:"power,omitempty"`
	// Variants is the number of arms, control included (default 2). With
	// more than two, each comparison is planned at alpha/(Variants−1), the
	// Bonferroni level that Holm's correction never falls below.
	Variants int `json:"variants,omitempty"`
	// Exactly one of RelativeMDE (the change to detect, relative to the
	// baseline; may be negative) and UnitsPerArm.
	RelativeMDE *float64 `json:"relative_mde,omitempty"`
	UnitsPerArm *float64 `json:"units_per_arm,omitempty"`
}

// PowerAnswer answers a PowerRequest, echoing its inputs with defaults
// filled. For a sample-size question UnitsPerArm is the unrounded solution
// (R power.prop.test / power.t.test), UnitsPerArmCeiling its ceiling and
// TotalUnits the ceiling times Variants. For an MDE question RelativeMDE
// and AbsoluteMDE are the smallest rise detectable with the given units
// (null when even the largest possible rise is not).
type PowerAnswer struct {
	Type               flywheel.MetricType `json:"type"`
	BaselineRate       *Float              `json:"baseline_rate,omitempty"`
	BaselineMean       *Float              `json:"baseline_mean,omitempty"`
	SD                 *Float              `json:"sd,omitempty"`
	Alpha              Float               `json:"alpha"`
	AlphaPerComparison Float               `json:"alpha_per_comparison"`
	Power              Float               `json:"power"`
	Variants           int                 `json:"variants"`
	RelativeMDE        Float               `json:"relative_mde"`
	AbsoluteMDE        Float               `json:"absolute_mde"`
	UnitsPerArm        Float               `json:"units_per_arm"`
	UnitsPerArmCeiling int64               `json:"units_per_arm_ceiling"`
	TotalUnits         int64               `json:"total_units"`
}

// Power answers a sample-size or MDE question. Invalid input is an
// invalid_argument *flywheel.Error naming the field (every problem in
// Details).
func Power(req PowerRequest) (PowerAnswer, error) {
	var p flywheel.Problems
	proportion := false
	switch req.Type {
	case flywheel.MetricConversion, flywheel.MetricRetention:
		proportion = true
	case flywheel.MetricMean, flywheel.MetricCount:
	default:
		p.Add("type", "type must be conversion or mean")
	}
	alpha, power, variants := req.Alpha, req.Power, req.Variants
	if alpha == 0 {
		alpha = DefaultAlpha
	}
	if power == 0 {
		power = DefaultPower
	}
	if variants == 0 {
		variants = 2
	}
	if !(alpha > 0 && alpha < 1) {
		p.Add("alpha", "alpha must be in (0, 1)")
	}
	if !(power > 0 && power < 1) {
		p.Add("power", "power must be in (0, 1)")
	}
	if variants < 2 || variants > 20 {
		p.Add("variants", "variants must be from 2 to 20")
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	means := req.Type == flywheel.MetricMean || req.Type == flywheel.MetricCount
	if proportion && !(req.BaselineRate > 0 && req.BaselineRate < 1) {
		p.Add("baseline_rate", "baseline_rate must be in (0, 1)")
	}
	if means {
		if !(req.SD > 0) || !finite(req.SD) {
			p.Add("sd", "sd must be a positive number")
		}
		if !finite(req.BaselineMean) {
			p.Add("baseline_mean", "baseline_mean must be a number")
		}
	}
	switch {
	case req.RelativeMDE != nil && req.UnitsPerArm != nil:
		p.Add("units_per_arm", "give relative_mde (for a sample size) or units_per_arm (for the MDE), not both")
	case req.RelativeMDE == nil && req.UnitsPerArm == nil:
		p.Add("relative_mde", "give relative_mde (for a sample size) or units_per_arm (for the MDE)")
	case req.RelativeMDE != nil:
		mde := *req.RelativeMDE
		switch {
		case !finite(mde) || mde == 0 || mde <= -1:
			p.Add("relative_mde", "relative_mde must be a non-zero number above -1")
		case proportion && !(req.BaselineRate*(1+mde) < 1):
			p.Add("relative_mde", "baseline_rate·(1 + relative_mde) must be below 1")
		case means && req.BaselineMean == 0:
			p.Add("baseline_mean", "baseline_mean must not be 0 to read a relative_mde")
		}
	case req.UnitsPerArm != nil:
		if n := *req.UnitsPerArm; !(n >= 2) || !finite(n) {
			p.Add("units_per_arm", "units_per_arm must be a number of at least 2")
		}
	}
	if err := p.Err(); err != nil {
		return PowerAnswer{}, err
	}

	perComparison := alpha / float64(variants-1)
	ans := PowerAnswer{
		Type:               req.Type,
		Alpha:              Float(alpha),
		AlphaPerComparison: Float(perComparison),
		Power:              Float(power),
		Variants:           variants,
	}
	ptr := func(v float64) *Float { f := Float(v); return &f }
	base := req.BaselineMean
	if proportion {
		base = req.BaselineRate
		ans.BaselineRate = ptr(base)
	} else {
		ans.BaselineMean, ans.SD = ptr(base), ptr(req.SD)
	}

	if req.RelativeMDE != nil {
		mde := *req.RelativeMDE
		var n float64
		if proportion {
			n = stats.SampleSizeProportions(base, base*(1+mde), perComparison, power)
		} else {
			n = stats.SampleSizeMeans(base*mde, req.SD, perComparison, power)
		}
		ans.RelativeMDE, ans.AbsoluteMDE = Float(mde), Float(base*mde)
		ans.UnitsPerArm = Float(n)
		if finite(n) {
			ans.UnitsPerArmCeiling = int64(math.Ceil(n))
			ans.TotalUnits = ans.UnitsPerArmCeiling * int64(variants)
		}
		return ans, nil
	}

	n := *req.UnitsPerArm
	ans.UnitsPerArm = Float(n)
	ans.UnitsPerArmCeiling = int64(math.Ceil(n))
	ans.TotalUnits = ans.UnitsPerArmCeiling * int64(variants)
	var abs float64
	if proportion {
		abs = stats.MDEProportions(n, base, perComparison, power)
	} else {
		abs = stats.MDEMeans(n, req.SD, perComparison, power)
	}
	ans.AbsoluteMDE = Float(abs)
	ans.RelativeMDE = nan()
	if base != 0 {
		ans.RelativeMDE = Float(abs / math.Abs(base))
	}
	return ans, nil
}
