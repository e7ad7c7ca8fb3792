package stats

import "math"

// Summary is the sufficient statistics of one arm for one metric: the
// number of units and the sums of the per-unit value y and of the covariate
// x (the same metric before exposure, for CUPED and ANCOVA). Metrics
// without a covariate leave the X sums at 0.
//
// Variances are computed from raw sums, so their relative precision is about
// 1e-16·(mean²/variance); that is ample for experiment metrics, whose
// coefficient of variation is rarely below 1e-3.
type Summary struct {
	N      int64   // units
	Sum    float64 // Σy
	SumSq  float64 // Σy²
	SumX   float64 // Σx
	SumXSq float64 // Σx²
	SumXY  float64 // Σxy
}

// Add accumulates one unit with value y and covariate x.
func (s *Summary) Add(y, x float64) {
	s.N++
	s.Sum += y
	s.SumSq += y * y
	s.SumX += x
	s.SumXSq += x * x
	s.SumXY += x * y
}

// Merge returns the summary of the units of s and o together.
func (s Summary) Merge(o Summary) Summary {
	return Summary{
		N:      s.N + o.N,
		Sum:    s.Sum + o.Sum,
		SumSq:  s.SumSq + o.SumSq,
		SumX:   s.SumX + o.SumX,
		SumXSq: s.SumXSq + o.SumXSq,
		SumXY:  s.SumXY + o.SumXY,
	}
}

// Mean returns ȳ, or NaN when there are no units.
func (s Summary) Mean() float64 { return mean(s.Sum, s.N) }

// Var returns the sample variance of y (n−1 denominator), or NaN for fewer
// than two units.
func (s Summary) Var() float64 { return comoment(s.SumSq, s.Sum, s.Sum, s.N) }

// MeanX returns x̄, or NaN when there are no units.
func (s Summary) MeanX() float64 { return mean(s.SumX, s.N) }

// VarX returns the sample variance of x (n−1 denominator).
func (s Summary) VarX() float64 { return comoment(s.SumXSq, s.SumX, s.SumX, s.N) }

// CovXY returns the sample covariance of x and y (n−1 denominator).
func (s Summary) CovXY() float64 { return comoment(s.SumXY, s.SumX, s.Sum, s.N) }

// Moments returns the size, mean and sample variance of y.
func (s Summary) Moments() Moments {
	return Moments{N: s.N, Mean: s.Mean(), Var: s.Var()}
}

func mean(sum float64, n int64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// comoment returns (Σab − Σa·Σb/n)/(n−1). A variance (a = b) that rounding
// pushes below 0 is returned as 0.
func comoment(sumAB, sumA, sumB float64, n int64) float64 {
	if n < 2 {
		return math.NaN()
	}
	c := (sumAB - sumA*(sumB/float64(n))) / float64(n-1)
	if sumA == sumB && c < 0 {
		c = 0
	}
	return c
}

// Moments is the size, mean and sample variance (n−1 denominator) of one
// arm: all that Welch's test needs. CUPED-adjusted values and the looks of a
// sequential test come in this form.
type Moments struct {
	N    int64
	Mean float64
	Var  float64
}

// varOfMean returns s²/n, the squared standard error of the mean.
func (m Moments) varOfMean() float64 { return m.Var / float64(m.N) }

// Proportion is the sufficient statistics of one arm for a conversion
// metric: the units and how many of them converted.
type Proportion struct {
	N           int64
	Conversions int64
}

// Rate returns Conversions/N, or NaN when there are no units.
func (p Proportion) Rate() float64 { return mean(float64(p.Conversions), p.N) }

// varOfRate returns p̂(1−p̂)/n, the binomial variance of the rate.
func (p Proportion) varOfRate() float64 {
	r := p.Rate()
	return r * (1 - r) / float64(p.N)
}
