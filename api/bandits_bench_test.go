package api_test

import (
	"net/http"
	"testing"
)

// BenchmarkAssignBandit compares POST /v1/assign of one unit to a fixed
// experiment and to a bandit, both with the unit's exposure recorded: the
// bandit's answer costs one more primary-key lookup of exposures (its
// sticky arm). BENCHMARKS.md, Bandits:
//
//	go test -run XXX -bench BenchmarkAssignBandit -benchtime 3000x ./api/
func BenchmarkAssignBandit(b *testing.B) {
	a := newTestAPI(b)
	a.createMetric("purchase", "conversion")
	for _, alloc := range []string{"fixed", "bandit"} {
		a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
			"key": alloc, "unit_type": "customer", "allocation": alloc,
			"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
			"metrics":  map[string]any{"primary": []any{"purchase"}},
		})
		a.must(http.StatusOK, "POST", "/v1/experiments/"+alloc+"/start", nil)
		a.assignOne(alloc, "c-1", true)
	}
	for _, alloc := range []string{"fixed", "bandit"} {
		b.Run(alloc, func(b *testing.B) {
			body := map[string]any{"unit_type": "customer", "unit_id": "c-1", "experiments": []any{alloc}}
			for b.Loop() {
				if r := a.do("POST", "/v1/assign", a.sdk, body); r.Status != http.StatusOK {
					b.Fatalf("assign: %d %s", r.Status, r.Body)
				}
			}
		})
	}
}
