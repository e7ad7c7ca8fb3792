package stats

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/integrate/quad"
	"gonum.org/v1/gonum/mathext"
	"gonum.org/v1/gonum/stat/distuv"
)

// TestBayesProportionsExact compares with the finite sums of README §3.6
// evaluated by mpmath at 40 significant digits. The first case (both arms
// converted every unit) makes the losses small differences of large sums,
// which is what broke with gonum's Lbeta.
func TestBayesProportionsExact(t *testing.T) {
	tests := []struct {
		control, variant                 Proportion
		chance, lossVariant, lossControl float64
	}{
		{Proportion{N: 3605, Conversions: 3605}, Proportion{N: 4385, Conversions: 4385}, 0.5487987987987988, 0.00010283673390875325, 0.00015212923173593362},
		{Proportion{N: 1000, Conversions: 100}, Proportion{N: 1000, Conversions: 120}, 0.92318343897355975, 0.00048461392635644373, 0.020444693766675805},
		{Proportion{N: 50, Conversions: 0}, Proportion{N: 60, Conversions: 3}, 0.91597647331592286, 0.0015586392798782179, 0.046843999081367052},
		{Proportion{N: 200000, Conversions: 2000}, Proportion{N: 200000, Conversions: 2100}, 0.94175286724379287, 7.9510395051480568e-6, 0.00050794603955514756},
		{Proportion{N: 300, Conversions: 290}, Proportion{N: 320, Conversions: 300}, 0.047442016271005039, 0.029144467051315769, 0.00035091680657059161},
	}
	for _, tt := range tests {
		got := BayesProportions(tt.control, tt.variant, 0.05)
		for _, c := range []struct {
			name      string
			got, want float64
		}{
			{"ChanceToWin", got.ChanceToWin, tt.chance},
			{"LossVariant", got.LossVariant, tt.lossVariant},
			{"LossControl", got.LossControl, tt.lossControl},
		} {
			if math.Abs(c.got-c.want) > 1e-10*c.want {
				t.Errorf("BayesProportions(%v, %v).%s = %.17g, want %.17g", tt.control, tt.variant, c.name, c.got, c.want)
			}
		}
	}
}

// TestBayesProportionsIntegral checks the sums against numerical
// integration of the README integrals, ∫ f_t(u)·F_c(u) du for the chance
// to win and ∫ f_t(v)·[m_c(1 − I_v(α_c+1, β_c)) − v(1 − I_v(α_c, β_c))] dv
// for the loss of choosing the variant.
func TestBayesProportionsIntegral(t *testing.T) {
	for _, arms := range [][2]Proportion{
		{{N: 400, Conversions: 40}, {N: 380, Conversions: 52}},
		{{N: 90, Conversions: 85}, {N: 100, Conversions: 90}}, // long sums: the symmetric form
		{{N: 30, Conversions: 0}, {N: 30, Conversions: 1}},
	} {
		c, v := BetaPosterior(arms[0]), BetaPosterior(arms[1])
		fv := distuv.Beta{Alpha: v.Alpha, Beta: v.Beta}
		chance := quad.Fixed(func(u float64) float64 {
			return fv.Prob(u) * mathext.RegIncBeta(c.Alpha, c.Beta, u)
		}, 0, 1, 2000, nil, 0)
		loss := quad.Fixed(func(u float64) float64 {
			return fv.Prob(u) * (c.Mean()*(1-mathext.RegIncBeta(c.Alpha+1, c.Beta, u)) - u*(1-mathext.RegIncBeta(c.Alpha, c.Beta, u)))
		}, 0, 1, 2000, nil, 0)
		got := BayesProportions(arms[0], arms[1], 0.05)
		if math.Abs(got.ChanceToWin-chance) > 1e-9 {
			t.Errorf("BayesProportions(%v, %v).ChanceToWin = %.15g, integral %.15g", arms[0], arms[1], got.ChanceToWin, chance)
		}
		if math.Abs(got.LossVariant-loss) > 1e-9*math.Max(loss, 1e-3) {
			t.Errorf("BayesProportions(%v, %v).LossVariant = %.15g, integral %.15g", arms[0], arms[1], got.LossVariant, loss)
		}
	}
}

