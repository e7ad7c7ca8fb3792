package analysis

import (
	"math"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// Tau2 returns the mixing variance τ² of a new mSPRT for a metric whose
// control arm has the given cumulative moments, and the variant's: the
// square of the effect the experiment hopes to detect, relativeMDE·|control
// mean|, or, when the control mean is 0, relativeMDE times the per-unit
// standard deviation pooled over both arms. It returns NaN when neither is
// positive yet (no data), and the test then waits for data. Once a test has
// started, its τ² must never change: it lives in SequentialState.
func Tau2(control, variant stats.Moments, relativeMDE float64) float64 {
	d := relativeMDE * math.Abs(control.Mean)
	if !(d > 0) || math.IsInf(d, 0) {
		d = relativeMDE * math.Sqrt((control.Var+variant.Var)/2)
	}
	if !(d > 0) || math.IsInf(d, 0) {
		return math.NaN()
	}
	return d * d
}

// sequentialTest replaces the fixed-horizon p-value and intervals of c by
// the mSPRT's always-valid ones, continuing the stored state of the
// comparison when there is one, and records the state to store.
func (an *analyzer) sequentialTest(def flywheel.Metric, control, variant MetricStats, c *Comparison) {
	alpha := an.opts.Alpha
	look := stats.Look{Control: control.moments(def.Type), Variant: variant.moments(def.Type)}
	key := stateKey{def.Key, variant.Variant}
	stored, ok := an.states[key] // states is nil in segments: one look
	prev, tau2 := stats.LookResult{}, math.NaN()
	store := an.states != nil
	if ok && stored.Tau2 > 0 {
		prev, tau2 = stored.State, stored.Tau2
		if stored.Alpha != alpha {
			// The stored p-value holds at any level; the stored interval
			// does not. Continue from the p-value alone, and keep the
			// stored state as it is.
			prev.CI = stats.Interval{Lower: math.Inf(-1), Upper: math.Inf(1)}
			store = false
		}
	} else {
		tau2 = Tau2(look.Control, look.Variant, an.opts.RelativeMDE)
	}
	if math.IsNaN(tau2) {
		c.PValue, c.Diff.CI, c.Lift.CI = nan(), [2]Float{nan(), nan()}, [2]Float{nan(), nan()}
		return
	}
	r := prev.Next(look, tau2, alpha)
	if store {
		an.newStates = append(an.newStates, SequentialState{
			Metric: def.Key, Variant: variant.Variant, Tau2: tau2, Alpha: alpha, State: r,
		})
	}
	c.PValue = Float(r.P)
	c.Diff.CI = [2]Float{Float(r.CI.Lower), Float(r.CI.Upper)}
	c.Lift.CI = liftSequence(r.CI, look.Control.Mean)
}

// liftSequence turns a confidence sequence of the difference into one of
// the relative lift, (variant − control)/control, treating the control
// mean as known.
func liftSequence(ci stats.Interval, controlMean float64) [2]Float {
	if controlMean == 0 || math.IsNaN(controlMean) {
		return [2]Float{nan(), nan()}
	}
	lo, hi := ci.Lower/controlMean, ci.Upper/controlMean
	if lo > hi {
		lo, hi = hi, lo
	}
	return [2]Float{Float(lo), Float(hi)}
}
