package assign

import "testing"

// TestElemMatchDoesNotAllocate pins that $elemMatch, in both forms, matches
// without allocating.
func TestElemMatchDoesNotAllocate(t *testing.T) {
	for _, cond := range []string{
		`{"tags": {"$elemMatch": {"$eq": "b"}}}`,
		`{"items": {"$elemMatch": {"sku": "x", "qty": {"$gt": 1}}}}`,
	} {
		c, err := ParseCondition([]byte(cond))
		if err != nil {
			t.Fatal(err)
		}
		attrs := map[string]any{
			"tags":  []any{"a", "b"},
			"items": []any{map[string]any{"sku": "y", "qty": 5.0}, map[string]any{"sku": "x", "qty": 2.0}},
		}
		if !c.Match(attrs) {
			t.Fatalf("%s does not match", cond)
		}
		if n := testing.AllocsPerRun(100, func() { c.Match(attrs) }); n != 0 {
			t.Errorf("%s: %v allocs per match, want 0", cond, n)
		}
	}
}
