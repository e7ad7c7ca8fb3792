package api_test

// Hostile input (issue 12): every route of the OpenAPI document gets
// malformed, oversized, deeply nested, wrongly typed, NaN/Infinity,
// NUL/invalid-UTF-8, wrongly-cased and duplicate-key bodies, with and
// without a key. The routes come from the document, which
// TestOpenAPIDocumentValid holds equal to the server's routes, so a new
// route is covered here without a change.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/flywheel-oss/flywheel/ingest"
)

// hostileLimit is the body limit of a route: 5 MiB for events, 1 MiB for
// the rest (api.Deps.MaxBodyBytes' default).
func hostileLimit(path string) int {
	if path == "/v1/events" {
		return ingest.MaxBodyBytes
	}
	return 1 << 20
}

// send posts raw bytes with headers (name, value, ...) and no
// Content-Type unless one is given. "Expect: 100-continue" makes the
// client wait for the server before sending the body, as a careful client
// would: a server that answers without reading never gets it.
func (a *testAPI) send(method, path, key string, body []byte, headers ...string) response {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return a.roundTrip(a.srv.URL, method, path, key, rd, headers...)
}

// documented checks that an answer is one the document gives for the
// operation (its status listed, its body and headers as described), or,
// for a path the document does not have, the contract's error of an
// unknown route or method.
func (c *oapiCheck) documented(t *testing.T, where, method, path string, r response) {
	t.Helper()
	if r.Status >= 500 {
		t.Errorf("%s: %d: %.300s", where, r.Status, r.Body)
	}
	req, err := http.NewRequest(method, "http://flywheel.test"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		if r.Status != http.StatusUnauthorized && r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d for a route the document does not have: %.300s", where, r.Status, r.Body)
		}
		c.checkSchema(where, "Error", r.Body)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.Status, Header: r.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(r.Body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: the answer is not one the document gives:\n%v\nbody: %.500s", where, err, r.Body)
	}
}

// hostileEnv is a server with what the document's examples name: the
// metrics purchase and refund, the draft experiment checkout-button.
type hostileEnv struct {
	a *testAPI
	c *oapiCheck
}

func newHostileEnv(t *testing.T) *hostileEnv {
	a := newTestAPI(t)
	c := newOAPICheck(t, a)
	a.createMetric("purchase", "conversion")
	a.createMetric("refund", "conversion")
	for _, o := range c.operations() {
		if o.method == "POST" && o.path == "/v1/audiences" {
			x := c.exampleCall(o)
			a.must(http.StatusCreated, x.method, x.path, x.body)
		}
	}
	for _, o := range c.operations() {
		if o.method == "POST" && o.path == "/v1/experiments" {
			x := c.exampleCall(o)
			a.must(http.StatusCreated, x.method, x.path, x.body)
		}
	}
	for _, o := range c.operations() {
		if o.method == "POST" && o.path == "/v1/holdouts" {
			x := c.exampleCall(o)
			a.must(http.StatusCreated, x.method, x.path, x.body)
		}
	}
	return &hostileEnv{a: a, c: c}
}

// bodyOps are the document's operations that read a JSON body, with
// their example call.
func (h *hostileEnv) bodyOps() []call {
	var out []call
	for _, o := range h.c.operations() {
		if o.op.RequestBody != nil && o.op.RequestBody.Value.Content.Get("application/json") != nil {
			// (Unit lists are NDJSON or CSV: TestAssignListHostileLines.)
			out = append(out, h.c.exampleCall(o))
		}
	}
	if len(out) < 8 {
		h.a.t.Fatalf("the document has %d operations with a body; expected every POST, PUT and PATCH", len(out))
	}
	return out
}

// member is one "key": value of an object, as sent.
type member struct {
	key string // as written between the quotes (may hold escapes or bytes)
	raw string // the value's JSON (or not JSON, on purpose)
}

