package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// chromium finds Debian's chromium. Without it the browser tests skip on a
// developer's machine and fail in CI (CI is set there; .ci/run installs
// chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("FLYWHEEL_CHROMIUM"), "/usr/bin/chromium"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI must run the browser tests: install Debian's chromium (.ci/run does)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); the browser tests run in CI")
	return ""
}

// artifacts is where screenshots go: $FLYWHEEL_ARTIFACTS, or a new
// temporary folder that outlives the test, logged either way.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("FLYWHEEL_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "flywheel-ui-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots are saved in %s", dir)
	return dir
}

// tab is one browser tab on a running flywheel, with what the page
// reported that it should not have.
type tab struct {
	t       *testing.T
	ctx     context.Context
	base    string
	shots   string
	console chan string
}

// newTab starts headless chromium on a 1200 px wide window.
func newTab(t *testing.T, base string) *tab {
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1200, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tb := &tab{t: t, base: base, shots: artifacts(t), console: make(chan string, 100)}
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "uncaught exception: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				msg = "console.error"
			}
		case *cdplog.EventEntryAdded:
			// Failed API calls (a 400 the test provokes) are the network's;
			// a policy violation or a script error is not.
			if e.Entry.Source != cdplog.EntrySourceNetwork && e.Entry.Level == cdplog.EntryLevelError {
				msg = string(e.Entry.Source) + ": " + e.Entry.Text
			}
		}
		if msg != "" {
			select {
			case tb.console <- msg:
			default:
			}
		}
	}))
	// One deadline bounds the whole session: a wait that never ends fails
	// the test instead of hanging it.
	ctx, cancelTime := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	tb.ctx = ctx
	tb.do(chromedp.EmulateViewport(1200, 900))
	return tb
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// eval runs a JavaScript expression and decodes its value.
func eval[T any](b *tab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript predicate is true (what names it in
// the failure), within the session's deadline.
func (b *tab) waitFor(what, predicate string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool]("!!("+predicate+")", chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("waiting for %s (%s): %v\npage text: %.1500s", what, predicate, err, eval[string](b, "document.body.innerText"))
	}
}

// shot saves a full-page screenshot as NAME.png.
func (b *tab) shot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
	return p
}

// open goes to a route of the UI (a hash such as "#/metrics").
func (b *tab) open(hash string) {
	b.t.Helper()
	b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", hash)))
}

// js quotes s for JavaScript.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// control is the JavaScript expression of the form control labelled label.
func control(label string) string {
	return fmt.Sprintf(`(() => { const l = [...document.querySelectorAll('label')].find((l) => l.textContent.trim() === %s);
		return l ? document.getElementById(l.htmlFor) : null; })()`, js(label))
}

// fill types text into the control labelled label, replacing its value.
func (b *tab) fill(label, text string) {
	b.t.Helper()
	b.waitFor("the field "+label, control(label)+" !== null")
	id := eval[string](b, control(label)+".id")
	b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf("document.getElementById(%s).value = ''", js(id))))
	if text != "" {
		b.do(chromedp.SendKeys(chromedp.ID(id), text))
	} else {
		b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf("document.getElementById(%s).dispatchEvent(new Event('input'))", js(id))))
	}
	if got := eval[string](b, fmt.Sprintf("document.getElementById(%s).value", js(id))); got != text {
		b.t.Fatalf("the field %s holds %q after typing %q", label, got, text)
	}
}

// press clicks the button or link whose text is text.
func (b *tab) press(text string) {
	b.t.Helper()
	sel := fmt.Sprintf(`[...document.querySelectorAll('button, a')].find((e) => e.textContent.trim() === %s && !e.disabled)`, js(text))
	b.waitFor("the button "+text, sel+" !== undefined")
	b.do(chromedp.Evaluate[chromedp.Void](sel + ".click()"))
}

// noErrors fails the test for every script error, console error or policy
// violation the page reported.
func (b *tab) noErrors() {
	b.t.Helper()
	for {
		select {
		case msg := <-b.console:
			b.t.Errorf("the page reported: %s", msg)
		default:
			return
		}
	}
}

// seeded is what seed put in the server.
type seeded struct {
	srmName string
}

