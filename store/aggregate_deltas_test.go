package store

import (
	"strings"
	"testing"
)

// TestStagedForDefAll: the read of a fold's staged events when no
// recomputed unit is recorded (agg_staged_pairs empty) is the usual one
// without its check against agg_staged_pairs, and only that. (If the
// check's text in stagedForDef changed, strings.Replace would leave it in
// place: still correct, but the probe per event the variant exists to save
// would be back.)
func TestStagedForDefAll(t *testing.T) {
	if strings.Count(stagedForDef, notRecomputed) != 1 {
		t.Fatalf("stagedForDef holds the recomputed-units check %d times, want once", strings.Count(stagedForDef, notRecomputed))
	}
	if strings.Contains(stagedForDefAll, "agg_staged_pairs") {
		t.Errorf("stagedForDefAll still reads agg_staged_pairs")
	}
	if got, want := len(stagedForDef)-len(stagedForDefAll), len(notRecomputed); got != want {
		t.Errorf("stagedForDefAll is %d bytes shorter than stagedForDef, want %d (the check alone)", got, want)
	}
}