func objectOf(ms []member) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + m.key + `":` + m.raw)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// membersOf returns the members of an example object in key order.
func membersOf(t *testing.T, v any) []member {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("example %v is not an object", v)
	}
	out := make([]member, 0, len(m))
	for _, k := range sortedKeys(m) {
		raw, err := json.Marshal(m[k])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, member{key: k, raw: string(raw)})
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// class says where a mutation must be refused.
type class int

const (
	anywhere   class = iota // wherever it is
	renamed                 // renames a key: where names are a struct's fields
	twice                   // repeats a member: in any object
	wrongType               // a value of another kind: where the schema gives a type
	strictText              // text encoding/json would change: but in event attributes and properties, which are normalised
)

// mutation makes one member of a valid object hostile. It returns what to
// send instead of m and, for renamed, the new key; ok is false when it does
// not apply to m's value.
type mutation struct {
	name  string
	class class
	apply func(m member) (out []member, newKey string, ok bool)
	// cut ends the document right after the mutated member: no later
	// member, no closing bracket.
	cut bool
}

func isString(raw string) bool { return strings.HasPrefix(raw, `"`) }

// otherCase returns key with its first letter in the other case.
func otherCase(key string) string {
	r := []rune(key)
	if unicode.IsUpper(r[0]) {
		r[0] = unicode.ToLower(r[0])
	} else {
		r[0] = unicode.ToUpper(r[0])
	}
	return string(r)
}

// wrongKind is a value of another JSON kind than raw's.
func wrongKind(raw string) string {
	switch {
	case strings.HasPrefix(raw, "{"):
		return `"an object was expected"`
	case strings.HasPrefix(raw, "["):
		return `{"an array": "was expected"}`
	case isString(raw):
		return `["a string was expected"]`
	case raw == "true" || raw == "false":
		return `1`
	case raw == "null":
		return `[]`
	}
	return `"7"`
}

var deepArrays = strings.Repeat("[", 200) + strings.Repeat("]", 200)
var deepObjects = strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200)

func value(raw string) func(m member) ([]member, string, bool) {
	return func(m member) ([]member, string, bool) { return []member{{m.key, raw}}, "", true }
}

var mutations = []mutation{
	{name: "wrongly-cased name", class: renamed, apply: func(m member) ([]member, string, bool) {
		k := otherCase(m.key)
		return []member{{k, m.raw}}, k, k != m.key
	}},
	{name: "name in capitals", class: renamed, apply: func(m member) ([]member, string, bool) {
		k := strings.ToUpper(m.key)
		return []member{{k, m.raw}}, k, k != m.key
	}},
	{name: "duplicate key", class: twice, apply: func(m member) ([]member, string, bool) {
		return []member{m, m}, "", true
	}},
	{name: "duplicate key spelt with an escape", class: twice, apply: func(m member) ([]member, string, bool) {
		return []member{m, {fmt.Sprintf(`\u%04x`, m.key[0]) + m.key[1:], m.raw}}, "", m.key != ""
	}},
	{name: "wrong kind", class: wrongType, apply: func(m member) ([]member, string, bool) {
		return []member{{m.key, wrongKind(m.raw)}}, "", true
	}},
	{name: "NaN", apply: value("NaN")},
	{name: "Infinity", apply: value("Infinity")},
	{name: "-Infinity", apply: value("-Infinity")},
	{name: "beyond float64", apply: value("1e99999")},
	{name: "beyond float64 inside", apply: func(m member) ([]member, string, bool) {
		switch {
		case strings.HasPrefix(m.raw, "{") && m.raw != "{}":
			return []member{{m.key, `{"n":1e99999,` + m.raw[1:]}}, "", true
		case strings.HasPrefix(m.raw, "["):
			return []member{{m.key, `[-1e-99999]`}}, "", true
		}
		return nil, "", false
	}},
	{name: "NUL", apply: func(m member) ([]member, string, bool) {
		switch {
		case isString(m.raw):
			return []member{{m.key, `"a\u0000b"`}}, "", true
		case strings.HasPrefix(m.raw, "{"):
			return []member{{m.key, `{"k\u0000":"v"}`}}, "", true
		case strings.HasPrefix(m.raw, "["):
			return []member{{m.key, `["\u0000"]`}}, "", true
		}
		return nil, "", false
	}},
	{name: "invalid UTF-8", class: strictText, apply: func(m member) ([]member, string, bool) {
		return []member{{m.key, "\"\xff\xfe\""}}, "", isString(m.raw)
	}},
	{name: "lone surrogate", class: strictText, apply: func(m member) ([]member, string, bool) {
		return []member{{m.key, `"x\ud800y"`}}, "", isString(m.raw)
	}},
	{name: "nested 200 arrays deep", apply: value(deepArrays)},
	{name: "nested 200 objects deep", apply: value(deepObjects)},
	{name: "truncated value", cut: true, apply: func(m member) ([]member, string, bool) {
		if len(m.raw) < 2 || strings.ContainsRune("-0123456789", rune(m.raw[0])) {
			return nil, "", false // a shorter number is a number
		}
		return []member{{m.key, m.raw[:len(m.raw)-1]}}, "", true
	}},
	{name: "no value", cut: true, apply: value("")},
}