// seed defines, through the API, the metrics and experiments the tests
// read: checkout-button (running, 6,000 units over ten days, green
// converting at 13% against control's 10%), srm-demo (running, a 1,200/800
// split against configured 50/50 weights, and a name that is markup) and
// a draft; then it folds the events into the results.
func seed(t *testing.T, srv *apptest.Server) seeded {
	t.Helper()
	for _, m := range []map[string]any{
		{"key": "purchase", "event": "purchase", "type": "conversion", "window_hours": 168},
		{"key": "revenue", "name": "Revenue per customer", "event": "purchase", "type": "mean", "window_hours": 168},
		{"key": "refund", "event": "refund", "type": "conversion", "direction": "decrease"},
	} {
		srv.Admin(t, 201, "POST", "/v1/metrics", m)
	}
	s := seeded{srmName: `<img src=x onerror="window.pwned=1">Broken split`}
	for _, e := range []map[string]any{
		{"key": "checkout-button", "name": "Green checkout button", "hypothesis": "A green button stands out, so more customers buy.",
			"unit_type": "customer", "variants": []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "green", "weight": 0.5}},
			"metrics": map[string]any{"primary": []string{"purchase"}, "guardrails": []string{"refund"}, "secondary": []string{"revenue"}}},
		{"key": "srm-demo", "name": s.srmName, "hypothesis": "Exposure logging loses treatment units.", "unit_type": "customer",
			"variants": []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "treatment", "weight": 0.5}},
			"metrics":  map[string]any{"primary": []string{"purchase"}}},
		{"key": "pricing-page", "name": "New pricing page", "unit_type": "device",
			"variants": []any{map[string]any{"key": "old", "weight": 0.5}, map[string]any{"key": "new", "weight": 0.5}}},
	} {
		srv.Admin(t, 201, "POST", "/v1/experiments", e)
	}
	srv.Admin(t, 200, "POST", "/v1/experiments/checkout-button/start", nil)
	srv.Admin(t, 200, "POST", "/v1/experiments/srm-demo/start", nil)
	// A holdout of the checkout program; its arms are seeded below.
	srv.Admin(t, 201, "POST", "/v1/holdouts", map[string]any{"key": "q1-program", "name": "Q1 checkout program", "unit_type": "customer",
		"fraction": 0.1, "experiments": []string{"checkout-button"}, "metrics": map[string]any{"primary": []string{"purchase"}}})
	srv.Admin(t, 200, "POST", "/v1/holdouts/q1-program/start", nil)

	now := time.Now().UTC()
	var events []map[string]any
	event := func(m map[string]any) { m["id"] = uuid.NewString(); events = append(events, m) }
	// A fixed seed: the same events every run.
	rnd := rand.New(rand.NewPCG(14, 2026))
	for i := range 6000 {
		variant, rate := "control", 0.10
		if i%2 == 1 {
			variant, rate = "green", 0.13
		}
		converts := rnd.Float64() < rate
		at := now.Add(-time.Duration(rnd.IntN(10*24*60))*time.Minute - time.Hour) // over ten days
		id := fmt.Sprintf("c-%d", i)
		event(map[string]any{"type": "exposure", "experiment": "checkout-button", "variant": variant, "unit_type": "customer",
			"unit_id": id, "timestamp": at.Format(time.RFC3339), "attributes": map[string]any{"device": []string{"mobile", "desktop"}[i%3%2]}})
		if rnd.Float64() < 0.03 {
			refund := at.Add(48 * time.Hour)
			if refund.After(now) {
				refund = now
			}
			event(map[string]any{"type": "track", "event": "refund", "unit_type": "customer", "unit_id": id,
				"timestamp": refund.Format(time.RFC3339)})
		}
		if converts {
			event(map[string]any{"type": "track", "event": "purchase", "value": 20 + rnd.IntN(60), "unit_type": "customer", "unit_id": id,
				"timestamp": at.Add(30 * time.Minute).Format(time.RFC3339)})
		}
	}
	for i := range 2000 {
		variant := "control"
		if i%5 >= 3 { // 40%
			variant = "treatment"
		}
		event(map[string]any{"type": "exposure", "experiment": "srm-demo", "variant": variant, "unit_type": "customer",
			"unit_id": fmt.Sprintf("s-%d", i), "timestamp": now.Add(-time.Hour).Format(time.RFC3339)})
	}
	for i := range 3000 {
		arm, rate := "exposed", 0.12
		if i%10 == 0 {
			arm, rate = "holdout", 0.08
		}
		id := fmt.Sprintf("h-%d", i)
		at := now.Add(-time.Duration(rnd.IntN(5*24*60))*time.Minute - time.Hour)
		event(map[string]any{"type": "exposure", "experiment": "holdout:q1-program", "variant": arm, "unit_type": "customer",
			"unit_id": id, "timestamp": at.Format(time.RFC3339)})
		if rnd.Float64() < rate {
			event(map[string]any{"type": "track", "event": "purchase", "value": 30, "unit_type": "customer", "unit_id": id,
				"timestamp": at.Add(time.Hour).Format(time.RFC3339)})
		}
	}
	var answer struct {
		Accepted int `json:"accepted"`
	}
	for len(events) > 0 { // at most 10,000 events a request
		batch := events[:min(len(events), 5000)]
		events = events[len(batch):]
		if err := json.Unmarshal(srv.Admin(t, 200, "POST", "/v1/events", map[string]any{"events": batch}), &answer); err != nil || answer.Accepted != len(batch) {
			t.Fatalf("events: accepted %d of %d (%v)", answer.Accepted, len(batch), err)
		}
	}
	if err := srv.App.Aggregate(context.Background()); err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	return s
}

// results fetches a results document with the admin key.
func results(t *testing.T, srv *apptest.Server, key string) map[string]any {
	t.Helper()
	var r map[string]any
	if err := json.Unmarshal(srv.Admin(t, 200, "GET", "/v1/experiments/"+key+"/results", nil), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func decode(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
}
