package stats

import "math"

// Sequential testing by the mixture sequential probability ratio test
// (mSPRT) of Johari, Pekelis & Walsh, "Always Valid Inference: Continuous
// Monitoring of A/B Tests" (Operations Research 70(3), 2022), in its
// normal, known-variance form on the difference of two means (stats-cases
// README §5). Its p-values and confidence sequences stay valid however
// often the results are looked at and whenever the experiment is stopped.

// Look is the cumulative summary of both arms, from the start of the
// experiment, at one interim analysis.
type Look struct {
	Control Moments
	Variant Moments
}

// LookResult is the state of an mSPRT after a look. The zero LookResult
// (Index 0) stands for the state before the first look: Next treats it as
// P = 1 and an unbounded interval.
type LookResult struct {
	// Index counts the looks so far, from 1.
	Index int
	// Diff is mean_variant − mean_control and V = var_variant/n_variant +
	// var_control/n_control its variance, treated as known.
	Diff float64
	V    float64
	// LogLambda is the log of the mixture likelihood ratio against
	// H0: difference = 0 with a N(0, τ²) mixing distribution,
	//
	//	log Λ = ½·log(V/(V+τ²)) + τ²·Diff² / (2·V·(V+τ²)),
	//
	// and Lambda = exp(LogLambda), which may be +Inf.
	LogLambda float64
	Lambda    float64
	// P is the always-valid p-value min(P_prev, 1/Λ), computed from
	// LogLambda. It never increases from one look to the next.
	P float64
	// Reject reports P ≤ alpha.
	Reject bool
	// CI is the always-valid confidence sequence for the difference at
	// level 1 − alpha: the intersection over the looks so far of
	//
	//	Diff ± √( V(V+τ²)/τ² · (2·log(1/α) + log((V+τ²)/V)) ),
	//
	// the set of differences θ0 that the mSPRT of H0: difference = θ0
	// has not rejected. With probability at least 1 − alpha it contains
	// the true difference at every look at once, and it excludes 0
	// exactly when Reject is true. An empty interval (Lower > Upper)
	// means the looks disagree more than a constant effect allows.
	CI Interval
}

// MSPRT runs the mSPRT over looks in order, with mixing variance tau2 > 0
// (on the scale of the squared difference of means; choose it near the
// square of the effects the experiment hopes to detect) and level alpha,
// and returns one result per look.
func MSPRT(looks []Look, tau2, alpha float64) []LookResult {
	out := make([]LookResult, len(looks))
	var r LookResult
	for i, l := range looks {
		r = r.Next(l, tau2, alpha)
		out[i] = r
	}
	return out
}

// Next returns the state after one more look, given the state r after the
// previous one. The summaries in look are cumulative. A look whose V is
// undefined or 0 (fewer than two units, or constant values) carries no
// evidence: P and CI stay as they were.
func (r LookResult) Next(look Look, tau2, alpha float64) LookResult {
	prevP, prevCI := r.P, r.CI
	if r.Index == 0 {
		prevP, prevCI = 1, Interval{math.Inf(-1), math.Inf(1)}
	}
	diff := look.Variant.Mean - look.Control.Mean
	v := look.Variant.varOfMean() + look.Control.varOfMean()
	next := LookResult{Index: r.Index + 1, Diff: diff, V: v, P: prevP, CI: prevCI}

	vt := v + tau2
	next.LogLambda = 0.5*math.Log(v/vt) + tau2*diff*diff/(2*v*vt)
	next.Lambda = math.Exp(next.LogLambda)
	if !(v > 0) || math.IsNaN(next.LogLambda) {
		next.LogLambda, next.Lambda = math.NaN(), math.NaN()
		next.Reject = next.P <= alpha
		return next
	}
	next.P = math.Min(prevP, math.Exp(-next.LogLambda))
	next.Reject = next.P <= alpha

	h := math.Sqrt(v * vt / tau2 * (2*math.Log(1/alpha) + math.Log(vt/v)))
	next.CI = Interval{
		Lower: math.Max(prevCI.Lower, diff-h),
		Upper: math.Min(prevCI.Upper, diff+h),
	}
	return next
}
