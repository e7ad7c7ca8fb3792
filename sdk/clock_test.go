package sdk

import (
	"testing"
	"time"
)

// TestEventClock: the clock adds the monotonic time since its anchor to
// the anchor's wall time, and takes a new anchor once the old one is
// anchorAge old, so a wall clock that was set is followed. The anchors
// are made by hand, in the past or with a wall time off by an hour, so
// nothing waits.
func TestEventClock(t *testing.T) {
	const hour = int64(time.Hour)
	const slack = int64(time.Millisecond) // between the two clocks' readings of an anchor
	for _, tt := range []struct {
		name   string
		age    time.Duration // of the anchor
		offset int64         // of the anchor's wall time from the truth
		want   int64         // offset of the result from time.Now
		again  bool          // whether a new anchor is taken
	}{
		{"no anchor yet", -1, 0, 0, true},
		{"a fresh anchor", 0, 0, 0, false},
		{"the time since the anchor is added", 50 * time.Millisecond, 0, 0, false},
		{"a wall clock set within anchorAge is not seen yet", 50 * time.Millisecond, hour, hour, false},
		{"an old anchor is replaced", anchorAge, hour, 0, true},
		{"a much older one too", time.Hour, -hour, 0, true},
	} {
		var c eventClock
		var old *clockAnchor
		before := time.Now()
		if tt.age >= 0 {
			at := before.Add(-tt.age) // keeps its monotonic reading
			old = &clockAnchor{t: at, wall: at.UnixNano() + tt.offset}
			c.anchor.Store(old)
		}
		got := c.now() - tt.want
		after := time.Now()
		if got < before.UnixNano()-slack || got > after.UnixNano()+slack {
			t.Errorf("%s: now() - %v = %v, want between %v and %v", tt.name, time.Duration(tt.want),
				time.Unix(0, got).UTC(), before.UTC(), after.UTC())
		}
		if again := c.anchor.Load() != old; again != tt.again {
			t.Errorf("%s: new anchor %v, want %v", tt.name, again, tt.again)
		}
	}
}
