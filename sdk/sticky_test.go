package sdk_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flywheel-oss/flywheel/sdk"
)

func banditConfig(wa, wb float64, sticky bool) []byte {
	return fmt.Appendf(nil, `{"revision":1,"experiments":[{"key":"bandit","unit_type":"customer","running":true,"traffic":1,"sticky":%t,
		"variants":[{"key":"a","weight":%g},{"key":"b","weight":%g}]}]}`, sticky, wa, wb)
}

// TestStickyBandit: when a bandit's weights move from 0.5/0.5 to
// 0.05/0.95, the units a client already assigned keep their arm, units it
// never saw follow the new weights, and a non-sticky experiment's units
// move with the weights (the check can fail).
func TestStickyBandit(t *testing.T) {
	ctx := context.Background()
	for _, sticky := range []bool{true, false} {
		t.Run(fmt.Sprintf("sticky=%t", sticky), func(t *testing.T) {
			f := newFakeServer(t, banditConfig(0.5, 0.5, sticky))
			c := newTestClient(t, f.URL())
			if err := c.EnsureLoaded(ctx); err != nil {
				t.Fatal(err)
			}
			first := map[string]string{}
			for i := range 1000 {
				u := fmt.Sprintf("u-%d", i)
				first[u] = c.Assign(ctx, sdk.Unit{IDs: map[string]string{"customer": u}}, "bandit").Variant
			}
			f.setConfig(2, banditConfig(0.05, 0.95, sticky))
			if err := c.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			moved := 0
			for u, v := range first {
				if c.Assign(ctx, sdk.Unit{IDs: map[string]string{"customer": u}}, "bandit").Variant != v {
					moved++
				}
			}
			newB := 0
			for i := range 1000 {
				u := fmt.Sprintf("new-%d", i)
				if c.Assign(ctx, sdk.Unit{IDs: map[string]string{"customer": u}}, "bandit").Variant == "b" {
					newB++
				}
			}
			if newB < 900 {
				t.Errorf("%d of 1000 new units in b, want about 950", newB)
			}
			switch {
			case sticky && moved != 0:
				t.Errorf("%d of 1000 units changed arm in a sticky experiment, want 0", moved)
			case !sticky && moved < 300:
				t.Errorf("%d of 1000 units changed arm without stickiness, want about 450", moved)
			}
			if st := c.Stats(); sticky && st.StickyUnits != 2000 {
				t.Errorf("Stats.StickyUnits = %d, want 2000", st.StickyUnits)
			}
		})
	}
}

// TestStickyBanditBound: past WithStickyUnits, new units are assigned by
// the current weights and counted in Stats.StickyFull.
func TestStickyBanditBound(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t, banditConfig(0.5, 0.5, true))
	c := newTestClient(t, f.URL(), sdk.WithStickyUnits(10))
	if err := c.EnsureLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		c.Assign(ctx, sdk.Unit{IDs: map[string]string{"customer": fmt.Sprint(i)}}, "bandit")
	}
	if st := c.Stats(); st.StickyUnits != 10 || st.StickyFull != 20 {
		t.Errorf("Stats = %d remembered, %d not; want 10 and 20", st.StickyUnits, st.StickyFull)
	}
	if _, err := sdk.New(ctx, sdk.Config{}, sdk.WithStickyUnits(0)); err == nil {
		t.Error("WithStickyUnits(0) accepted")
	}
}

// TestStickyBanditTraffic: with traffic below 1, moving weights move the
// variants' bucket ranges, so some enrolled units' buckets fall in the gap;
// a bandit keeps them enrolled in their first arm.
func TestStickyBanditTraffic(t *testing.T) {
	ctx := context.Background()
	config := func(wa, wb float64) []byte {
		return fmt.Appendf(nil, `{"revision":1,"experiments":[{"key":"bandit","unit_type":"customer","running":true,"traffic":0.5,"sticky":true,
			"variants":[{"key":"a","weight":%g},{"key":"b","weight":%g}]}]}`, wa, wb)
	}
	f := newFakeServer(t, config(0.5, 0.5))
	c := newTestClient(t, f.URL())
	if err := c.EnsureLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	first := map[string]string{}
	for i := range 1000 {
		u := fmt.Sprintf("u-%d", i)
		if v := c.Assign(ctx, sdk.Unit{IDs: map[string]string{"customer": u}}, "bandit").Variant; v != "" {
			first[u] = v
		}
	}
	f.setConfig(2, config(0.05, 0.95))
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	changed := 0
	for u, v := range first {
		if a := c.Assign(ctx, sdk.Unit{IDs: map[string]string{"customer": u}}, "bandit"); a.Variant != v || !a.Enrolled {
			changed++
		}
	}
	if len(first) < 400 || changed != 0 {
		t.Errorf("%d of %d enrolled units changed arm or left, want none", changed, len(first))
	}
}
