package web_test

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
)

// TestUI drives the web UI in headless chromium against a real server on
// real PostgreSQL, seeded through the API: sign in, the list, an
// experiment's page with its charts and summaries, the SRM banner, a form
// error at its field, creating and starting an experiment, a viewer who
// sees no write controls, and every page at 375 px. Screenshots are saved
// as artefacts (their folder is in the log).
func TestUI(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	data := seed(t, srv)
	b := newTab(t, srv.URL)

	if !t.Run("sign in", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Navigate(srv.URL + "/"))
		b.waitFor("the sign-in form", control("API key")+" !== null")
		b.fill("API key", "fw_admin_not_a_key_0123456789")
		b.press("Sign in")
		b.waitFor("the refusal at the field", control("API key")+`.getAttribute('aria-invalid') === 'true'`)
		if got := eval[string](b, "document.getElementById('signin-error').textContent"); !strings.Contains(got, "unknown or revoked") {
			t.Errorf("a wrong key says %q, want that it is unknown or revoked", got)
		}
		if eval[bool](b, "sessionStorage.getItem('flywheel.key') !== null") {
			t.Error("a refused key was saved")
		}
		b.fill("API key", apptest.SDKKey)
		b.press("Sign in")
		b.waitFor("the sdk key refused", `document.getElementById('signin-error').textContent.includes('sdk key')`)
		b.shot("sign-in-refused")
		// By keyboard: the key field has the focus, Enter signs in.
		b.fill("API key", apptest.AdminKey)
		if !eval[bool](b, "document.activeElement === "+control("API key")) {
			t.Error("the API key field does not have the focus")
		}
		b.do(chromedp.KeyEvent(kb.Enter))
		b.waitFor("the experiments list", `document.querySelector('main h1')?.textContent === 'Experiments'`)
		if got := eval[string](b, "sessionStorage.getItem('flywheel.key')"); got != apptest.AdminKey {
			t.Errorf("sessionStorage holds %q, want the key", got)
		}
		if eval[string](b, "document.cookie") != "" || eval[int](b, "localStorage.length") != 0 || strings.Contains(eval[string](b, "location.href"), "fw_") {
			t.Errorf("the key leaked: cookie %q, localStorage %d items, URL %s", eval[string](b, "document.cookie"),
				eval[int](b, "localStorage.length"), eval[string](b, "location.href"))
		}
	}) {
		return
	}

	if !t.Run("list", func(t *testing.T) {
		b.t = t
		b.open("#/")
		row := func(key string) string {
			return `[...document.querySelectorAll('tbody tr')].find((tr) => tr.querySelector('.key')?.textContent === ` + js(key) + `)`
		}
		b.waitFor("every row's results", row("srm-demo")+`?.textContent.includes('sample ratio mismatch') && `+row("checkout-button")+`?.textContent.includes('better')`)
		for _, tt := range []struct{ key, want string }{
			{"checkout-button", "Green checkout button|running|customer|6,000|purchase: green +|% better|✓ OK"},
			{"srm-demo", "running|customer|2,000|⚠ sample ratio mismatch"},
			{"pricing-page", "New pricing page|draft|device|—"},
		} {
			text := eval[string](b, row(tt.key)+".innerText")
			for _, w := range strings.Split(tt.want, "|") {
				if !strings.Contains(text, w) {
					t.Errorf("row %s = %q, want it to show %q", tt.key, text, w)
				}
			}
		}
		if href := eval[string](b, row("checkout-button")+".querySelector('a').getAttribute('href')"); href != "#/experiments/checkout-button" {
			t.Errorf("the name links to %q", href)
		}
		if eval[bool](b, `!!window.pwned || !!document.querySelector('main img')`) {
			t.Error("an experiment name became markup")
		}
		if got := eval[string](b, row("srm-demo")+".querySelector('a').textContent"); got != data.srmName {
			t.Errorf("the name shows as %q, want the text %q", got, data.srmName)
		}
		// Search by text, then filter by status.
		b.fill("Search", "pricing")
		visible := `[...document.querySelectorAll('tbody tr')].filter((tr) => !tr.hidden).map((tr) => tr.querySelector('.key').textContent).join(',')`
		b.waitFor("the search", visible+` === 'pricing-page'`)
		b.fill("Search", "")
		b.do(chromedp.SetValue(chromedp.ID(eval[string](b, control("Status")+".id")), "running"),
			chromedp.Evaluate[chromedp.Void](control("Status")+".dispatchEvent(new Event('change'))"))
		b.waitFor("the status filter", `location.hash.includes('status=running') && document.querySelectorAll('tbody tr').length === 2`)
		b.shot("list")
	}) {
		return
	}

	if !t.Run("experiment page", func(t *testing.T) {
		b.t = t
		b.open("#/experiments/checkout-button")
		b.waitFor("the charts", `document.querySelector('svg[aria-label="purchase: lift by variant"]') && document.querySelector('svg[aria-label*="over time"]')`)
		api := results(t, srv, "checkout-button")
		summaries := eval[[]string](b, `[...document.querySelectorAll('.metric .summary')].map((p) => p.textContent)`)
		metrics := api["metrics"].([]any)
		if len(summaries) != len(metrics) {
			t.Fatalf("%d summaries shown, want one per metric (%d)", len(summaries), len(metrics))
		}
		for i, m := range metrics {
			if want := m.(map[string]any)["summary"].(string); summaries[i] != want {
				t.Errorf("summary %d = %q, want the API's %q", i, summaries[i], want)
			}
		}
		if !strings.HasPrefix(summaries[0], "green raises purchase by ") || !strings.HasSuffix(summaries[0], ": significant") {
			t.Errorf("the purchase summary is %q", summaries[0])
		}
		text := eval[string](b, "document.querySelector('main').innerText")
		for _, want := range []string{"A green button stands out", "Results as of", "every acknowledged event is counted",
			"Chance to win", "Sample size:", "Segments", "exploratory", "Lift (interval)", "Maturing"} {
			if !strings.Contains(text, want) {
				t.Errorf("the page lacks %q", want)
			}
		}
		if eval[bool](b, `!!document.querySelector('.banner')`) {
			t.Error("a healthy experiment shows the trust banner")
		}
		// The forest plot draws green's interval, entirely right of zero.
		if n := eval[int](b, `document.querySelectorAll('svg[aria-label="purchase: lift by variant"] line[stroke="#0072B2"]').length`); n != 3 {
			t.Errorf("the forest plot has %d blue interval lines, want 3 (the interval and its two ends)", n)
		}
		// The segment field offers the attributes the exposures carry,
		// and its hint names them.
		b.waitFor("the segment suggestions", `document.querySelectorAll('#segment-attributes option').length > 0`)
		if opts := eval[[]string](b, `[...document.querySelectorAll('#segment-attributes option')].map((o) => o.value)`); !slices.Contains(opts, "device") {
			t.Errorf("the segment field suggests %q, want device among them", opts)
		}
		if hint := eval[string](b, `document.getElementById(document.querySelector('input[name=segment]').getAttribute('aria-describedby')).textContent`); !strings.Contains(hint, "Its exposures carry") || !strings.Contains(hint, "device") {
			t.Errorf("the segment field's hint is %q, want it to name the attributes", hint)
		}
		// Segments are exploratory and say so.
		b.fill("Break down by exposure attribute", "device")
		b.press("Show segments")
		b.waitFor("the segments", `document.querySelectorAll('.segment').length === 2`)
		if !strings.Contains(eval[string](b, "document.querySelector('.segments').innerText"), "not corrected") {
			t.Error("segment results are not marked exploratory")
		}
		// Who responds: by keyboard (Enter in the attributes field), the
		// segment table and the policy sentence the API gives.
		b.fill("Segment attributes", "device")
		b.do(chromedp.KeyEvent(kb.Enter))
		b.waitFor("who responds", `document.querySelectorAll('table.uplift-segments tbody tr').length === 2`)
		var u struct {
			Policy   struct{ Variants []struct{ Summary string } }
			Segments []struct{ Value string }
		}
		decode(t, srv.Admin(t, 200, "GET", "/v1/experiments/checkout-button/uplift?metric=purchase&by=device", nil), &u)
		shown := eval[string](b, "document.querySelector('.uplift').innerText")
		if len(u.Policy.Variants) != 1 || !strings.Contains(shown, u.Policy.Variants[0].Summary) {
			t.Errorf("who responds shows %q, want the API's policy sentence %+v", shown, u.Policy)
		}
		for _, want := range []string{"device = desktop", "device = mobile", "Effect (interval)", "pp", "Bonferroni", "Targeting policy", "Cochran"} {
			if !strings.Contains(shown, want) {
				t.Errorf("who responds lacks %q:\n%s", want, shown)
			}
		}
		if got := eval[string](b, `document.querySelector('table.uplift-segments caption')?.textContent || ''`); !strings.Contains(got, "Holm") {
			t.Errorf("the segment table's caption is %q, want it to name the correction", got)
		}
		b.shot("who-responds")
		b.open("#/experiments/checkout-button")
		b.waitFor("the charts again", `document.querySelector('svg[aria-label*="over time"]') !== null`)
		b.shot("experiment")
		if p := os.Getenv("FLYWHEEL_DOCS_SCREENSHOT"); p != "" {
			// The README's picture: the top of the page, 1100 px wide.
			b.do(chromedp.EmulateViewport(1100, 1300), chromedp.Evaluate[chromedp.Void]("window.scrollTo(0, 0)"))
			b.waitFor("the charts at 1100 px", `document.querySelector('svg[aria-label="purchase: lift by variant"]') !== null`)
			png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", p)
			b.do(chromedp.EmulateViewport(1200, 900))
		}
	}) {
		return
	}

	if !t.Run("SRM banner", func(t *testing.T) {
		b.t = t
		b.open("#/experiments/srm-demo")
		b.waitFor("the banner", `document.querySelector('.banner[role="alert"]') !== null`)
		banner := eval[string](b, `document.querySelector('.banner[role="alert"]').innerText`)
		for _, want := range []string{"Don’t trust these numbers yet", "sample ratio mismatch", "control 1200, treatment 800"} {
			if !strings.Contains(banner, want) {
				t.Errorf("the banner %q lacks %q", banner, want)
			}
		}
		if got := eval[string](b, "document.querySelector('main h1').firstChild.textContent"); got != data.srmName {
			t.Errorf("the title is %q, want the name as text %q", got, data.srmName)
		}
		b.shot("srm-banner")
	}) {
		return
	}

	if !t.Run("holdout", func(t *testing.T) {
		b.t = t
		b.open("#/holdouts")
		b.waitFor("the holdouts list", `document.querySelector('main tbody tr') !== null`)
		row := eval[string](b, "document.querySelector('main tbody tr').innerText")
		for _, want := range []string{"Q1 checkout program", "q1-program", "running", "customer", "10.0%", "checkout-button"} {
			if !strings.Contains(row, want) {
				t.Errorf("the holdout's row %q lacks %q", row, want)
			}
		}
		b.press("Q1 checkout program")
		b.waitFor("the holdout's results", `location.hash === '#/holdouts/q1-program' && document.querySelector('svg[aria-label="purchase: lift by variant"]') !== null`)
		var api map[string]any
		decode(t, srv.Admin(t, 200, "GET", "/v1/holdouts/q1-program/results", nil), &api)
		m := api["metrics"].([]any)[0].(map[string]any)
		if got, want := eval[string](b, `document.querySelector('.metric .summary').textContent`), m["summary"].(string); got != want {
			t.Errorf("the summary is %q, want the API's %q", got, want)
		}
		// The numbers table: each arm's units as the API counts them.
		cells := eval[[]string](b, `[...document.querySelectorAll('table.numbers tbody tr')].map((tr) => tr.querySelector('[data-label="Variant"]').textContent + '=' + tr.querySelector('[data-label="Units"]').textContent)`)
		var want []string
		for _, v := range m["variants"].([]any) {
			v := v.(map[string]any)
			want = append(want, fmt.Sprintf("%s=%s", strings.TrimSpace(v["variant"].(string)+map[bool]string{true: " (control)"}[v["variant"] == "holdout"]), commas(int(v["units"].(float64)))))
		}
		if strings.Join(cells, "|") != strings.Join(want, "|") {
			t.Errorf("the numbers show %v, want %v", cells, want)
		}
		text := eval[string](b, "document.querySelector('main').innerText")
		for _, w := range []string{"Held out vs. exposed to the program", "Results as of", "Chance to win", "CUPED", "Stop"} {
			if !strings.Contains(text, w) {
				t.Errorf("the holdout page lacks %q", w)
			}
		}
		b.shot("holdout")
		// Stop asks first, in the holdout's own words; Cancel leaves it running.
		b.press("Stop")
		b.waitFor("the confirmation", `document.querySelector('[role="group"][aria-label="Confirm stop"]') !== null`)
		if q := eval[string](b, `document.querySelector('[aria-label="Confirm stop"] p').textContent`); !strings.HasPrefix(q, "Stop this holdout?") {
			t.Errorf("the confirmation asks %q, want the holdout's question", q)
		}
		b.press("Cancel")
		b.waitFor("the confirmation gone", `document.querySelector('[aria-label="Confirm stop"]') === null`)
		var after map[string]any
		decode(t, srv.Admin(t, 200, "GET", "/v1/holdouts/q1-program", nil), &after)
		if after["status"] != "running" {
			t.Errorf("after Cancel the holdout is %v, want running", after["status"])
		}
	}) {
		return
	}

	if !t.Run("form error at the field", func(t *testing.T) {
		b.t = t
		b.open("#/experiments/new")
		b.waitFor("the form", control("Key")+" !== null")
		b.fill("Key", "Checkout Colour!")
		b.fill("Name", "Checkout colour")
		b.press("Create draft")
		b.waitFor("the error at the key", control("Key")+`.getAttribute('aria-invalid') === 'true'`)
		msg := eval[string](b, control("Key")+`.closest('.field').querySelector('.field-error').textContent`)
		if !strings.Contains(msg, "key") {
			t.Errorf("the error at the key says %q", msg)
		}
		if eval[string](b, control("Key")+`.getAttribute('aria-describedby')`) == "" {
			t.Error("the key's error is not tied to it (aria-describedby)")
		}
		if n := eval[int](b, `document.querySelectorAll('[aria-invalid="true"]').length`); n != 1 {
			t.Errorf("%d fields are marked invalid, want only the key", n)
		}
		b.shot("form-error")
		// Nothing was saved.
		body := string(srv.Admin(t, http.StatusOK, "GET", "/v1/experiments?status=all", nil))
		if strings.Contains(body, "Checkout colour") {
			t.Errorf("the refused experiment was saved: %s", body)
		}
	}) {
		return
	}

	if !t.Run("create and start", func(t *testing.T) {
		b.t = t
		b.fill("Key", "checkout-colour")
		b.fill("Variant 2 key", "orange")
		b.do(chromedp.SetValue(chromedp.ID(eval[string](b, control("purchase")+".id")), "primary"))
		b.press("Create draft")
		b.waitFor("the new experiment's page", `location.hash === '#/experiments/checkout-colour' && document.querySelector('main h1')?.textContent.includes('draft')`)
		b.press("Start")
		b.waitFor("it running", `document.querySelector('main h1 .badge')?.textContent === 'running'`)
		var e struct {
			Status   string
			Variants []struct{ Key string }
			Metrics  struct{ Primary []string }
		}
		decode(t, srv.Admin(t, 200, "GET", "/v1/experiments/checkout-colour", nil), &e)
		if e.Status != "running" || len(e.Variants) != 2 || e.Variants[1].Key != "orange" || len(e.Metrics.Primary) != 1 || e.Metrics.Primary[0] != "purchase" {
			t.Errorf("the API has %+v, want it running with control/orange and primary purchase", e)
		}
		history := string(srv.Admin(t, 200, "GET", "/v1/experiments/checkout-colour/history", nil))
		if !strings.Contains(history, `"action":"create"`) || !strings.Contains(history, `"action":"start"`) || !strings.Contains(history, `"actor":"alice"`) {
			t.Errorf("the history is %s, want alice's create and start", history)
		}
		// Edit (a running experiment may change its traffic), stop, archive.
		b.press("Edit")
		b.waitFor("the edit form", control("Traffic")+" !== null")
		b.fill("Traffic", "0.5")
		b.press("Save changes")
		b.waitFor("the saved traffic", `location.hash === '#/experiments/checkout-colour' && document.querySelector('main').innerText.includes('50.0% of eligible units')`)
		b.press("Stop")
		b.press("Yes, stop it")
		b.waitFor("it stopped", `document.querySelector('main h1 .badge')?.textContent === 'stopped'`)
		b.press("Archive")
		b.press("Yes, archive it")
		b.waitFor("it archived", `document.querySelector('main h1 .badge')?.textContent === 'archived'`)
		decode(t, srv.Admin(t, 200, "GET", "/v1/experiments/checkout-colour", nil), &e)
		if e.Status != "archived" {
			t.Errorf("the API says %s, want archived", e.Status)
		}
		b.press("Audit history of this experiment")
		b.waitFor("the history page", `document.querySelectorAll('table.history tbody tr').length === 5`)
		history = eval[string](b, "document.querySelector('table.history').innerText")
		for _, want := range []string{"create", "start", "update", "stop", "archive", "traffic: 1 → 0.5", "alice"} {
			if !strings.Contains(history, want) {
				t.Errorf("the history page lacks %q:\n%s", want, history)
			}
		}
		b.shot("history")
	}) {
		return
	}

	if !t.Run("metric form", func(t *testing.T) {
		b.t = t
		b.open("#/metrics/new")
		b.fill("Key", "checkout-start")
		b.press("Create metric")
		b.waitFor("the error at the event", control("Event")+`.getAttribute('aria-invalid') === 'true'`)
		if n := eval[int](b, `document.querySelectorAll('[aria-invalid="true"]').length`); n != 1 {
			t.Errorf("%d fields are marked invalid, want only the event", n)
		}
		b.fill("Event", "checkout_start")
		b.press("Create metric")
		b.waitFor("the metrics list", `location.hash === '#/metrics' && document.querySelectorAll('tbody tr').length === 4`)
		var m struct{ Event string }
		decode(t, srv.Admin(t, 200, "GET", "/v1/metrics/checkout-start", nil), &m)
		if m.Event != "checkout_start" {
			t.Errorf("the metric's event is %q", m.Event)
		}
	}) {
		return
	}

	if !t.Run("audiences", func(t *testing.T) {
		b.t = t
		b.open("#/audiences")
		b.waitFor("the empty list", `document.querySelector('main').innerText.includes('No audiences yet')`)
		b.press("New audience")
		cond := "Condition (JSON, in the targeting syntax)"
		b.fill("Key", "high-value")
		b.fill("Name", "High value")
		b.fill(cond, `{"$audience": "nope"}`)
		b.press("Create audience")
		b.waitFor("the error at the condition", control(cond)+`.getAttribute('aria-invalid') === 'true'`)
		if msg := eval[string](b, control(cond)+`.closest('.field').querySelector('.field-error').textContent`); !strings.Contains(msg, "unknown audience") {
			t.Errorf("the error at the condition says %q, want an unknown audience", msg)
		}
		if body := string(srv.Admin(t, 200, "GET", "/v1/audiences?archived=true", nil)); strings.Contains(body, "high-value") {
			t.Errorf("the refused audience was saved: %s", body)
		}
		b.fill(cond, `{"ltv": {"$gte": 500}}`)
		b.press("Create audience")
		b.waitFor("the audience's page", `location.hash === '#/audiences/high-value' && document.querySelector('main').innerText.includes('Nothing uses it')`)

		// An experiment that uses it, made through the API.
		srv.Admin(t, 201, "POST", "/v1/experiments", map[string]any{"key": "vip-offer", "unit_type": "customer",
			"targeting": map[string]any{"$audience": "high-value"},
			"variants":  []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "offer", "weight": 0.5}}})
		srv.Admin(t, 200, "POST", "/v1/experiments/vip-offer/start", nil)
		b.open("#/audiences")
		b.press("high-value")
		b.waitFor("its user", `document.querySelector('main a[href="#/experiments/vip-offer"]') !== null`)

		// Editing says which experiments the change reaches, before and after.
		b.press("Edit")
		b.waitFor("the edit form", control(cond)+" !== null")
		if note := eval[string](b, `document.querySelector('main [role="note"]')?.textContent || ''`); !strings.Contains(note, "vip-offer") {
			t.Errorf("the edit form warns %q, want it to name vip-offer", note)
		}
		b.fill(cond, `{"ltv": {"$gte": 300}}`)
		b.press("Save audience")
		b.waitFor("the saved change", `location.hash.startsWith('#/audiences/high-value?') && document.querySelector('main').innerText.includes('running experiment vip-offer')`)
		var a struct{ Condition map[string]map[string]float64 }
		decode(t, srv.Admin(t, 200, "GET", "/v1/audiences/high-value", nil), &a)
		if a.Condition["ltv"]["$gte"] != 300 {
			t.Errorf("the API has condition %v, want ltv >= 300", a.Condition)
		}

		// Archiving one in use is refused, naming the experiment.
		b.press("Archive")
		b.press("Yes, archive it")
		b.waitFor("the refusal", `document.querySelector('main [role="alert"]')?.textContent.includes('vip-offer')`)
		if body := string(srv.Admin(t, 200, "GET", "/v1/audiences/high-value", nil)); strings.Contains(body, "archived_at") {
			t.Errorf("the refused archive archived it: %s", body)
		}
		history := eval[string](b, "document.querySelector('table.history').innerText")
		for _, want := range []string{"create", "update", "affected: vip-offer", "alice"} {
			if !strings.Contains(history, want) {
				t.Errorf("the history lacks %q:\n%s", want, history)
			}
		}
		b.shot("audience")
		b.open("#/audiences")
		b.waitFor("the list", `document.querySelectorAll('tbody tr').length === 1`)
		if row := eval[string](b, `document.querySelector('tbody tr').innerText`); !strings.Contains(row, "High value") || !strings.Contains(row, `{"ltv":{"$gte":300}}`) {
			t.Errorf("the list row is %q", row)
		}
	}) {
		return
	}

	if !t.Run("375 px", func(t *testing.T) {
		b.t = t
		b.do(chromedp.EmulateViewport(375, 800))
		for _, tt := range []struct{ hash, ready string }{
			{"#/", `document.querySelectorAll('tbody tr').length >= 3`},
			{"#/experiments/checkout-button", `document.querySelector('svg[aria-label*="over time"]') !== null`},
			{"#/experiments/srm-demo", `document.querySelector('.banner') !== null`},
			{"#/experiments/new", control("Key") + " !== null"},
			{"#/experiments/checkout-button/history", `document.querySelector('table.history') !== null`},
			{"#/metrics", `document.querySelectorAll('tbody tr').length === 4`},
			{"#/metrics/new", control("Key") + " !== null"},
			{"#/power", control("Metric type") + " !== null"},
			{"#/audiences", `document.querySelectorAll('tbody tr').length === 1`},
			{"#/audiences/high-value", `document.querySelector('table.history') !== null`},
			{"#/audiences/high-value/edit", control("Key") + " !== null"},
			{"#/holdouts", `document.querySelector('main tbody tr') !== null`},
			{"#/holdouts/q1-program", `document.querySelector('table.numbers') !== null`},
		} {
			b.open(tt.hash)
			b.waitFor(tt.hash, tt.ready)
			if w := eval[int](b, "document.documentElement.scrollWidth"); w > 375 {
				t.Errorf("%s is %d px wide at 375 px: it scrolls sideways", tt.hash, w)
			}
		}
		b.open("#/experiments/checkout-button")
		b.waitFor("the page at 375 px", `document.querySelector('svg[aria-label*="over time"]') !== null`)
		b.shot("experiment-375px")
		b.fill("Segment attributes", "device")
		b.press("Show who responds")
		b.waitFor("who responds at 375 px", `document.querySelectorAll('table.uplift-segments tbody tr').length === 2`)
		if w := eval[int](b, "document.documentElement.scrollWidth"); w > 375 {
			t.Errorf("who responds is %d px wide at 375 px: it scrolls sideways", w)
		}
		b.shot("who-responds-375px")
		b.do(chromedp.EmulateViewport(1200, 900))
	}) {
		return
	}

	if !t.Run("viewer sees no write controls", func(t *testing.T) {
		b.t = t
		b.press("Sign out")
		b.waitFor("the sign-in form", control("API key")+" !== null")
		if eval[bool](b, "sessionStorage.getItem('flywheel.key') !== null") {
			t.Error("signing out left the key in sessionStorage")
		}
		b.fill("API key", apptest.ViewerKey)
		b.press("Sign in")
		b.waitFor("the list", `document.querySelectorAll('tbody tr').length >= 3`)
		enabled := `[...document.querySelectorAll('main button:not([disabled]), main a.button, main input:not([readonly]), main select, main textarea')]
			.filter((e) => !e.closest('form.filters, form.inline')).map((e) => e.textContent.trim() || e.name)`
		for _, page := range []struct{ hash, ready string }{
			{"#/", `document.querySelectorAll('tbody tr').length >= 3`},
			{"#/experiments/checkout-button", `document.querySelector('svg[aria-label*="over time"]') !== null`},
			{"#/experiments/pricing-page", `document.querySelector('main h1')?.textContent.includes('draft')`},
			{"#/metrics", `document.querySelectorAll('tbody tr').length === 4`},
			{"#/experiments/new", `document.querySelector('main h1')?.textContent === 'New experiment'`},
			{"#/experiments/checkout-button/edit", `document.querySelector('main h1') !== null`},
			{"#/metrics/new", `document.querySelector('main h1')?.textContent === 'New metric'`},
			{"#/audiences", `document.querySelectorAll('tbody tr').length === 1`},
			{"#/audiences/high-value", `document.querySelector('table.history') !== null`},
			{"#/audiences/high-value/edit", `document.querySelector('main h1') !== null`},
			{"#/audiences/new", `document.querySelector('main h1')?.textContent === 'New audience'`},
			{"#/holdouts/q1-program", `document.querySelector('table.numbers') !== null`},
		} {
			b.open(page.hash)
			b.waitFor(page.hash, page.ready)
			if got := eval[[]string](b, enabled); len(got) != 0 {
				t.Errorf("%s shows a viewer write controls: %q", page.hash, got)
			}
		}
		b.open("#/experiments/checkout-button")
		b.waitFor("the page", `document.querySelector('svg[aria-label*="over time"]') !== null`)
		b.shot("viewer")
		// The power calculator is a read: a viewer may use it.
		b.open("#/power")
		b.press("Calculate")
		b.waitFor("the answer", `document.querySelector('main').innerText.includes('Units per arm')`)
	}) {
		return
	}
	b.t = t
	b.noErrors()
}

// commas formats n as the UI does, with thousands separators.
func commas(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
