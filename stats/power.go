package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Power analysis for two equal arms and a two-sided test (stats-cases README
// §4). Sample sizes are per arm and unrounded; round up for a plan. Every
// function returns NaN when alpha or power is outside (0, 1), a rate is
// outside [0, 1] or sd is not positive.

// SampleSizeProportions returns the units per arm needed to detect a change
// of conversion rate from p1 to p2 with a two-sided test at level alpha and
// the given power: the closed-form root of R power.prop.test(strict=FALSE),
//
//	n = (z_{1−α/2}·√((p1+p2)(1−(p1+p2)/2)) + z_power·√(p1(1−p1)+p2(1−p2)))² / (p1−p2)².
//
// It is +Inf when p1 = p2.
func SampleSizeProportions(p1, p2, alpha, power float64) float64 {
	if !inUnitOpen(alpha, power) || !isRate(p1, p2) {
		return math.NaN()
	}
	za := ZQuantile(alpha)
	zb := ZQuantile(2 * (1 - power))
	s := p1 + p2
	num := za*math.Sqrt(s*(1-s/2)) + zb*math.Sqrt(p1*(1-p1)+p2*(1-p2))
	d := p1 - p2
	return num * num / (d * d)
}

// PowerProportions returns the power of the two-sided two-proportion test
// with n units per arm when the true rates are p1 and p2, as R
// power.prop.test(strict=FALSE):
//
//	Φ((√n·|p1−p2| − z_{1−α/2}·√((p1+p2)(1−(p1+p2)/2))) / √(p1(1−p1)+p2(1−p2))).
func PowerProportions(n, p1, p2, alpha float64) float64 {
	if !inUnitOpen(alpha) || !isRate(p1, p2) {
		return math.NaN()
	}
	s := p1 + p2
	x := (math.Sqrt(n)*math.Abs(p1-p2) - ZQuantile(alpha)*math.Sqrt(s*(1-s/2))) /
		math.Sqrt(p1*(1-p1)+p2*(1-p2))
	return distuv.UnitNormal.CDF(x)
}

// MDEProportions returns the smallest rise of the conversion rate above the
// baseline p1, p2 − p1 > 0, that n units per arm detect with the given power
// at level alpha: the p2 of R power.prop.test(n, p1, power). The relative
// MDE is the result divided by p1. It is NaN when even p2 = 1 is not
// detectable.
func MDEProportions(n, p1, alpha, power float64) float64 {
	if !inUnitOpen(alpha, power) || !isRate(p1) {
		return math.NaN()
	}
	f := func(p2 float64) float64 { return PowerProportions(n, p1, p2, alpha) - power }
	if !(f(1) >= 0) {
		return math.NaN()
	}
	return bisect(f, p1, 1) - p1
}

// SampleSizeMeans returns the units per arm needed to detect a difference
// delta between two means whose per-unit standard deviation is sd, with a
// two-sided t-test at level alpha and the given power: the n of R
// power.t.test(type="two.sample", strict=FALSE), found by bisection to a
// relative precision of 1e-13. See PowerMeans for the equation. It is +Inf
// when delta is 0.
func SampleSizeMeans(delta, sd, alpha, power float64) float64 {
	switch {
	case !inUnitOpen(alpha, power) || !(sd > 0) || math.IsNaN(delta):
		return math.NaN()
	case delta == 0:
		return math.Inf(1)
	}
	f := func(n float64) float64 { return PowerMeans(n, delta, sd, alpha) - power }
	// Start from the normal approximation 2(z_{1−α/2} + z_power)²·sd²/delta²
	// and widen until the root is bracketed.
	z := ZQuantile(alpha) + ZQuantile(2*(1-power))
	hi := math.Max(2, 2*z*z*sd*sd/(delta*delta))
	for f(hi) < 0 && hi < 1e15 {
		hi *= 2
	}
	lo := hi / 2
	for lo > 1 && f(lo) >= 0 {
		lo = 1 + (lo-1)/2
	}
	if lo <= 1 {
		lo = 1
	}
	return bisect(f, lo, hi)
}

// PowerMeans returns the power of the two-sided two-sample t-test with n
// units per arm, a true difference delta and a per-unit standard deviation
// sd, as R power.t.test(strict=FALSE), counting only the upper rejection
// region:
//
//	power = 1 − F_{t′}(t_{1−α/2, ν}; ν, λ),  ν = 2(n−1),  λ = √(n/2)·|delta|/sd,
//
// where F_{t′} is the noncentral t CDF (NoncentralTCDF).
func PowerMeans(n, delta, sd, alpha float64) float64 {
	if !inUnitOpen(alpha) || !(sd > 0) || !(n > 1) {
		return math.NaN()
	}
	nu := 2 * (n - 1)
	ncp := math.Sqrt(n/2) * math.Abs(delta) / sd
	return 1 - NoncentralTCDF(tQuantile(alpha, nu), nu, ncp)
}

// MDEMeans returns the smallest difference of means, delta > 0, that n units
// per arm detect with the given power at level alpha when the per-unit
// standard deviation is sd: the delta of R power.t.test(n, sd, power).
func MDEMeans(n, sd, alpha, power float64) float64 {
	if !inUnitOpen(alpha, power) || !(sd > 0) || !(n > 1) {
		return math.NaN()
	}
	f := func(delta float64) float64 { return PowerMeans(n, delta, sd, alpha) - power }
	lo, hi := sd*1e-7, sd*1e7
	if !(f(hi) >= 0) || f(lo) >= 0 {
		return math.NaN()
	}
	return bisect(f, lo, hi)
}

// bisect returns the root of f in [lo, hi], where f(lo) < 0 ≤ f(hi) and f
// is increasing. It halves the bracket until its width is below 1e-13 of
// the root (or floating point can split it no further): slower than Brent's
// method, but it cannot stall, and the power functions it serves cost
// little. A root at lo or hi is returned as is.
func bisect(f func(float64) float64, lo, hi float64) float64 {
	if f(lo) >= 0 {
		return lo
	}
	for range 200 {
		mid := lo + (hi-lo)/2
		if mid <= lo || mid >= hi || hi-lo <= 1e-13*math.Abs(mid) {
			break
		}
		if f(mid) >= 0 {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo + (hi-lo)/2
}

// inUnitOpen reports whether every v lies in (0, 1).
func inUnitOpen(vs ...float64) bool {
	for _, v := range vs {
		if !(v > 0 && v < 1) {
			return false
		}
	}
	return true
}

// isRate reports whether every v lies in [0, 1].
func isRate(vs ...float64) bool {
	for _, v := range vs {
		if !(v >= 0 && v <= 1) {
			return false
		}
	}
	return true
}
