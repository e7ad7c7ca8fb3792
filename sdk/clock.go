package sdk

import (
	"sync/atomic"
	"time"
)

// eventClock gives events their timestamps. time.Now reads two clocks,
// the wall clock and the monotonic one, and under a hypervisor each read
// costs tens of nanoseconds, more when the host is busy: a large share of
// a unit's first Assign. So the clock reads the wall clock once in a
// while (an anchor) and, for each event, only the monotonic clock: the
// time since the anchor, added to the anchor's wall time. Both clocks run
// at the same rate (NTP slews them alike), so the two differ only when the
// wall clock is set or the machine sleeps, and the clock follows within
// anchorAge: events recorded in between carry the time of before the
// jump, as they would have a moment earlier.
type eventClock struct {
	anchor atomic.Pointer[clockAnchor]
}

// clockAnchor is a time.Now reading: t keeps its monotonic reading, wall
// is its Unix nanoseconds.
type clockAnchor struct {
	t    time.Time
	wall int64
}

// anchorAge is how long an anchor is used: a new one (one allocation)
// ten times a second at most, however many events are recorded.
const anchorAge = 100 * time.Millisecond

// now returns the current time in Unix nanoseconds.
func (c *eventClock) now() int64 {
	if a := c.anchor.Load(); a != nil {
		if d := time.Since(a.t); d >= 0 && d < anchorAge {
			return a.wall + int64(d)
		}
	}
	t := time.Now()
	c.anchor.Store(&clockAnchor{t: t, wall: t.UnixNano()})
	return t.UnixNano()
}
