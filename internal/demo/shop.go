package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
)

// The shop: a synthetic e-commerce journey for checkout-button and
// free-shipping. Customers browse on one to three devices (phone, laptop,
// tablet), each device linked to the customer by an identify event when
// they sign in on it: one before their first visit, the others later.
// Both experiments randomise on the customer, so a customer sees one
// variant on every device; purchases are tracked on the device they happen
// on, and count for the customer through the links.
//
// Everything is drawn from a fixed seed per customer, so every run makes
// the same events with the same ids.
const (
	shopCustomers = 20000
	shopSeed      = 0x73686f70 // "shop"
	shopWindow    = 168        // hours, the purchase and revenue window

	// The first visits (exposures) fall in the 20 days from 28 to 8 days
	// before the anchor, so that every 168 h window has passed.
	shopSpread = 20 * 24 * time.Hour
	shopBefore = 28 * 24 * time.Hour

	// Each customer has an engagement e (log-normal, mean 1): purchases
	// are Poisson with mean baseRate·e in the window (times the effects),
	// and preRate·e in the two weeks before the first visit (the CUPED
	// period of revenue, which they therefore predict).
	baseRate = 0.12
	preRate  = 0.20
	sigmaE   = 0.9
	// Order values are log-normal around meanOrder dollars.
	meanOrder  = 62.0
	sigmaOrder = 0.55

	// The effects the demo plants: the green button raises the purchase
	// rate by 12%; free shipping raises it by 10% but orders are 9%
	// smaller, so revenue per customer barely moves (the guardrail).
	greenLift     = 1.15
	freeShipLift  = 1.15
	freeShipValue = 0.88
)

var (
	shopDevices   = []string{"mobile", "desktop", "tablet"}
	deviceWeights = []float64{0.55, 0.35, 0.10}
	shopCountries = []string{"FR", "DE", "GB", "US", "ES", "BE", "NL", "IT"}
	countryWeight = []float64{0.22, 0.18, 0.16, 0.14, 0.10, 0.08, 0.07, 0.05}
	deviceCounts  = []float64{0.50, 0.35, 0.15} // one, two, three devices
)

// ArmTally is what the demo expects in one arm: analysed units, units
// with a conversion (a purchase, a sign-up) in their window, and the sum
// of their purchases' values there.
type ArmTally struct {
	Units       int64
	Conversions int64
	Revenue     float64
}

// shopEvents returns the journey's events for the experiments in exps
// (checkout-button, free-shipping; an experiment not in exps gets no
// exposures), assigned as the server assigns them (snap compiled from GET
// /v1/sdk/config), and what each arm should hold: expect[experiment][variant].
func shopEvents(snap *assign.Snapshot, exps map[string]bool, anchor time.Time) ([]event, map[string]map[string]*ArmTally) {
	start := anchor.Add(-shopBefore)
	expect := map[string]map[string]*ArmTally{}
	var out []event
	for i := range shopCustomers {
		rng := rand.New(rand.NewPCG(shopSeed, uint64(i)))
		cust := fmt.Sprintf("demo-c-%05d", i+1)
		devices := make([]string, 1+pick(rng, deviceCounts))
		for k := range devices {
			devices[k] = fmt.Sprintf("demo-d-%05d-%d", i+1, k+1)
		}
		attrs := map[string]any{
			"device":  shopDevices[pick(rng, deviceWeights)],
			"country": shopCountries[pick(rng, countryWeight)],
		}
		engagement := math.Exp(sigmaE*rng.NormFloat64() - sigmaE*sigmaE/2)
		t0 := start.Add(uniform(rng, 0, shopSpread)).Truncate(time.Millisecond)

		// Sign-ins: the first device before the first visit, others after.
		for k, d := range devices {
			ts := t0.Add(-uniform(rng, time.Hour, 10*24*time.Hour))
			if k > 0 {
				ts = t0.Add(uniform(rng, time.Minute, 6*24*time.Hour))
			}
			out = append(out, identify(d+"/identify", "device", d, cust, ts.Truncate(time.Millisecond)))
		}

		// Exposures: free-shipping on the first page, the checkout button
		// two minutes later. Units the server would not enrol get none.
		rate, value := baseRate*engagement, 1.0
		type seen struct {
			exp, variant string
			at           time.Time
		}
		var exposed []seen
		for _, x := range []struct {
			key   string
			after time.Duration
		}{{"free-shipping", 0}, {"checkout-button", 2 * time.Minute}} {
			if !exps[x.key] {
				continue
			}
			r := snap.Assign(x.key, cust, attrs)
			if !r.Enrolled {
				continue
			}
			at := t0.Add(x.after)
			out = append(out, exposure(cust+"/"+x.key, x.key, r.Variant, "customer", cust, at, attrs))
			switch {
			case x.key == "checkout-button" && r.Variant == "green":
				rate *= greenLift
			case x.key == "free-shipping" && r.Variant == "free":
				rate *= freeShipLift
				value *= freeShipValue
			}
			if r.Reason != assign.ReasonOverride {
				exposed = append(exposed, seen{x.key, r.Variant, at})
			}
		}

		// Purchases before the first visit (the CUPED period) and in the
		// window after it, each on one of the customer's devices.
		order := func(mult float64) float64 {
			v := meanOrder * mult * math.Exp(sigmaOrder*rng.NormFloat64()-sigmaOrder*sigmaOrder/2)
			return math.Round(v*100) / 100
		}
		for n := range poisson(rng, preRate*engagement) {
			d := devices[rng.IntN(len(devices))]
			ts := t0.Add(-uniform(rng, time.Hour, 13*24*time.Hour)).Truncate(time.Millisecond)
			out = append(out, track(fmt.Sprintf("%s/pre/%d", cust, n), "purchase", ptr(order(1)), "device", d, ts))
		}
		bought, spent := false, 0.0
		for n := range poisson(rng, rate) {
			d := devices[rng.IntN(len(devices))]
			ts := t0.Add(uniform(rng, 6*time.Minute, (shopWindow-1)*time.Hour)).Truncate(time.Millisecond)
			v := order(value)
			out = append(out, track(fmt.Sprintf("%s/purchase/%d", cust, n), "purchase", ptr(v), "device", d, ts))
			bought, spent = true, spent+v
		}
		for _, s := range exposed {
			byVariant := expect[s.exp]
			if byVariant == nil {
				byVariant = map[string]*ArmTally{}
				expect[s.exp] = byVariant
			}
			t := byVariant[s.variant]
			if t == nil {
				t = &ArmTally{}
				byVariant[s.variant] = t
			}
			t.Units++
			if bought {
				t.Conversions++
			}
			t.Revenue += spent
		}
	}
	return out, expect
}

// pick draws an index with the given weights (summing to 1).
func pick(rng *rand.Rand, weights []float64) int {
	u := rng.Float64()
	for i, w := range weights {
		if u < w {
			return i
		}
		u -= w
	}
	return len(weights) - 1
}

// poisson draws a Poisson count with mean lambda (Knuth's method: the
// demo's means are small).
func poisson(rng *rand.Rand, lambda float64) int {
	limit, p, k := math.Exp(-lambda), 1.0, 0
	for {
		p *= rng.Float64()
		if p <= limit {
			return k
		}
		k++
	}
}
