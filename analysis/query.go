package analysis

import "time"

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
