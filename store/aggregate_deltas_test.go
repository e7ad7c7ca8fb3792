package store

import (
	"strings"
	"testing"
)

// TestFoldTracksAllSQL: the tracks statement for folds when no recomputed
// unit is recorded (agg_staged_pairs empty) is the usual one without its
// check against agg_staged_pairs, and only that. (If the check's text in
// foldTracksSQL changed, strings.Replace would leave it in place: still
// correct, but the probe per event the variant exists to save would be
// back.)
func TestFoldTracksAllSQL(t *testing.T) {
	if strings.Count(foldTracksSQL, notRecomputed) != 1 {
		t.Fatalf("foldTracksSQL holds the recomputed-units check %d times, want once", strings.Count(foldTracksSQL, notRecomputed))
	}
	if strings.Contains(foldTracksAllSQL, "agg_staged_pairs") {
		t.Errorf("foldTracksAllSQL still reads agg_staged_pairs")
	}
	if got, want := len(foldTracksSQL)-len(foldTracksAllSQL), len(notRecomputed); got != want {
		t.Errorf("foldTracksAllSQL is %d bytes shorter than foldTracksSQL, want %d (the check alone)", got, want)
	}
}
