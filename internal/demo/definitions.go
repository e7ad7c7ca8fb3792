package demo

// The demo's metrics and experiments, as the bodies of POST /v1/metrics
// and POST /v1/experiments.

// metricDefs are every metric the scenarios use, by key.
var metricDefs = map[string]map[string]any{
	// Hillstrom: the outcomes were measured over the two weeks after the
	// send. history enters as one purchase event before the exposure
	// (hillstromEvents), so spend's CUPED period holds it.
	"visit": {
		"key": "visit", "name": "Site visit", "event": "visit", "type": "conversion", "window_hours": hillstromWindow,
		"description": "The customer visited the website in the two weeks after the e-mail (Hillstrom's visit).",
	},
	"conversion": {
		"key": "conversion", "name": "Conversion", "event": "purchase", "type": "conversion", "window_hours": hillstromWindow,
		"description": "The customer bought in the two weeks after the e-mail (Hillstrom's conversion).",
	},
	"spend": {
		"key": "spend", "name": "Spend per customer", "event": "purchase", "type": "mean", "window_hours": hillstromWindow,
		"cuped_hours": hillstromWindow,
		"description": "Dollars spent in the two weeks after the e-mail (Hillstrom's spend); CUPED's covariate is the year's spend before the send (history).",
	},
	// The shop. purchase is the README's own example metric.
	"purchase": {
		"key": "purchase", "name": "Purchase", "event": "purchase", "type": "conversion", "window_hours": shopWindow,
		"description": "The customer bought at least once in the week after first seeing the experiment.",
	},
	"revenue": {
		"key": "revenue", "name": "Revenue per customer", "event": "purchase", "type": "mean", "window_hours": shopWindow,
		"description": "Dollars spent in the week after first seeing the experiment, on any of the customer's devices.",
	},
	// srm-demo.
	"signup": {
		"key": "signup", "name": "Sign-up", "event": "signup", "type": "conversion", "window_hours": srmWindow,
		"description": "The visitor created an account in the week after first seeing the experiment.",
	},
}

// third is the weight of each arm of a three-arm test.
const third = 1.0 / 3

// experimentDefs are every experiment of the demo, by key.
var experimentDefs = map[string]map[string]any{
	"hillstrom-email": {
		"key":        "hillstrom-email",
		"name":       "Hillstrom e-mail campaign (MineThatData, 2008)",
		"hypothesis": "An e-mail featuring men's or women's merchandise brings customers to the website in the two weeks after it is sent. Real data: Kevin Hillstrom's MineThatData e-mail test, 64,000 customers randomised into three arms.",
		"unit_type":  "customer",
		"variants": []map[string]any{
			{"key": "control", "weight": third, "payload": map[string]any{"email": "none"}},
			{"key": "mens", "weight": third, "payload": map[string]any{"email": "Mens E-Mail"}},
			{"key": "womens", "weight": third, "payload": map[string]any{"email": "Womens E-Mail"}},
		},
		"traffic": 1.0,
		"metrics": map[string]any{"primary": []string{"visit"}, "secondary": []string{"conversion", "spend"}},
	},
	"checkout-button": {
		"key":        "checkout-button",
		"name":       "Green checkout button",
		"hypothesis": "A green button raises purchases",
		"unit_type":  "customer",
		"variants": []map[string]any{
			{"key": "control", "weight": 0.5},
			{"key": "green", "weight": 0.5, "payload": map[string]any{"color": "#0a0"}},
		},
		"traffic": 1.0,
		"metrics": map[string]any{"primary": []string{"purchase"}, "secondary": []string{"revenue"}},
	},
	"free-shipping": {
		"key":        "free-shipping",
		"name":       "Free shipping on every order",
		"hypothesis": "Free shipping raises purchases without lowering revenue per customer",
		"unit_type":  "customer",
		"variants": []map[string]any{
			{"key": "control", "weight": 0.5},
			{"key": "free", "weight": 0.5, "payload": map[string]any{"shipping": 0}},
		},
		"traffic": 1.0,
		"metrics": map[string]any{"primary": []string{"purchase"}, "guardrails": []string{"revenue"}},
	},
	"srm-demo": {
		"key":        "srm-demo",
		"name":       "Onboarding checklist (broken exposure logging)",
		"hypothesis": "A checklist on the first page raises sign-ups. Seeded with a deliberate sample ratio mismatch: the checklist page loses 6% of its exposures, so the trust checks fail and the numbers must not be read.",
		"unit_type":  "device",
		"variants": []map[string]any{
			{"key": "control", "weight": 0.5},
			{"key": "checklist", "weight": 0.5},
		},
		"traffic": 1.0,
		"metrics": map[string]any{"primary": []string{"signup"}},
	},
}

// scenario is what the demo seeds as one piece: its metrics, its
// experiments, and the events that go with them.
type scenario struct {
	name        string
	metrics     []string
	experiments []string
}

// Scenarios are the demo's scenarios, by name, in the order they are seeded.
var scenarios = []scenario{
	{name: "hillstrom-email", metrics: []string{"visit", "conversion", "spend"}, experiments: []string{"hillstrom-email"}},
	{name: "shop", metrics: []string{"purchase", "revenue"}, experiments: []string{"checkout-button", "free-shipping"}},
	{name: "srm-demo", metrics: []string{"signup"}, experiments: []string{"srm-demo"}},
}

// ScenarioNames are the names Options.Only takes.
func ScenarioNames() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return names
}
