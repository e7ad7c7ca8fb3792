package assign

import (
	"math"
	"strconv"
	"testing"
)

// chiSquare999 is the 0.999 quantile of the chi-square distribution by
// degrees of freedom: a correct hash exceeds it one time in a thousand.
var chiSquare999 = map[int]float64{
	1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 99: 148.230,
}

// sampleSize is the number of ids per uniformity check: full, or a fifth in
// -short mode. (The full run takes about 2 s under -race.)
func sampleSize(full int) int {
	if testing.Short() {
		return full / 5
	}
	return full
}

// unitID is the i-th synthetic unit id.
func unitID(i int) string { return "unit-" + strconv.Itoa(i) }

// chiSquare returns the statistic and degrees of freedom of observed counts
// against expected probabilities (categories with probability 0 must be
// empty and are not counted).
func chiSquare(tb testing.TB, observed []int, probs []float64) (stat float64, df int) {
	tb.Helper()
	n := 0
	for _, o := range observed {
		n += o
	}
	for i, p := range probs {
		if p == 0 {
			if observed[i] != 0 {
				tb.Fatalf("category %d has probability 0 but %d observations", i, observed[i])
			}
			continue
		}
		e := float64(n) * p
		d := float64(observed[i]) - e
		stat += d * d / e
		df++
	}
	return stat, df - 1
}

func TestVariantUniformity(t *testing.T) {
	third := 1.0 / 3
	tests := []struct {
		name    string
		weights []float64
	}{
		{"50/50", []float64{0.5, 0.5}},
		{"90/10", []float64{0.9, 0.1}},
		{"5 equal", []float64{0.2, 0.2, 0.2, 0.2, 0.2}},
		{"1/3 each", []float64{third, third, third}},
	}
	n := sampleSize(1_000_000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := halves("uniformity-" + tt.name)
			e.Variants = nil
			for i, w := range tt.weights {
				e.Variants = append(e.Variants, Variant{Key: strconv.Itoa(i), Weight: w})
			}
			c, _ := mustCompile(t, e).Lookup(e.Key)
			// One category per variant, plus "not enrolled" (bucket 9999
			// for 1/3 each), with the probability its bucket range gives.
			probs := make([]float64, len(tt.weights)+1)
			probs[len(tt.weights)] = 1
			for i := range tt.weights {
				start, end := c.Range(i)
				probs[i] = float64(end-start) / Buckets
				probs[len(tt.weights)] -= probs[i]
			}
			probs[len(tt.weights)] = math.Round(probs[len(tt.weights)]*Buckets) / Buckets
			observed := make([]int, len(probs))
			for i := range n {
				r := c.Assign(unitID(i), nil)
				if r.Index < 0 {
					observed[len(tt.weights)]++
				} else {
					observed[r.Index]++
				}
			}
			stat, df := chiSquare(t, observed, probs)
			if q := chiSquare999[df]; stat >= q {
				t.Errorf("chi-square = %.3f with %d df over %d ids, want < %.3f (counts %v)", stat, df, n, q, observed)
			}
		})
	}
}

func TestBucketUniformity(t *testing.T) {
	n := sampleSize(1_000_000)
	observed := make([]int, 100)
	probs := make([]float64, 100)
	for i := range probs {
		probs[i] = 0.01
	}
	for i := range n {
		observed[Bucket("uniformity:"+unitID(i))/100]++
	}
	stat, df := chiSquare(t, observed, probs)
	if q := chiSquare999[df]; stat >= q {
		t.Errorf("chi-square over 100 bucket cells = %.3f with %d df, want < %.3f", stat, df, q)
	}
}

func TestIndependence(t *testing.T) {
	s := mustCompile(t, halves("independent-a"), halves("independent-b"))
	a, _ := s.Lookup("independent-a")
	b, _ := s.Lookup("independent-b")
	const n = 200_000
	var table [2][2]int
	for i := range n {
		id := unitID(i)
		table[a.Assign(id, nil).Index][b.Assign(id, nil).Index]++
	}
	stat := 0.0
	for i := range 2 {
		for j := range 2 {
			row := table[i][0] + table[i][1]
			col := table[0][j] + table[1][j]
			e := float64(row) * float64(col) / n
			d := float64(table[i][j]) - e
			stat += d * d / e
		}
	}
	if q := chiSquare999[1]; stat >= q {
		t.Errorf("2x2 contingency chi-square = %.3f, want < %.3f (table %v)", stat, q, table)
	}
}

func TestRampKeepsVariants(t *testing.T) {
	third := 1.0 / 3
	for _, weights := range [][]float64{{0.5, 0.5}, {third, third, third}, {0.9, 0.1}} {
		var steps []*Compiled
		traffics := []float64{0.1, 0.5, 1.0}
		for _, tr := range traffics {
			e := halves("ramp")
			e.Variants, e.Traffic = nil, tr
			for i, w := range weights {
				e.Variants = append(e.Variants, Variant{Key: strconv.Itoa(i), Weight: w})
			}
			c, _ := mustCompile(t, e).Lookup("ramp")
			steps = append(steps, c)
		}
		const n = 100_000
		enrolled := make([]int, len(steps))
		for i := range n {
			id := unitID(i)
			prev := -1
			for k, c := range steps {
				r := c.Assign(id, nil)
				if r.Enrolled {
					enrolled[k]++
				}
				if prev >= 0 && r.Index != prev {
					t.Fatalf("weights %v: unit %q in variant %d at traffic %v moved to %d at traffic %v",
						weights, id, prev, traffics[k-1], r.Index, traffics[k])
				}
				prev = r.Index
			}
		}
		for k, tr := range traffics {
			if share := float64(enrolled[k]) / n; math.Abs(share-tr) > 0.01 {
				t.Errorf("weights %v at traffic %v: enrolled share %.4f, want %.2f ± 0.01", weights, tr, share, tr)
			}
		}
	}
}
