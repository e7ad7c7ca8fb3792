package stats

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// TestBanditRegret is the regret table of BENCHMARKS.md (go test -run
// TestBanditRegret -v ./stats/): a three-arm conversion test (10 %, 11 %,
// 12 %) over 20 hourly epochs of 1,000 units, the first a burn-in at equal
// weights, run 500 times (100 under -race). Regret is the expected conversions lost against
// the oracle that sends everyone to the best arm, Σ n_arm·(p* − p_arm);
// the fixed 1/3 split loses (p* − p̄)·units by construction. Thompson
// sampling with a 5 % floor must lose less than the fixed split.
func TestBanditRegret(t *testing.T) {
	const epochs, perEpoch, draws = 20, 1000, 1000
	runs := regretRuns
	rates := []float64{0.10, 0.11, 0.12}
	best := 0.12
	type policy struct {
		name  string
		floor float64 // ignored by fixed
		fixed bool
	}
	policies := []policy{{"fixed 1/3 split", 0, true}, {"Thompson, floor 0.05", 0.05, false}, {"Thompson, floor 0.01", 0.01, false}}
	regret := make([]float64, len(policies))
	bestShare := make([]float64, len(policies))
	for pi, pol := range policies {
		rng := rand.New(rand.NewPCG(16, uint64(10+pi)))
		for range runs {
			cum := make([]Summary, len(rates))
			w := []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}
			for k := range epochs {
				left := int64(perEpoch)
				rest := 1.0
				for a, p := range rates {
					n := left
					if a < len(rates)-1 {
						n = int64(distuv.Binomial{N: float64(left), P: min(1, w[a]/rest), Src: rng}.Rand())
					}
					left -= n
					rest -= w[a]
					c := drawProportion(rng, n, p)
					cum[a] = cum[a].Merge(Summary{N: n, Sum: float64(c.Conversions), SumSq: float64(c.Conversions)})
					regret[pi] += float64(n) * (best - p)
					if a == len(rates)-1 && k == epochs-1 {
						bestShare[pi] += w[a]
					}
				}
				if !pol.fixed {
					pr, _ := ThompsonProbabilities(cum, true, draws, rng)
					w = FloorWeights(pr, pol.floor)
				}
			}
		}
		regret[pi] /= float64(runs)
		bestShare[pi] /= float64(runs)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| policy | regret vs oracle (conversions) | regret vs fixed split | best arm's weight, last epoch |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| oracle | 0 | %.1f | 1.00 |\n", -regret[0])
	for i, p := range policies {
		fmt.Fprintf(&b, "| %s | %.1f | %+.1f | %.2f |\n", p.name, regret[i], regret[i]-regret[0], bestShare[i])
	}
	t.Log(b.String())
	if want := (best - 0.11) * epochs * perEpoch; regret[0] < 0.95*want || regret[0] > 1.05*want {
		t.Errorf("fixed split regret = %.1f, want about %.1f", regret[0], want)
	}
	for i := 1; i < len(policies); i++ {
		if regret[i] >= 0.8*regret[0] {
			t.Errorf("%s regret = %.1f, want < 80 %% of the fixed split's %.1f", policies[i].name, regret[i], regret[0])
		}
	}
}