// step is a key (string) or an index (int) in a document.
type step = any

// fieldPath writes steps in the API's field notation.
func fieldPath(steps []step) string {
	var b strings.Builder
	for _, s := range steps {
		switch s := s.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", s)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s)
		}
	}
	return b.String()
}

// render writes doc with the member (or element) at steps mutated by mu;
// cut says the text ends there.
func render(t *testing.T, doc any, steps []step, mu mutation) (text string, cut, ok bool) {
	switch x := doc.(type) {
	case map[string]any:
		ms := membersOf(t, x)
		i := slices.IndexFunc(ms, func(m member) bool { return m.key == steps[0] })
		var out []member
		if len(steps) == 1 {
			if out, _, ok = mu.apply(ms[i]); !ok {
				return "", false, false
			}
			cut = mu.cut
		} else {
			var inner string
			if inner, cut, ok = render(t, x[steps[0].(string)], steps[1:], mu); !ok {
				return "", false, false
			}
			out = []member{{ms[i].key, inner}}
		}
		if cut {
			body := objectOf(slices.Concat(ms[:i], out))
			return string(body[:len(body)-1]), true, true
		}
		return string(objectOf(slices.Concat(ms[:i], out, ms[i+1:]))), false, true
	case []any:
		i := steps[0].(int)
		elems := make([]string, len(x))
		for k, e := range x {
			raw, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			elems[k] = string(raw)
		}
		if len(steps) == 1 {
			out, _, ok := mu.apply(member{raw: elems[i]})
			if !ok || len(out) != 1 || out[0].key != "" {
				return "", false, false
			}
			elems[i], cut = out[0].raw, mu.cut
		} else {
			if elems[i], cut, ok = render(t, x[i], steps[1:], mu); !ok {
				return "", false, false
			}
		}
		if cut {
			return "[" + strings.Join(elems[:i+1], ","), true, true
		}
		return "[" + strings.Join(elems, ",") + "]", false, true
	}
	t.Fatalf("render: %v at %v", doc, steps)
	return "", false, false
}

// site is a member (or element) of a document and what its schema says.
type site struct {
	steps []step
	// parent is what holds it: "struct" (an object of fixed fields),
	// "map" (any keys, typed values), "free" (any JSON) or "array".
	parent string
	typed  bool // its schema gives it a type
	// free: it is free-form JSON or inside such; root is the path of the
	// outermost free-form member around it.
	free bool
	root string
}

// resolve follows a lone allOf, as layer_range's schema is written.
func resolve(ref *openapi3.SchemaRef) *openapi3.Schema {
	if ref == nil || ref.Value == nil {
		return nil
	}
	s := ref.Value
	if len(s.AllOf) == 1 && (s.Type == nil || len(*s.Type) == 0) {
		return s.AllOf[0].Value
	}
	return s
}

