package analysis

import (
	"time"

	"github.com/flywheel-oss/flywheel"
)

// MaxSegmentValues bounds a results document broken down by segment: an
// attribute with more distinct values ("(none)" included) is refused, as
// the document would grow with each and every value would be too small to
// read. Segments are for attributes such as a device or a country.
const MaxSegmentValues = 50

// CheckSegmentValues refuses segment arms (of the attribute segment) that
// hold more than MaxSegmentValues distinct values.
func CheckSegmentValues(segment string, arms []ArmCounts) error {
	seen := map[string]bool{}
	for _, a := range arms {
		seen[a.Segment] = true
	}
	if len(seen) > MaxSegmentValues {
		return flywheel.Invalid("segment", "segment %q has %d distinct values; results are broken down by at most %d (choose an attribute such as a device or a country)", segment, len(seen), MaxSegmentValues)
	}
	return nil
}

// Query says what the database aggregates into an Input for one results
// document.
type Query struct {
	// Segment is the exposure attribute to break results down by ("" =
	// none); units without it fall in the segment "(none)".
	Segment string
	// Now is computed_at; it decides which units are still maturing.
	Now time.Time
	// Overrides are the stored (possibly pseudonymised) ids of overridden
	// units; they are not analysed.
	Overrides []string
}
