package analysis

import "time"

// Freshness says how complete a results document is: everything
// acknowledged up to AsOf is counted; PendingEvents acknowledged events are
// not yet (they wait for the aggregator), and LagSeconds is how far AsOf is
// behind the time the document was computed, 0 exactly when nothing is
// pending. Numbers recomputed from raw events are complete: every committed
// event is counted.
type Freshness struct {
	ComputedAt    time.Time `json:"computed_at"`
	AsOf          time.Time `json:"as_of"`
	LagSeconds    float64   `json:"lag_seconds"`
	PendingEvents int64     `json:"pending_events"`
}

// Complete is the freshness of numbers that count everything committed at
// now.
func Complete(now time.Time) Freshness {
	return Freshness{ComputedAt: now, AsOf: now}
}

// Pending is the freshness of aggregates computed at now while pending
// events wait, the oldest received at oldest. With no pending event it is
// Complete(now).
func Pending(now, oldest time.Time, pending int64) Freshness {
	if pending <= 0 {
		return Complete(now)
	}
	if oldest.After(now) {
		oldest = now
	}
	lag := now.Sub(oldest).Seconds()
	if lag <= 0 {
		lag = 1e-6 // pending, so never 0
	}
	return Freshness{ComputedAt: now, AsOf: oldest, LagSeconds: lag, PendingEvents: pending}
}