// freeForm reports whether a value of schema s may be any JSON of its kind:
// no schema, or an object schema that names no property and no value type.
func freeForm(s *openapi3.Schema) bool {
	return s == nil || (s.Type == nil || len(*s.Type) == 0 || s.Type.Is("object")) &&
		len(s.Properties) == 0 && s.Items == nil && (s.AdditionalProperties.Schema == nil)
}

// sitesOf lists every member and element of doc, at every depth.
func sitesOf(doc any, s *openapi3.Schema, steps []step, free bool, root string) []site {
	var out []site
	visit := func(st step, parent string, cs *openapi3.Schema, v any) {
		path := append(slices.Clone(steps), st)
		childFree, childRoot := free, root
		if !free && freeForm(cs) {
			childFree, childRoot = true, fieldPath(path)
		}
		typed := !free && cs != nil && cs.Type != nil && len(*cs.Type) > 0
		out = append(out, site{steps: path, parent: parent, typed: typed, free: childFree, root: childRoot})
		out = append(out, sitesOf(v, cs, path, childFree, childRoot)...)
	}
	switch x := doc.(type) {
	case map[string]any:
		parent := "free"
		switch {
		case free || s == nil:
		case len(s.Properties) > 0:
			parent = "struct"
		case s.AdditionalProperties.Schema != nil:
			parent = "map"
		}
		for _, k := range sortedKeys(x) {
			var cs *openapi3.Schema
			switch parent {
			case "struct":
				cs = resolve(s.Properties[k])
			case "map":
				cs = resolve(s.AdditionalProperties.Schema)
			}
			visit(k, parent, cs, x[k])
		}
	case []any:
		var cs *openapi3.Schema
		if !free && s != nil {
			cs = resolve(s.Items)
		}
		for i, e := range x {
			visit(i, "array", cs, e)
		}
	}
	return out
}

// hostileCase is a body that must be refused, naming field (or a path
// inside it).
type hostileCase struct {
	name  string
	body  []byte
	field string
	cut   bool // the body ends inside the document
}

// hostileCases mutates every member and element of the example doc, at
// every depth, with every mutation that must be refused there. In events
// (lenient), attributes and properties are normalised rather than refused
// for their text, and refusals inside them may name them as a whole.
func hostileCases(t *testing.T, doc any, s *openapi3.Schema, lenient bool) []hostileCase {
	var out []hostileCase
	for _, st := range sitesOf(doc, s, nil, false, "") {
		for _, mu := range mutations {
			switch mu.class {
			case renamed:
				if st.parent != "struct" {
					continue
				}
			case twice:
				if st.parent == "array" {
					continue
				}
			case wrongType:
				if !st.typed {
					continue
				}
			case strictText:
				if lenient && st.free {
					continue
				}
			}
			text, _, ok := render(t, doc, st.steps, mu)
			if !ok {
				continue
			}
			field := fieldPath(st.steps)
			if mu.class == renamed {
				_, newKey, _ := mu.apply(member{key: st.steps[len(st.steps)-1].(string)})
				field = fieldPath(append(slices.Clone(st.steps[:len(st.steps)-1]), newKey))
			}
			if lenient && st.free && mu.class != renamed {
				field = st.root
			}
			out = append(out, hostileCase{name: fieldPath(st.steps) + " " + mu.name, body: []byte(text), field: field, cut: mu.cut})
		}
	}
	return out
}

// wholeBodies are bodies that are wrong as a whole, with the field their
// refusal names ("" for none).
var wholeBodies = []struct {
	name, body, field string
}{
	{"empty", "", ""},
	{"white space", " \r\n\t ", ""},
	{"null", "null", ""},
	{"an array", "[]", ""},
	{"a number", "7", ""},
	{"a string", `"{}"`, ""},
	{"true", "true", ""},
	{"NaN", "NaN", ""},
	{"an unclosed object", "{", ""},
	{"two objects", "{} {}", ""},
	{"a stray brace", "{}}", ""},
	{"a NUL byte", "{}\x00", ""},
	{"a NUL byte inside", "{\x00}", ""},
	{"invalid UTF-8", "\xff\xfe", ""},
	{"a byte-order mark", "\xef\xbb\xbf{}", ""},
	{"an unknown field", `{"zz_unknown": 1}`, "zz_unknown"},
	{"a key without a value", `{"zz"`, "zz"},
	{"arrays 100,000 deep", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), ""},
	{"objects 100,000 deep", strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000), "a"},
}

