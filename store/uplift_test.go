package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/store"
)

// TestUpliftFold pins the fold of a unit id: the first 32 bits of its MD5,
// big-endian, modulo 5 (hashlib.md5(id).hexdigest()[:8] in Python).
func TestUpliftFold(t *testing.T) {
	tests := []struct {
		id   string
		want int
	}{
		{"", 3}, {"c-42", 2}, {"hillstrom-00001", 4}, {"ü-ñ", 4}, {"u-000", 3},
	}
	for _, tt := range tests {
		if got := store.UpliftFold(tt.id); got != tt.want {
			t.Errorf("UpliftFold(%q) = %d, want %d", tt.id, got, tt.want)
		}
	}
}

// TestUpliftFoldSQL: PostgreSQL puts every unit in the fold that
// UpliftFold computes, for ASCII and non-ASCII ids, so that the
// uplift answer can be reproduced from the ids alone, and the folds are
// balanced (each within 5% of 2,000 of 10,000 ids).
func TestUpliftFoldSQL(t *testing.T) {
	db := newDB(t)
	ids := []string{"", "c-42", "hillstrom-00001", "ü-ñ", "a'b"}
	for i := range 10_000 {
		ids = append(ids, fmt.Sprintf("u-%d", i))
	}
	got, err := store.UpliftFoldsForTest(context.Background(), db, ids)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, len(ids))
	counts := make([]int, analysis.UpliftFolds)
	for i, id := range ids {
		want[i] = store.UpliftFold(id)
		counts[want[i]]++
	}
	if !slices.Equal(got, want) {
		for i := range ids {
			if got[i] != want[i] {
				t.Errorf("fold of %q: SQL %d, Go %d", ids[i], got[i], want[i])
			}
		}
	}
	for f, n := range counts {
		if n < 1900 || n > 2100 {
			t.Errorf("fold %d holds %d of %d ids, want about a fifth", f, n, len(ids))
		}
	}
}
