package demo

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
)

// srm-demo: an onboarding checklist tested on devices, 50/50, whose
// exposure logging is broken in the new variant: the checklist page loses
// srmLost of its exposures (as when a page navigates away before its
// exposure is sent), while everything else about those devices happens as
// usual. The arms come out about 50/47 instead of 50/50, a sample ratio
// mismatch the trust checks catch at p far below 0.001, and the
// experiment's numbers must not be trusted.
const (
	srmDevices = 24000
	srmSeed    = 0x73726d // "srm"
	srmLost    = 0.06
	srmWindow  = 168 // hours, the signup window
	// Signup rates: 12% on the control, 13% with the checklist.
	srmControlRate   = 0.12
	srmChecklistRate = 0.13
	srmSpread        = 14 * 24 * time.Hour
	srmBefore        = 21 * 24 * time.Hour
)

var srmBrowsers = []string{"chrome", "safari", "firefox", "edge"}
var srmBrowserWeights = []float64{0.62, 0.24, 0.08, 0.06}

// srmEvents returns the devices' events and the units each arm should
// hold (the exposures that were not lost).
func srmEvents(snap *assign.Snapshot, anchor time.Time) ([]event, map[string]*ArmTally) {
	start := anchor.Add(-srmBefore)
	expect := map[string]*ArmTally{}
	var out []event
	for i := range srmDevices {
		rng := rand.New(rand.NewPCG(srmSeed, uint64(i)))
		dev := fmt.Sprintf("demo-v-%05d", i+1)
		attrs := map[string]any{"browser": srmBrowsers[pick(rng, srmBrowserWeights)]}
		t0 := start.Add(uniform(rng, 0, srmSpread)).Truncate(time.Millisecond)
		r := snap.Assign("srm-demo", dev, attrs)
		if !r.Enrolled {
			continue
		}
		rate := srmControlRate
		if r.Variant == "checklist" {
			rate = srmChecklistRate
		}
		lost := r.Variant == "checklist" && rng.Float64() < srmLost
		signedUp := rng.Float64() < rate
		if !lost {
			out = append(out, exposure(dev+"/exposure", "srm-demo", r.Variant, "device", dev, t0, attrs))
			t := expect[r.Variant]
			if t == nil {
				t = &ArmTally{}
				expect[r.Variant] = t
			}
			if r.Reason != assign.ReasonOverride {
				t.Units++
				if signedUp {
					t.Conversions++
				}
			}
		}
		if signedUp {
			ts := t0.Add(uniform(rng, time.Minute, (srmWindow-1)*time.Hour)).Truncate(time.Millisecond)
			out = append(out, track(dev+"/signup", "signup", nil, "device", dev, ts))
		}
	}
	return out, expect
}