// checkRefusal: a refusal of hostile input is a 400 invalid_argument whose
// field is want or a path inside it.
func checkRefusal(t *testing.T, where string, r response, want string) {
	t.Helper()
	code, field, msg := errorMessage(r)
	if r.Status != http.StatusBadRequest || code != "invalid_argument" || msg == "" {
		t.Errorf("%s = %d %s: want 400 invalid_argument: %.300s", where, r.Status, code, r.Body)
		return
	}
	if !namesField(field, want) {
		t.Errorf("%s: field %q, want %q (or a path inside it): %.300s", where, field, want, r.Body)
	}
}

// namesField reports whether field is want or a path inside it.
func namesField(field, want string) bool {
	if want == "" {
		return field == ""
	}
	return field == want || strings.HasPrefix(field, want+".") || strings.HasPrefix(field, want+"[")
}

// bodySchema returns the JSON schema of an operation's request body.
func (h *hostileEnv) bodySchema(x call) *openapi3.Schema {
	for _, o := range h.c.operations() {
		if o.method == x.method && o.path == h.docPath(x.method, x.path) && o.op.RequestBody != nil {
			return o.op.RequestBody.Value.Content.Get("application/json").Schema.Value
		}
	}
	h.a.t.Fatalf("no request body schema for %s %s", x.method, x.path)
	return nil
}

// docPath is the document's path of a call's path.
func (h *hostileEnv) docPath(method, path string) string {
	req, _ := http.NewRequest(method, "http://flywheel.test"+path, nil)
	if route, _, err := h.c.router.FindRoute(req); err == nil {
		return route.Path
	}
	return path
}

// TestHostileBodies: every route that reads a body refuses each hostile
// body, whole or in any member at any depth, with a documented 400 (413
// when too large) naming the field at fault, and changes nothing; events
// refuse a hostile event alone, by its index, and accept the others. No
// answer is a 5xx.
func TestHostileBodies(t *testing.T) {
	h := newHostileEnv(t)
	a, c := h.a, h.c
	before := a.do("GET", "/v1/experiments/checkout-button", a.admin, nil).Body
	sent := 0
	for _, x := range h.bodyOps() {
		if x.path == "/v1/events" {
			continue // below: events are refused one by one
		}
		where := x.method + " " + x.path
		for _, w := range wholeBodies {
			r := a.send(x.method, x.path, a.admin, []byte(w.body), "Content-Type", "application/json")
			c.documented(t, where+" "+w.name, x.method, x.path, r)
			checkRefusal(t, where+" "+w.name, r, w.field)
			sent++
		}
		for _, hc := range hostileCases(t, x.body, h.bodySchema(x), false) {
			what := where + " with " + hc.name
			r := a.send(x.method, x.path, a.admin, hc.body, "Content-Type", "application/json")
			c.documented(t, what, x.method, x.path, r)
			checkRefusal(t, what, r, hc.field)
			sent++
		}
		// Too large: refused before it is decoded.
		key := sortedKeys(x.body.(map[string]any))[0]
		huge := append(append([]byte(`{"`+key+`":"`), bytes.Repeat([]byte("x"), hostileLimit(x.path))...), `"}`...)
		r := a.send(x.method, x.path, a.admin, huge, "Content-Type", "application/json")
		c.documented(t, where+" too large", x.method, x.path, r)
		if code, _, _ := errorMessage(r); r.Status != http.StatusRequestEntityTooLarge || code != "payload_too_large" {
			t.Errorf("%s too large = %d %s, want 413 payload_too_large", where, r.Status, code)
		}
		sent++
	}
	if after := a.do("GET", "/v1/experiments/checkout-button", a.admin, nil).Body; !bytes.Equal(after, before) {
		t.Errorf("hostile bodies changed the experiment:\nbefore %s\nafter  %s", before, after)
	}
	sent += hostileEvents(t, h)
	t.Logf("%d hostile requests, every one refused as documented", sent)
}

