package store_test

import (
	"testing"

	"github.com/flywheel-oss/flywheel/store"
)

// TestFillStep checks how a fold fills an incomplete unit copy: a chunk of
// four rows an owner (1,000 to the most), or every row left once they are
// at most 128 (the default) an owner.
func TestFillStep(t *testing.T) {
	for _, tc := range []struct {
		name                         string
		owners, left, most, perOwner int
		chunk                        int
		rest                         bool
	}{
		{"a busy definition of 1.06M rows reads them all at once", 9_500, 1_060_000, 50_000, 0, 0, true},
		{"at 128 rows an owner, all", 1_000, 128_000, 50_000, 0, 0, true},
		{"one row more, a chunk", 1_000, 128_001, 50_000, 0, 4_000, false},
		{"a large definition, four rows an owner", 9_500, 3_000_000, 50_000, 0, 38_000, false},
		{"at most the most", 20_000, 3_000_000, 50_000, 0, 50_000, false},
		{"a quiet definition, at least 1,000", 10, 1_000_000, 50_000, 0, 1_000, false},
		{"nothing left, the rest (none) completes the copy", 5, 0, 50_000, 0, 0, true},
		{"tests: chunks of 2, then the rest at 3 an owner", 1, 5, 2, 3, 2, false},
		{"tests: the rest", 1, 3, 2, 3, 0, true},
		{"tests: never the rest", 100, 5, 2, -1, 2, false},
	} {
		chunk, rest := store.FillStep(tc.owners, tc.left, tc.most, tc.perOwner)
		if chunk != tc.chunk || rest != tc.rest {
			t.Errorf("%s: FillStep(%d owners, %d left, most %d, %d an owner) = %d, %v; want %d, %v",
				tc.name, tc.owners, tc.left, tc.most, tc.perOwner, chunk, rest, tc.chunk, tc.rest)
		}
	}
}

// TestFillStepCompletes follows a copy's fill over the folds of a
// definition with the same number of owners in each: the fill must end
// after a number of folds set by the rows and the owners,
// however few of the owners the copy lacks by then. A rule on the fold's
// lookups (the owners the copy lacks, which shrink with the rows left)
// never read the rest of a definition with fewer than a 128th of its rows
// as owners a fold, and its chunks shrank to the smallest.
func TestFillStepCompletes(t *testing.T) {
	for _, tc := range []struct {
		total, owners int
		folds         int // chunked folds before the copy is complete or a fold reads the rest
	}{
		{1_060_000, 9_500, 0},   // the bench's definitions at 20,000 events/s
		{3_000_000, 9_500, 47},  // 38,000 rows a fold until 1,216,000 are left
		{1_000_000, 1_000, 218}, // 4,000 a fold until 128,000
		{1_000_000, 10, 999},    // 1,000 a fold until 1,280
		{500, 1, 1},             // a chunk of 1,000 reads all 500
	} {
		left, folds := tc.total, 0
		for {
			chunk, rest := store.FillStep(tc.owners, left, 50_000, 0)
			if rest {
				break
			}
			if chunk <= 0 || folds > 10*tc.total {
				t.Fatalf("%d rows, %d owners a fold: a chunk of %d after %d folds", tc.total, tc.owners, chunk, folds)
			}
			left -= chunk
			folds++
			if left <= 0 { // a chunk shorter than asked for completes the copy
				break
			}
		}
		if folds != tc.folds {
			t.Errorf("%d rows, %d owners a fold: the rest read after %d chunked folds, want %d", tc.total, tc.owners, folds, tc.folds)
		}
	}
}