// TestLbeta compares with log B(a, b) from mpmath at 40 digits.
func TestLbeta(t *testing.T) {
	tests := []struct{ a, b, want float64 }{
		{1, 4386, -8.3861729289778335},
		{0.5, 3, 0.064538521137571172},
		{2, 4386, -16.772573830144047},
		{3606, 4387, -5504.9847642793518},
		{930, 11080, -3274.7122093783302},
		{12.5, 1e7, -182.74185531253968},
		{1, 1e6, -13.815510557964274},
	}
	for _, tt := range tests {
		if got := lbeta(tt.a, tt.b); math.Abs(got-tt.want) > 4e-16*math.Max(1, math.Abs(tt.want)) {
			t.Errorf("lbeta(%v, %v) = %.17g, want %.17g", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestBayesMeans checks the normal closed forms against integration of the
// posterior N(μ, SE²).
func TestBayesMeans(t *testing.T) {
	control, variant := Moments{N: 400, Mean: 10, Var: 90}, Moments{N: 500, Mean: 10.6, Var: 120}
	got := BayesMeans(control, variant, 0.05)
	mu, se := 0.6, math.Sqrt(90.0/400+120.0/500)
	post := distuv.Normal{Mu: mu, Sigma: se}
	lossVariant := quad.Fixed(func(d float64) float64 { return -d * post.Prob(d) }, mu-12*se, 0, 1000, nil, 0)
	lossControl := quad.Fixed(func(d float64) float64 { return d * post.Prob(d) }, 0, mu+12*se, 1000, nil, 0)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"ChanceToWin", got.ChanceToWin, post.Survival(0)},
		{"LossVariant", got.LossVariant, lossVariant},
		{"LossControl", got.LossControl, lossControl},
		{"Diff.SE", got.Diff.SE, se},
		{"Diff.CI.Upper", got.Diff.CI.Upper, mu + 1.959963984540054*se},
	} {
		if math.Abs(c.got-c.want) > 1e-10 {
			t.Errorf("BayesMeans(%v, %v).%s = %.15g, want %.15g", control, variant, c.name, c.got, c.want)
		}
	}
}

func TestPosteriorInterval(t *testing.T) {
	p := BetaPosterior(Proportion{N: 1000, Conversions: 100})
	iv := p.Interval(0.05)
	d := distuv.Beta{Alpha: 101, Beta: 901}
	if lo, hi := d.CDF(iv.Lower), d.CDF(iv.Upper); math.Abs(lo-0.025) > 1e-9 || math.Abs(hi-0.975) > 1e-9 {
		t.Errorf("BetaPosterior(100/1000).Interval(0.05) = %v, whose CDFs are %v and %v, want 0.025 and 0.975", iv, lo, hi)
	}
}

// probGreaterWhole is the whole sum probGreater truncates: every term from
// i = 0, each computed as probGreater computes it (the anchor at the start
// of its block of 32, then the ratios upwards).
func probGreaterWhole(x, y Posterior) float64 {
	if y.Beta < x.Alpha {
		x, y = Posterior{y.Beta, y.Alpha}, Posterior{x.Beta, x.Alpha}
	}
	lbY := lbeta(y.Alpha, y.Beta)
	var sum, comp, term float64
	for k := 0; float64(k) < x.Alpha; k++ {
		i := float64(k)
		if k%32 == 0 {
			term = math.Exp(lbeta(y.Alpha+i, y.Beta+x.Beta) - math.Log(x.Beta+i) - lbeta(1+i, x.Beta) - lbY)
		} else {
			j := i - 1
			term *= (y.Alpha + j) * (x.Beta + j) / ((y.Alpha + y.Beta + x.Beta + j) * (1 + j))
		}
		s := sum + term
		if math.Abs(sum) >= term {
			comp += (sum - s) + term
		} else {
			comp += (term - s) + sum
		}
		sum = s
	}
	return math.Min(1, sum+comp)
}

// TestProbGreaterWindow compares probGreater, which sums only the terms
// around the largest, with the whole sum, for posteriors from a handful of
// units to millions: rates near 0, ½ and 1, arms alike and far apart
// (results near 1 and below 1e-100), the mode at either end of the range
// and inside it, and the shorter side on either arm. Both losses of
// BayesProportions, differences of such sums, must agree too.
func TestProbGreaterWindow(t *testing.T) {
	counts := [][2]int64{{0, 1}, {1, 1}, {3, 50}, {49, 50}, {100, 1000}, {500, 1000}, {990, 1000},
		{2000, 200000}, {2150, 200000}, {50000, 1000000}, {50600, 1000000}, {480000, 1000000}, {999990, 1000000}, {1000000, 1000000}}
	cases := 0
	for _, a := range counts {
		for _, b := range counts {
			x := BetaPosterior(Proportion{N: a[1], Conversions: a[0]})
			y := BetaPosterior(Proportion{N: b[1], Conversions: b[0]})
			if min(x.Alpha, y.Beta) > 60000 && max(x.Alpha, y.Beta) > 60000 {
				continue // the whole sum takes too long for a test; the rest cover the shape
			}
			cases++
			got, want := probGreater(x, y), probGreaterWhole(x, y)
			if math.Abs(got-want) > 1e-13*want {
				t.Errorf("probGreater(%v, %v) = %.17g, the whole sum %.17g", x, y, got, want)
			}
			c, v := Proportion{N: a[1], Conversions: a[0]}, Proportion{N: b[1], Conversions: b[0]}
			r := BayesProportions(c, v, 0.05)
			cUp, vUp := Posterior{x.Alpha + 1, x.Beta}, Posterior{y.Alpha + 1, y.Beta}
			lossVariant := math.Max(0, x.Mean()*probGreaterWhole(cUp, y)-y.Mean()*probGreaterWhole(x, vUp))
			lossControl := math.Max(0, y.Mean()*probGreaterWhole(vUp, x)-x.Mean()*probGreaterWhole(y, cUp))
			if math.Abs(r.LossVariant-lossVariant) > 1e-14 || math.Abs(r.LossControl-lossControl) > 1e-14 {
				t.Errorf("BayesProportions(%v, %v) losses %.17g and %.17g, from the whole sums %.17g and %.17g",
					c, v, r.LossVariant, r.LossControl, lossVariant, lossControl)
			}
		}
	}
	if cases < 150 {
		t.Fatalf("only %d cases compared", cases)
	}
}

// BenchmarkBayesProportions measures the exact sums at a million units per
// arm and a 5% rate: about 50,000 terms per sum.
func BenchmarkBayesProportions(b *testing.B) {
	c, v := Proportion{N: 1_000_000, Conversions: 50_000}, Proportion{N: 1_000_000, Conversions: 50_600}
	for b.Loop() {
		BayesProportions(c, v, 0.05)
	}
}

// BenchmarkBayesProportionsTenMillion is the same at ten million units per
// arm and a 40% rate, where the whole sums would run over 4,000,000 terms.
func BenchmarkBayesProportionsTenMillion(b *testing.B) {
	c, v := Proportion{N: 10_000_000, Conversions: 4_000_000}, Proportion{N: 10_000_000, Conversions: 4_003_000}
	for b.Loop() {
		BayesProportions(c, v, 0.05)
	}
}