// placeholderID stands for a fresh event id in generated events.
const placeholderID = "00000000-0000-7000-8000-00000000beef"

// hostileEvents sends the document's example events with one of them made
// hostile, as JSON and as NDJSON: that event alone is rejected, naming the
// field, and the others are accepted. An event that is not JSON at all
// makes a JSON body unreadable: it is refused as a whole, naming where it
// broke.
func hostileEvents(t *testing.T, h *hostileEnv) int {
	a, c := h.a, h.c
	var example []any
	for _, x := range h.bodyOps() {
		if x.path == "/v1/events" {
			example, _ = x.body.(map[string]any)["events"].([]any)
		}
	}
	if len(example) < 3 {
		t.Fatalf("the document's example of POST /v1/events has %d events, want at least 3", len(example))
	}
	now := time.Now().UTC().Format(time.RFC3339)
	events := make([][]byte, len(example))
	for i, e := range example {
		m := maps.Clone(e.(map[string]any))
		m["id"], m["timestamp"] = placeholderID, now
		example[i] = m
		events[i] = objectOf(membersOf(t, m))
	}
	sent := 0
	post := func(what string, evs [][]byte, bad int, field string) {
		t.Helper()
		for _, ndjson := range []bool{false, true} {
			fresh := make([][]byte, len(evs))
			for i, e := range evs {
				fresh[i] = bytes.ReplaceAll(e, []byte(placeholderID), []byte(newID(t)))
			}
			var body []byte
			ct := "application/json"
			if ndjson {
				body, ct = append(bytes.Join(fresh, []byte("\n")), '\n'), "application/x-ndjson"
			} else {
				body = append(append([]byte(`{"events":[`), bytes.Join(fresh, []byte(","))...), "]}"...)
			}
			where := fmt.Sprintf("POST /v1/events (%s) with event %d %s", ct, bad, what)
			r := a.send("POST", "/v1/events", a.sdk, body, "Content-Type", ct)
			c.documented(t, where, "POST", "/v1/events", r)
			sent++
			if !ndjson && !json.Valid(evs[bad]) {
				want := fmt.Sprintf("events[%d]", bad)
				if field != "" {
					want += "." + field
				}
				checkRefusal(t, where, r, want)
				continue
			}
			var ans eventsAnswer
			if r.Status != http.StatusOK || json.Unmarshal(r.Body, &ans) != nil {
				t.Errorf("%s = %d: %.300s", where, r.Status, r.Body)
				continue
			}
			if len(ans.Rejected) != 1 || ans.Rejected[0].Index != bad || ans.Rejected[0].Error.Code != "invalid_argument" ||
				!namesField(ans.Rejected[0].Error.Field, field) || ans.Accepted != len(evs)-1 {
				t.Errorf("%s: %s\nwant event %d alone rejected, naming %q, and the %d others accepted", where, r.Body, bad, field, len(evs)-1)
			}
		}
	}
	for bad, e := range example {
		name := strings.ToUpper(e.(map[string]any)["type"].(string)[:1]) + e.(map[string]any)["type"].(string)[1:] + "Event"
		schema := c.doc.Components.Schemas[name]
		if schema == nil {
			t.Fatalf("the document has no schema %s", name)
		}
		for _, hc := range hostileCases(t, e, schema.Value, true) {
			if hc.cut {
				continue // in a JSON body, what follows would be read as its rest
			}
			evs := slices.Clone(events)
			evs[bad] = hc.body
			post(hc.name, evs, bad, hc.field)
		}
		for _, whole := range []string{"null", "[]", "7", `"x"`, "true", deepArrays} {
			evs := slices.Clone(events)
			evs[bad] = []byte(whole)
			post("replaced by "+whole[:min(len(whole), 8)], evs, bad, "")
		}
	}
	// Requests wrong as a whole.
	for _, w := range append(wholeBodies[:len(wholeBodies):len(wholeBodies)],
		struct{ name, body, field string }{"events in capitals", `{"Events":[]}`, "Events"},
		struct{ name, body, field string }{"events twice", `{"events":[],"events":[]}`, "events"}) {
		switch w.name {
		case "objects 100,000 deep":
			w.field = "" // beyond encoding/json's depth, which splits the events
		case "null":
			w.field = "events" // no events
		}
		r := a.send("POST", "/v1/events", a.sdk, []byte(w.body), "Content-Type", "application/json")
		c.documented(t, "POST /v1/events "+w.name, "POST", "/v1/events", r)
		checkRefusal(t, "POST /v1/events "+w.name, r, w.field)
		sent++
	}
	return sent
}

// TestAuthenticationFirst: a /v1 request without a valid key is a 401
// before anything else is looked at: its body (oversized, malformed,
// wrongly cased), its route (unknown) or its method (not allowed).
func TestAuthenticationFirst(t *testing.T) {
	a := newTestAPI(t)
	c := newOAPICheck(t, a)
	huge := bytes.Repeat([]byte("x"), ingest.MaxBodyBytes+1)
	bodies := []struct {
		name string
		body []byte
	}{
		{"no body", nil},
		{"malformed", []byte(`{"key":`)},
		{"wrongly cased", []byte(`{"Key":"x","events":[{"Unit_ID":"x"}]}`)},
		{"oversized", huge},
	}
	type target struct{ method, path string }
	var targets []target
	for _, o := range c.operations() {
		if !strings.HasPrefix(o.path, "/v1/") {
			continue
		}
		// The one exception, in one place: an operation the document
		// makes public (security: []), such as GET /v1/openapi.json once it
		// needs no key.
		if schemesOf(c.doc, o.op) == "" {
			t.Logf("%s %s is public: not checked here", o.method, o.path)
			continue
		}
		path := regexp.MustCompile(`\{\w+\}`).ReplaceAllString(o.path, "probe")
		targets = append(targets, target{o.method, path})
	}
	targets = append(targets,
		target{"GET", "/v1"}, target{"GET", "/v1/"}, target{"GET", "/v1/nothing"},
		target{"POST", "/v1/experiments/probe/launch"}, target{"PUT", "/v1/events"},
		target{"DELETE", "/v1/experiments"}, target{"OPTIONS", "/v1/metrics"})
	for _, tg := range targets {
		for _, key := range []string{"", "fw_admin_unknown_key_0123456789", "\x00"} {
			for _, b := range bodies {
				where := fmt.Sprintf("%s %s (key %q, %s)", tg.method, tg.path, key, b.name)
				var r response
				if key == "\x00" { // not a bearer key at all
					r = a.send(tg.method, tg.path, "", b.body, "Authorization", "Basic YWxpY2U6c2VjcmV0", "Expect", "100-continue", "Content-Type", "application/json")
				} else {
					r = a.send(tg.method, tg.path, key, b.body, "Expect", "100-continue", "Content-Type", "application/json")
				}
				code, _, _ := errorMessage(r)
				if r.Status != http.StatusUnauthorized || code != "unauthenticated" || r.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s = %d %s (WWW-Authenticate %q), want 401 unauthenticated first: %.200s", where, r.Status, code, r.Header.Get("WWW-Authenticate"), r.Body)
				}
				c.documented(t, where, tg.method, tg.path, r)
			}
		}
	}
	// With a key, the same unknown route and method are a 404 and a 405.
	if r := a.do("GET", "/v1/nothing", a.sdk, nil); r.Status != http.StatusNotFound {
		t.Errorf("GET /v1/nothing with a key = %d, want 404", r.Status)
	}
	if r := a.do("DELETE", "/v1/experiments", a.admin, nil); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /v1/experiments with a key = %d, want 405", r.Status)
	}
	// Outside /v1 nothing needs a key, and an unknown route is a 404.
	if r := a.do("GET", "/nothing", "", nil); r.Status != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", r.Status)
	}
}
