package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/flywheel-oss/flywheel/api"
	"github.com/flywheel-oss/flywheel/assign"
	"github.com/flywheel-oss/flywheel/live"
	"github.com/flywheel-oss/flywheel/store"
)

// loadOpenAPI fetches the document the server serves and loads it.
func loadOpenAPI(t testing.TB, a *testAPI) (*openapi3.T, []byte) {
	t.Helper()
	r := a.do("GET", "/v1/openapi.json", a.admin, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json = %d: %.300s", r.Status, r.Body)
	}
	doc, err := openapi3.NewLoader().LoadFromData(r.Body)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	return doc, r.Body
}

// serverRoute is a route registered with gin, found in the api package's
// source, with the scope its group authenticates ("" = no key).
type serverRoute struct {
	Method, Path, Scope string
}

func (r serverRoute) String() string { return r.Method + " " + r.Path }

var (
	rootRE  = regexp.MustCompile(`(\w+)\s*:?=\s*(?:s\.engine|gin\.New\(\)|gin\.Default\(\))\s*$`)
	groupRE = regexp.MustCompile(`(\w+)\s*:?=\s*(\w+)\.Group\(\s*"([^"]*)"(.*)$`)
	routeRE = regexp.MustCompile(`\b(\w+)\.(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|Any|Handle)\(\s*"([^"]*)"(?:\s*,\s*"([^"]*)")?`)
	paramRE = regexp.MustCompile(`[:*](\w+)`)
)

// serverRoutes reads the routes registered in the api package's non-test
// files: engine variables (s.engine, gin.New()), groups with their prefix and
// the scope of their authenticate middleware, and METHOD("/path") calls on
// them. A call on a variable it cannot resolve fails the test, so that a new
// way of registering routes cannot hide routes from the check.
func serverRoutes(t testing.TB) []serverRoute {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	type group struct{ prefix, scope string }
	var out []serverRoute
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		groups := map[string]group{}
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(line, "//") {
				continue
			}
			if m := rootRE.FindStringSubmatch(line); m != nil {
				groups[m[1]] = group{}
				continue
			}
			if m := groupRE.FindStringSubmatch(line); m != nil {
				parent, ok := groups[m[2]]
				if !ok {
					t.Fatalf("%s:%d: group on unknown router %q: teach serverRoutes about it", name, n, m[2])
				}
				g := group{prefix: parent.prefix + m[3], scope: parent.scope}
				switch {
				case m[1] == "ui":
					g.scope = "ui"
				case strings.Contains(m[4], "anyScope"):
					g.scope = "any"
				case strings.Contains(m[4], "ScopeSDK"):
					g.scope = "sdk"
				case strings.Contains(m[4], "ScopeViewer"):
					g.scope = "viewer"
				case strings.Contains(m[4], "ScopeAdmin"):
					g.scope = "admin"
				}
				groups[m[1]] = g
				continue
			}
			for _, m := range routeRE.FindAllStringSubmatch(line, -1) {
				g, ok := groups[m[1]]
				if !ok {
					t.Fatalf("%s:%d: route on unknown router %q: teach serverRoutes about it", name, n, m[1])
				}
				method, path := m[2], m[3]
				if method == "Handle" {
					method, path = m[3], m[4]
				}
				if method == "Any" {
					t.Fatalf("%s:%d: Any(%q) registers every method; list them in the document and here", name, n, path)
				}
				path = paramRE.ReplaceAllString(g.prefix+path, "{$1}")
				out = append(out, serverRoute{Method: method, Path: path, Scope: g.scope})
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if len(out) == 0 {
		t.Fatal("found no routes in the api package")
	}
	return out
}

// documentedRoutes returns every operation of doc by method and path.
func documentedRoutes(doc *openapi3.T) map[serverRoute]*openapi3.Operation {
	out := map[serverRoute]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			out[serverRoute{Method: method, Path: path}] = op
		}
	}
	return out
}

// schemesOf returns the security alternatives of op, sorted ("" when the
// operation needs no key).
func schemesOf(doc *openapi3.T, op *openapi3.Operation) string {
	reqs := doc.Security
	if op.Security != nil {
		reqs = *op.Security
	}
	var alts []string
	for _, req := range reqs {
		var names []string
		for name := range req {
			names = append(names, name)
		}
		sort.Strings(names)
		alts = append(alts, strings.Join(names, "+"))
	}
	sort.Strings(alts)
	return strings.Join(alts, "|")
}

func TestOpenAPIDocumentValid(t *testing.T) {
	a := newTestAPI(t)
	doc, served := loadOpenAPI(t, a)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	onDisk, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served, onDisk) {
		t.Errorf("GET /v1/openapi.json is not api/openapi.json")
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation(), openapi3.EnableSchemaDefaultsValidation()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}

	// Every route of the server is documented, with the right security, and
	// every documented operation is a route of the server.
	docRoutes := documentedRoutes(doc)
	wantSchemes := map[string]string{"": "", "admin": "adminKey", "sdk": "adminKey|sdkKey", "viewer": "adminKey|viewerKey",
		"any": "adminKey|sdkKey|viewerKey"}
	seen := map[serverRoute]bool{}
	for _, r := range serverRoutes(t) {
		if r.Scope == "ui" {
			// The web UI's page and files: outside the API and its document.
			if strings.HasPrefix(r.Path, "/v1") || (r.Method != "GET" && r.Method != "HEAD") {
				t.Errorf("%s is a route of the web UI; it must be a GET or HEAD outside /v1", r)
			}
			continue
		}
		key := serverRoute{Method: r.Method, Path: r.Path}
		if seen[key] {
			t.Errorf("%s is registered twice", r)
		}
		seen[key] = true
		op, ok := docRoutes[key]
		if !ok {
			t.Errorf("%s (scope %q) is served but not in the document", r, r.Scope)
			continue
		}
		if got, want := schemesOf(doc, op), wantSchemes[r.Scope]; got != want {
			t.Errorf("%s security = %q, want %q (the route needs scope %q)", r, got, want, r.Scope)
		}
		if r.Scope != "" && op.Responses.Status(http.StatusUnauthorized) == nil {
			t.Errorf("%s needs a key but documents no 401", r)
		}
		// Every route of one scope refuses the others: sdk routes a viewer
		// key, viewer routes an sdk key, admin routes both.
		if hasScope := r.Scope != "" && r.Scope != "any"; hasScope != (op.Responses.Status(http.StatusForbidden) != nil) {
			t.Errorf("%s (scope %q) documents a 403: %v; want %v", r, r.Scope, !hasScope, hasScope)
		}
		// The parse is right: the server has this route (an unknown route is
		// gin's 404 "no route", a known path with another method a 405).
		path := regexp.MustCompile(`\{\w+\}`).ReplaceAllString(r.Path, "probe")
		res := a.do(r.Method, path, "", nil)
		if _, _, msg := errorMessage(res); res.Status == http.StatusMethodNotAllowed || res.Status == http.StatusNotFound && strings.HasPrefix(msg, "no route") {
			t.Errorf("%s was found in the source but the server answers %d: %s", r, res.Status, res.Body)
		}
	}
	for key := range docRoutes {
		if !seen[key] {
			t.Errorf("%s is in the document but the server has no such route", key)
		}
	}

	// Every operation is documented well enough to be used, and every
	// request body is closed: the server rejects unknown fields.
	ids := map[string]bool{}
	for key, op := range docRoutes {
		if op.OperationID == "" || ids[op.OperationID] {
			t.Errorf("%s operationId %q is empty or not unique", key, op.OperationID)
		}
		ids[op.OperationID] = true
		if op.Summary == "" || op.Description == "" {
			t.Errorf("%s has no summary or description", key)
		}
		if op.RequestBody == nil {
			continue
		}
		mt := op.RequestBody.Value.Content.Get("application/json")
		if mt == nil && op.RequestBody.Value.Content.Get("text/csv") != nil {
			// A unit list: NDJSON lines (closed objects) or CSV text.
			for name, m := range op.RequestBody.Value.Content {
				if s := m.Schema.Value; name != "text/csv" && (s.Items == nil || s.Items.Value.AdditionalProperties.Has == nil || *s.Items.Value.AdditionalProperties.Has) {
					t.Errorf("%s: %s lines allow unknown fields, but the server rejects them (additionalProperties: false)", key, name)
				}
			}
			continue
		}
		if mt == nil || mt.Schema == nil {
			t.Errorf("%s: request body is not application/json", key)
			continue
		}
		if ap := mt.Schema.Value.AdditionalProperties; ap.Has == nil || *ap.Has {
			t.Errorf("%s: request body schema allows unknown fields, but the server rejects them (additionalProperties: false)", key)
		}
	}
}

// errorMessage returns the code, field and message of an error body, or
// empty strings when the body is not one.
func errorMessage(r response) (code, field, msg string) {
	var m struct {
		Error struct{ Code, Field, Message string }
	}
	_ = json.Unmarshal(r.Body, &m)
	return m.Error.Code, m.Error.Field, m.Error.Message
}

// closeObjects makes every object schema reachable from s that lists its
// properties and says nothing of others reject unknown properties. The
// published document leaves response objects open so that clients tolerate
// fields added later; the test closes them so that a field the server sends
// but the document does not describe is a failure. allOf parts are left
// alone (closing them would reject the other parts' properties).
func closeObjects(s *openapi3.Schema, seen map[*openapi3.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		no := false
		s.AdditionalProperties.Has = &no
	}
	for _, p := range s.Properties {
		closeObjects(p.Value, seen)
	}
	if s.Items != nil {
		closeObjects(s.Items.Value, seen)
	}
	if s.AdditionalProperties.Schema != nil {
		closeObjects(s.AdditionalProperties.Schema.Value, seen)
	}
}

// oapiCheck sends requests to real servers and checks every request and
// response against the OpenAPI document.
type oapiCheck struct {
	t      *testing.T
	errorf func(format string, args ...any) // reports a mismatch; t.Errorf
	doc    *openapi3.T
	router routers.Router
	keys   map[string]string // security scheme -> the key it accepts
	// hits counts answers per "METHOD /path status" of the document.
	hits map[string]int
}

// decodeEventStream reads the start of a config stream (what roundTrip
// read: up to the first event) as a string, the document's schema for it,
// after checking that each config event's data is an SDKConfig.
func decodeEventStream(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	events := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			events++
			var cfg struct {
				Revision    *int64 `json:"revision"`
				Experiments []any  `json:"experiments"`
			}
			if err := json.Unmarshal([]byte(data), &cfg); err != nil || cfg.Revision == nil || cfg.Experiments == nil {
				return nil, fmt.Errorf("config event data is not an SDK config (%v): %.200s", err, data)
			}
		}
	}
	if events == 0 {
		return nil, fmt.Errorf("no config event in %.200q", raw)
	}
	return string(raw), nil
}

// ndjsonTypes are the media types POST /v1/events reads as NDJSON.
var ndjsonTypes = []string{"application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-lines"}

var registerNDJSON sync.Once

// decodeNDJSON reads an NDJSON body as the array of its non-blank lines,
// which is how the document describes it.
func decodeNDJSON(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	out := []any{}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			return nil, fmt.Errorf("line %d: %w", len(out)+1, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

func newOAPICheck(t *testing.T, a *testAPI) *oapiCheck {
	registerNDJSON.Do(func() {
		for _, mt := range ndjsonTypes {
			openapi3filter.RegisterBodyDecoder(mt, decodeNDJSON)
		}
		openapi3filter.RegisterBodyDecoder("text/event-stream", decodeEventStream)
	})
	doc, _ := loadOpenAPI(t, a)
	seen := map[*openapi3.Schema]bool{}
	for _, s := range doc.Components.Schemas {
		closeObjects(s.Value, seen)
	}
	doc.Servers = nil // route by path on any host: the test servers listen on random ports
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("gorillamux.NewRouter: %v", err)
	}
	return &oapiCheck{t: t, errorf: t.Errorf, doc: doc, router: router, hits: map[string]int{},
		keys: map[string]string{"adminKey": a.admin, "sdkKey": a.sdk, "viewerKey": a.viewer}}
}

// authenticate accepts a request when it carries the key of the scheme's
// scope, as the server does.
func (c *oapiCheck) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return errors.New("no bearer key")
	}
	if want, ok := c.keys[in.SecuritySchemeName]; !ok || secret != want {
		return fmt.Errorf("not a key of scheme %s", in.SecuritySchemeName)
	}
	return nil
}

// call is one request of a scripted session.
type call struct {
	method, path, key string
	body              any      // marshalled unless a string or []byte; nil = none
	headers           []string // name, value, ...
	want              int      // the status the server must answer
	// rejected says that the document rejects the request too: the server
	// refused it, or some of its events, for a reason the document states (a
	// schema rule, a missing or wrong key). Otherwise the document must
	// accept it.
	rejected bool
}

// do sends x to a, fails the test unless the server answers x.want, and
// checks the request and the response against the document.
func (c *oapiCheck) do(a *testAPI, x call) response {
	c.t.Helper()
	var raw []byte
	switch b := x.body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			c.t.Fatal(err)
		}
	}
	var r response
	if x.body == nil {
		r = a.do(x.method, x.path, x.key, nil, x.headers...)
	} else {
		r = a.do(x.method, x.path, x.key, raw, x.headers...)
	}
	where := fmt.Sprintf("%s %s -> %d", x.method, x.path, r.Status)
	if r.Status != x.want {
		c.t.Fatalf("%s, want %d: %.1000s", where, x.want, r.Body)
	}

	// The same request again, for the validator.
	req, err := http.NewRequest(x.method, a.srv.URL+x.path, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if x.key != "" {
		req.Header.Set("Authorization", "Bearer "+x.key)
	}
	for i := 0; i+1 < len(x.headers); i += 2 {
		req.Header.Set(x.headers[i], x.headers[i+1])
	}
	ctx := context.Background()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		// Not an operation of the document: only gin's own answers to an
		// unknown route or method may get here, as the contract's error.
		if r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
			c.errorf("%s: the document has no operation for it (%v)", where, err)
		}
		c.checkSchema(where, "Error", r.Body)
		return r
	}
	key := fmt.Sprintf("%s %s %d", x.method, route.Path, r.Status)
	c.hits[key]++

	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: c.authenticate, MultiError: true},
	}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case reqErr != nil && !x.rejected:
		c.errorf("%s: the document rejects this request, which the server answered with %d:\nrequest: %.500s\n%v", where, r.Status, raw, reqErr)
	case reqErr == nil && x.rejected:
		c.errorf("%s: the document accepts this request, which the server refused:\nrequest: %.500s\nresponse: %.500s", where, raw, r.Body)
	}

	if r.Status == http.StatusNotModified {
		// openapi3filter skips 304s; check the headers and the empty body.
		resp := route.Operation.Responses.Status(r.Status)
		if resp == nil {
			c.errorf("%s: status not in the document", where)
			return r
		}
		for name, h := range resp.Value.Headers {
			if h.Value.Required && r.Header.Get(name) == "" {
				c.errorf("%s: required header %s is missing", where, name)
			}
		}
		if len(r.Body) != 0 {
			c.errorf("%s: a 304 has a body: %q", where, r.Body)
		}
		return r
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.Status, Header: r.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(r.Body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.errorf("%s: the response does not match the document:\n%v\nheaders: %v\nbody: %.1500s", where, err, r.Header, r.Body)
	}
	return r
}

// checkSchema validates body against a component schema.
func (c *oapiCheck) checkSchema(where, name string, body []byte) {
	c.t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		c.errorf("%s: body is not JSON: %v: %.300s", where, err, body)
		return
	}
	if err := c.doc.Components.Schemas[name].Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		c.errorf("%s: body does not match %s: %v\n%.500s", where, name, err, body)
	}
}

// coverage fails the test for an operation that never answered with
// success, and logs the documented statuses the session did not see.
func (c *oapiCheck) coverage() {
	c.t.Helper()
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			ok := false
			for status := range op.Responses.Map() {
				n := c.hits[method+" "+path+" "+status]
				if n > 0 && status < "400" {
					ok = true
				}
				if n == 0 {
					missing = append(missing, method+" "+path+" "+status)
				}
			}
			if !ok {
				c.errorf("%s %s never answered with success in the session", method, path)
			}
		}
	}
	sort.Strings(missing)
	c.t.Logf("documented answers the session did not see (%d):\n%s", len(missing), strings.Join(missing, "\n"))
}

// docOp is one operation of the document.
type docOp struct {
	method, path string
	op           *openapi3.Operation
}

// operations lists the document's operations in path and method order.
func (c *oapiCheck) operations() []docOp {
	var out []docOp
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			out = append(out, docOp{method: method, path: path, op: op})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].path+" "+out[i].method < out[j].path+" "+out[j].method
	})
	return out
}

// exampleCall is a request to o made of the document's own examples: its
// path parameters' examples and its JSON request body's example.
func (c *oapiCheck) exampleCall(o docOp) call {
	c.t.Helper()
	x := call{method: o.method, path: o.path}
	for _, p := range o.op.Parameters {
		if p.Value.In != openapi3.ParameterInPath {
			continue
		}
		if p.Value.Example == nil {
			c.t.Fatalf("%s %s: path parameter %s has no example", o.method, o.path, p.Value.Name)
		}
		x.path = strings.ReplaceAll(x.path, "{"+p.Value.Name+"}", fmt.Sprint(p.Value.Example))
	}
	if rb := o.op.RequestBody; rb != nil {
		mt := rb.Value.Content.Get("application/json")
		if mt == nil { // a unit list: its CSV example
			mt = rb.Value.Content.Get("text/csv")
			x.headers = []string{"Content-Type", "text/csv"}
		}
		ex := mt.Example
		if ex == nil {
			ex = mt.Schema.Value.Example
		}
		if ex == nil {
			c.t.Fatalf("%s %s: the JSON request body has no example", o.method, o.path)
		}
		x.body = ex
	}
	return x
}

// startDBProxy forwards TCP connections to the database of dbURL until cut
// is called; then every connection through it breaks and new ones are
// refused, as when the database goes away. It returns dbURL rewritten to
// go through the proxy.
func startDBProxy(t *testing.T, dbURL string) (proxied string, cut func()) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	network, addr := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial(network, addr)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	cut = func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	t.Cleanup(cut)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.RawQuery = q.Encode()
	u.Host = ln.Addr().String()
	return u.String(), cut
}

// onlyAssignment returns the only assignment of an assign response.
func onlyAssignment(t *testing.T, r response) map[string]any {
	t.Helper()
	as, _ := r.json(t)["assignments"].([]any)
	if len(as) != 1 {
		t.Fatalf("assignments = %s, want one", r.Body)
	}
	return as[0].(map[string]any)
}

// TestOpenAPIMatchesResponses drives a realistic session against real
// servers (definitions, lifecycle, paging, history, assignment, the SDK
// config, events, consent and erasure, and every kind of refusal) and checks
// each request and response against the document: the document must accept
// exactly the requests the server accepts (up to the rules a schema cannot
// state, such as weights summing to 1), and describe every response, status,
// header and field the server sends.
func TestOpenAPIMatchesResponses(t *testing.T) {
	a := newTestAPI(t, apiOptions{eraseWait: 100 * time.Millisecond})
	c := newOAPICheck(t, a)
	admin, sdk := a.admin, a.sdk
	do := func(x call) response { t.Helper(); return c.do(a, x) }
	huge := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`

	// Health, metrics, the document itself, authentication.
	if r := do(call{method: "GET", path: "/healthz", headers: []string{"X-Request-ID", "abc-123"}, want: 200}); r.Header.Get("X-Request-ID") != "abc-123" {
		t.Errorf("X-Request-ID not echoed: %q", r.Header.Get("X-Request-ID"))
	}
	do(call{method: "GET", path: "/readyz", want: 200})
	do(call{method: "GET", path: "/metrics", want: 200})
	do(call{method: "GET", path: "/v1/openapi.json", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/openapi.json", key: sdk, want: 200})
	do(call{method: "GET", path: "/v1/openapi.json", want: 200})
	for _, k := range []struct{ key, scope string }{{admin, "admin"}, {sdk, "sdk"}, {a.viewer, "viewer"}} {
		r := do(call{method: "GET", path: "/v1/key", key: k.key, want: 200})
		if got := r.json(t); got["scope"] != k.scope || got["prefix"] != k.key[:12] || strings.Contains(string(r.Body), k.key) {
			t.Errorf("GET /v1/key = %s, want scope %s, prefix %s and never the key", r.Body, k.scope, k.key[:12])
		}
	}
	do(call{method: "GET", path: "/v1/key", want: 401, rejected: true})
	do(call{method: "GET", path: "/v1/experiments", key: "fw_admin_unknown_key", want: 401, rejected: true})
	do(call{method: "GET", path: "/v1/experiments", key: sdk, want: 403, rejected: true})
	do(call{method: "GET", path: "/v1/metrics", key: sdk, want: 403, rejected: true})
	do(call{method: "GET", path: "/v1/sdk/config", want: 401, rejected: true})
	do(call{method: "POST", path: "/v1/assign", key: "nope", body: `{"unit_type":"customer","unit_id":"c"}`, want: 401, rejected: true})
	do(call{method: "POST", path: "/v1/experiments/x/start", key: sdk, want: 403, rejected: true})

	// Metrics.
	for _, m := range []map[string]any{
		{"key": "purchase", "event": "purchase", "type": "conversion", "window_hours": 168, "direction": "increase"},
		{"key": "refund", "name": "Refunds", "event": "refund", "type": "conversion", "direction": "decrease"},
		{"key": "revenue", "name": "Revenue per customer", "description": "Sum of purchase values", "event": "purchase", "type": "mean", "window_hours": 168, "cap": map[string]any{"percentile": 0.99}},
		{"key": "sessions", "event": "session", "type": "count", "cap": map[string]any{"value": 50}, "cuped_hours": 168},
		{"key": "aov", "type": "ratio", "numerator": "purchase", "denominator": "order"},
		{"key": "d7", "type": "retention", "event": "visit", "from_hours": 144, "to_hours": 192},
	} {
		r := do(call{method: "POST", path: "/v1/metrics", key: admin, body: m, want: 201})
		if loc := r.Header.Get("Location"); loc != "/v1/metrics/"+m["key"].(string) {
			t.Errorf("Location = %q", loc)
		}
	}
	for _, tt := range []struct {
		body     string
		want     int
		rejected bool
		field    string
	}{
		{`{"key":"purchase","event":"x","type":"mean"}`, 409, false, "key"},
		{`{"key":"m","event":"e","type":"sum"}`, 400, true, "type"},
		{`{"key":"m","type":"conversion"}`, 400, false, "event"},
		{`{"key":"m","type":"ratio"}`, 400, false, "numerator"}, // and denominator: details
		{`{"key":"m","type":"mean","event":"e","cap":{"percentile":1.5}}`, 400, true, "cap.percentile"},
		{`{"key":"m","type":"mean","event":"e","cap":{"percentile":0.9,"value":3}}`, 400, false, "cap"},
		{`{"key":"m","type":"conversion","event":"e","cap":{"value":10}}`, 400, false, "cap"},
		{`{"key":"m","type":"mean","event":"e","direction":"up"}`, 400, true, "direction"},
		{`{"key":"m","type":"mean","event":"e","window_hours":-1}`, 400, true, "window_hours"},
		{`{"key":"m","type":"mean","event":"e","window_hours":"a week"}`, 400, true, "window_hours"},
		{`{"key":"Bad Key","type":"mean","event":"e","colour":"red"}`, 400, true, "colour"},
		{`{"key":"m",`, 400, true, ""},
		{``, 400, true, ""},
		{huge, 413, true, ""},
	} {
		r := do(call{method: "POST", path: "/v1/metrics", key: admin, body: tt.body, want: tt.want, rejected: tt.rejected})
		if _, field, _ := errorMessage(r); field != tt.field {
			t.Errorf("POST /v1/metrics %.60s: field = %q, want %q", tt.body, field, tt.field)
		}
	}
	if r := do(call{method: "POST", path: "/v1/metrics", key: admin, body: `{"key":"m","type":"ratio"}`, want: 400}); !strings.Contains(string(r.Body), `"details"`) {
		t.Errorf("two problems without details: %s", r.Body)
	}
	do(call{method: "POST", path: "/v1/metrics", body: `{"key":"m","type":"count","event":"e"}`, want: 401, rejected: true})
	do(call{method: "POST", path: "/v1/metrics", key: sdk, body: `{"key":"m","type":"count","event":"e"}`, want: 403, rejected: true})

	metricKeys := walkPages(t, do, admin, "/v1/metrics?limit=4", "key")
	if got := strings.Join(metricKeys, ","); got != "aov,d7,purchase,refund,revenue,sessions" {
		t.Errorf("paged metrics = %s", got)
	}
	do(call{method: "GET", path: "/v1/metrics", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/metrics?limit=0", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/metrics?limit=many", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/metrics?cursor=***", key: admin, want: 400})
	do(call{method: "GET", path: "/v1/metrics/revenue", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/metrics/nope", key: admin, want: 404})
	do(call{method: "PATCH", path: "/v1/metrics/revenue", key: admin, body: `{"window_hours":24,"direction":"decrease","cap":{"value":100},"name":"Revenue"}`, want: 200})
	if r := do(call{method: "PATCH", path: "/v1/metrics/revenue", key: admin, body: `{"cap":{}}`, want: 200}); r.json(t)["cap"] != nil {
		t.Errorf(`cap after {"cap":{}} = %v, want none`, r.json(t)["cap"])
	}
	do(call{method: "PATCH", path: "/v1/metrics/revenue", key: admin, body: `{}`, want: 200})
	do(call{method: "PATCH", path: "/v1/metrics/revenue", key: admin, body: `{"type":"count"}`, want: 400, rejected: true})
	do(call{method: "PATCH", path: "/v1/metrics/revenue", key: admin, body: `{"cuped_hours":9000}`, want: 400, rejected: true})
	do(call{method: "PATCH", path: "/v1/metrics/d7", key: admin, body: `{"to_hours":100}`, want: 400})
	do(call{method: "PATCH", path: "/v1/metrics/nope", key: admin, body: `{"name":"x"}`, want: 404})
	do(call{method: "PATCH", path: "/v1/metrics/revenue", key: admin, body: huge, want: 413, rejected: true})
	do(call{method: "PATCH", path: "/v1/metrics/revenue", key: sdk, body: `{"name":"x"}`, want: 403, rejected: true})

	// Saved audiences: create, read, change, audit, archive, and refusals.
	do(call{method: "POST", path: "/v1/audiences", key: admin, want: 201, body: map[string]any{
		"key": "high-value", "name": "High value", "condition": map[string]any{"ltv": map[string]any{"$gte": 500}}}})
	do(call{method: "POST", path: "/v1/audiences", key: admin, want: 201, body: map[string]any{
		"key": "high-value-fr", "name": "High value in France", "condition": map[string]any{"$audience": "high-value", "country": "FR"}}})
	do(call{method: "POST", path: "/v1/audiences", key: admin, want: 201, body: map[string]any{"key": "spare", "name": "Spare", "condition": map[string]any{}}})
	do(call{method: "POST", path: "/v1/audiences", key: admin, want: 409, body: map[string]any{"key": "spare", "name": "Spare", "condition": map[string]any{}}})
	do(call{method: "POST", path: "/v1/audiences", key: admin, want: 400, body: map[string]any{"key": "x", "name": "X", "condition": map[string]any{"$audience": "nope"}}})
	do(call{method: "POST", path: "/v1/audiences", key: admin, want: 400, rejected: true, body: map[string]any{"key": "x", "name": "X"}})
	do(call{method: "GET", path: "/v1/audiences", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/audiences?archived=true&limit=1", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/audiences?archived=maybe", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/audiences/high-value-fr", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/audiences/nope", key: admin, want: 404})
	do(call{method: "PATCH", path: "/v1/audiences/high-value", key: admin, want: 200, body: map[string]any{"name": "High value (LTV 400+)", "condition": map[string]any{"ltv": map[string]any{"$gte": 400}}}})
	do(call{method: "PATCH", path: "/v1/audiences/high-value", key: admin, want: 400, body: map[string]any{"condition": map[string]any{"$audience": "high-value-fr"}}})
	do(call{method: "PATCH", path: "/v1/audiences/nope", key: admin, want: 404, body: map[string]any{"name": "N"}})
	do(call{method: "GET", path: "/v1/audiences/high-value/history", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/audiences/nope/history", key: admin, want: 404})
	do(call{method: "POST", path: "/v1/audiences/high-value/archive", key: admin, want: 409})
	do(call{method: "POST", path: "/v1/audiences/spare/archive", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/audiences/spare/archive", key: admin, want: 409})
	do(call{method: "PATCH", path: "/v1/audiences/spare", key: admin, want: 409, body: map[string]any{"name": "Again"}})
	do(call{method: "POST", path: "/v1/audiences/nope/archive", key: admin, want: 404})

	// Experiments: create, with every kind of refusal.
	checkout := map[string]any{
		"key": "checkout-button", "name": "Green checkout button", "hypothesis": "A green button raises purchases",
		"unit_type": "customer",
		"variants": []any{
			map[string]any{"key": "control", "weight": 0.5},
			map[string]any{"key": "green", "weight": 0.5, "payload": map[string]any{"color": "#0a0"}},
		},
		"traffic": 1.0, "layer": "",
		"targeting": map[string]any{"country": map[string]any{"$in": []any{"FR", "BE"}}, "stage": "prospect"},
		"overrides": map[string]any{"qa-customer-1": "green"},
		"metrics":   map[string]any{"primary": []any{"purchase"}, "guardrails": []any{"refund"}, "secondary": []any{}},
		"analysis":  "fixed",
	}
	if r := do(call{method: "POST", path: "/v1/experiments", key: admin, body: checkout, want: 201}); r.Header.Get("Location") != "/v1/experiments/checkout-button" {
		t.Errorf("Location = %q", r.Header.Get("Location"))
	}
	two := []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}}
	do(call{method: "POST", path: "/v1/experiments", key: admin, want: 201,
		body: map[string]any{"key": "minimal", "unit_type": "customer", "variants": two}})
	do(call{method: "POST", path: "/v1/experiments", key: admin, want: 201,
		body: map[string]any{"key": "on-devices", "unit_type": "device", "variants": two, "analysis": "sequential", "metrics": map[string]any{"secondary": []any{"sessions"}}}})
	l1 := do(call{method: "POST", path: "/v1/experiments", key: admin, want: 201,
		body: map[string]any{"key": "l1", "unit_type": "customer", "variants": two, "layer": "checkout", "layer_share": 0.3}})
	if got := fmt.Sprint(l1.json(t)["layer_range"]); got != "[0 3000]" {
		t.Errorf("l1 layer_range = %s, want [0 3000]", got)
	}
	do(call{method: "POST", path: "/v1/experiments", key: admin, want: 201,
		body: map[string]any{"key": "l2", "unit_type": "customer", "variants": two, "layer": "checkout", "layer_range": []int{3000, 5000}, "traffic": 0.25}})
	do(call{method: "POST", path: "/v1/experiments", key: admin, want: 409,
		body: map[string]any{"key": "l3", "unit_type": "customer", "variants": two, "layer": "checkout", "layer_range": []int{4000, 6000}}})
	do(call{method: "POST", path: "/v1/experiments", key: admin, want: 409,
		body: map[string]any{"key": "l3", "unit_type": "customer", "variants": two, "layer": "checkout", "layer_share": 0.6}})
	do(call{method: "POST", path: "/v1/experiments", key: admin, want: 409,
		body: map[string]any{"key": "minimal", "unit_type": "customer", "variants": two}})

	edit := func(change func(b map[string]any)) map[string]any {
		b := map[string]any{"key": "bad", "unit_type": "customer", "variants": two, "metrics": map[string]any{"primary": []any{"purchase"}}}
		change(b)
		return b
	}
	for _, tt := range []struct {
		name     string
		body     any
		rejected bool
		field    string
	}{
		{"weights sum", edit(func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.6}}
		}), false, "variants"},
		{"duplicate variant", edit(func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "a", "weight": 0.5}}
		}), false, "variants[1].key"},
		{"zero weight", edit(func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a", "weight": 1.0}, map[string]any{"key": "b", "weight": 0.0}}
		}), true, "variants[1].weight"},
		{"one variant", edit(func(b map[string]any) { b["variants"] = []any{map[string]any{"key": "a", "weight": 1.0}} }), true, "variants"},
		{"variant key", edit(func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a b", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}}
		}), true, "variants[0].key"},
		{"bad key", edit(func(b map[string]any) { b["key"] = "Bad Key" }), true, "key"},
		{"bad unit type", edit(func(b map[string]any) { b["unit_type"] = "Customer ID" }), true, "unit_type"},
		{"no unit type", edit(func(b map[string]any) { delete(b, "unit_type") }), true, "unit_type"},
		{"traffic above 1", edit(func(b map[string]any) { b["traffic"] = 1.5 }), true, "traffic"},
		{"traffic a string", edit(func(b map[string]any) { b["traffic"] = "all" }), true, "traffic"},
		{"unknown metric", edit(func(b map[string]any) { b["metrics"] = map[string]any{"primary": []any{"nope"}} }), false, "metrics.primary[0]"},
		{"metric twice", edit(func(b map[string]any) { b["metrics"] = map[string]any{"guardrails": []any{"refund", "refund"}} }), false, "metrics.guardrails[1]"},
		{"unknown operator", edit(func(b map[string]any) { b["targeting"] = map[string]any{"country": map[string]any{"$foo": 1}} }), false, "targeting.country.$foo"},
		{"targeting not an object", edit(func(b map[string]any) { b["targeting"] = []any{1} }), true, "targeting"},
		{"override to unknown variant", edit(func(b map[string]any) { b["overrides"] = map[string]any{"u1": "blue"} }), false, "overrides.u1"},
		{"bad analysis", edit(func(b map[string]any) { b["analysis"] = "bayes" }), true, "analysis"},
		{"range without layer", edit(func(b map[string]any) { b["layer_range"] = []int{0, 100} }), false, "layer_range"},
		{"range out of bounds", edit(func(b map[string]any) { b["layer"] = "l"; b["layer_range"] = []int{0, 10001} }), true, "layer_range"},
		{"range backwards", edit(func(b map[string]any) { b["layer"] = "l"; b["layer_range"] = []int{500, 100} }), false, "layer_range"},
		{"range of three", edit(func(b map[string]any) { b["layer"] = "l"; b["layer_range"] = []int{0, 1, 2} }), true, "layer_range"},
		{"bad layer", edit(func(b map[string]any) { b["layer"] = "Check Out" }), true, "layer"},
		{"layer share", edit(func(b map[string]any) { b["layer"] = "l"; b["layer_share"] = 2 }), true, "layer_share"},
		{"long salt", edit(func(b map[string]any) { b["salt"] = strings.Repeat("s", 129) }), true, "salt"},
		{"unknown field", edit(func(b map[string]any) { b["colour"] = "green" }), true, "colour"},
		{"status is not an input", edit(func(b map[string]any) { b["status"] = "running" }), true, "status"},
		{"many problems", edit(func(b map[string]any) {
			b["variants"] = []any{map[string]any{"key": "a", "weight": 0.7}, map[string]any{"key": "b", "weight": 0.7}}
			b["overrides"] = map[string]any{"u1": "c"}
		}), false, "variants"},
		{"malformed", `{"key": "x",`, true, ""},
		{"not an object", `[1,2]`, true, ""},
		{"empty", ``, true, ""},
		{"two values", `{} {}`, true, ""},
	} {
		r := do(call{method: "POST", path: "/v1/experiments", key: admin, body: tt.body, want: 400, rejected: tt.rejected})
		if code, field, _ := errorMessage(r); code != "invalid_argument" || field != tt.field {
			t.Errorf("%s: code %q field %q, want invalid_argument on %q: %s", tt.name, code, field, tt.field, r.Body)
		}
	}
	do(call{method: "POST", path: "/v1/experiments", key: admin, body: huge, want: 413, rejected: true})
	do(call{method: "POST", path: "/v1/experiments", body: checkout, want: 401, rejected: true})
	do(call{method: "POST", path: "/v1/experiments", key: sdk, body: checkout, want: 403, rejected: true})

	// Read, change and run them.
	const exp = "/v1/experiments/checkout-button"
	do(call{method: "GET", path: exp, key: admin, want: 200})
	do(call{method: "GET", path: "/v1/experiments/nope", key: admin, want: 404})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"targeting":null,"unit_type":"customer"}`, want: 200})
	do(call{method: "PATCH", path: exp, key: admin, body: map[string]any{"targeting": checkout["targeting"], "salt": "", "overrides": map[string]any{"qa-customer-1": "green"}}, want: 200})
	do(call{method: "PATCH", path: "/v1/experiments/minimal", key: admin, body: `{"layer":"checkout","layer_range":[5000,6000]}`, want: 200})
	do(call{method: "PATCH", path: "/v1/experiments/minimal", key: admin, body: `{"layer":""}`, want: 200})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"status":"running"}`, want: 400, rejected: true})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"key":"other"}`, want: 400, rejected: true})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"traffic":`, want: 400, rejected: true})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"targeting":{"$and":5}}`, want: 400})
	do(call{method: "PATCH", path: "/v1/experiments/nope", key: admin, body: `{"traffic":0.1}`, want: 404})
	do(call{method: "PATCH", path: exp, key: admin, body: huge, want: 413, rejected: true})
	do(call{method: "PATCH", path: exp, key: sdk, body: `{"traffic":0.1}`, want: 403, rejected: true})

	do(call{method: "POST", path: exp + "/start", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/experiments/l1/start", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/experiments/l2/start", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/experiments/on-devices/start", key: admin, want: 200})
	do(call{method: "POST", path: exp + "/start", key: admin, want: 409})
	do(call{method: "POST", path: exp + "/archive", key: admin, want: 409})
	do(call{method: "POST", path: "/v1/experiments/minimal/stop", key: admin, want: 409})
	do(call{method: "POST", path: "/v1/experiments/nope/start", key: admin, want: 404})

	// Unit lists (campaigns), in every format, and their refusals.
	list := "/v1/experiments/l1/assignments"
	units := "{\"unit_id\": \"c-1\", \"attributes\": {\"country\": \"FR\"}}\n{\"unit_id\": \"c-2\"}\n"
	for _, mt := range append(ndjsonTypes[:len(ndjsonTypes):len(ndjsonTypes)], "application/x-ndjson; charset=utf-8") {
		do(call{method: "POST", path: list, key: admin, headers: []string{"Content-Type", mt}, body: units, want: 200})
	}
	do(call{method: "POST", path: list + "?record_exposure=true&sent_at=2999-01-01T00:00:00Z", key: admin, headers: []string{"Content-Type", "application/x-ndjson"}, body: units, want: 400})
	do(call{method: "POST", path: list + "?record_exposure=true", key: admin, headers: []string{"Content-Type", "text/csv", "Accept", "text/csv"}, body: "unit_id,country\nc-1,FR\nc-2,\n", want: 200})
	do(call{method: "POST", path: list, key: admin, headers: []string{"Content-Type", "text/csv"}, body: "unit_id,orders:number\nc-1,many\n", want: 400})
	do(call{method: "POST", path: list, key: admin, headers: []string{"Content-Type", "application/x-ndjson"}, body: "{\"unit_id\": \"\"}\n{\"unit\": 1}\n", want: 400, rejected: true})
	do(call{method: "POST", path: list + "?record_exposure=maybe", key: admin, headers: []string{"Content-Type", "application/x-ndjson"}, body: units, want: 400, rejected: true})
	do(call{method: "POST", path: "/v1/experiments/minimal/assignments?record_exposure=true", key: admin, headers: []string{"Content-Type", "application/x-ndjson"}, body: units, want: 409})
	do(call{method: "POST", path: "/v1/experiments/nope/assignments", key: admin, headers: []string{"Content-Type", "application/x-ndjson"}, body: units, want: 404})
	do(call{method: "POST", path: list, key: sdk, headers: []string{"Content-Type", "application/x-ndjson"}, body: units, want: 403, rejected: true})
	do(call{method: "POST", path: list, headers: []string{"Content-Type", "application/x-ndjson"}, body: units, want: 401, rejected: true})
	do(call{method: "POST", path: "/v1/experiments/nope/stop", key: admin, want: 404})
	do(call{method: "POST", path: "/v1/experiments/nope/archive", key: admin, want: 404})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"traffic":0.5,"name":"Green","hypothesis":"Green sells","metrics":{"primary":["purchase","revenue"],"guardrails":["refund"]}}`, want: 200})
	for _, body := range []string{
		`{"variants":[{"key":"control","weight":0.4},{"key":"green","weight":0.6}]}`,
		`{"unit_type":"device"}`, `{"layer":"checkout"}`, `{"salt":"other"}`,
		`{"overrides":{}}`, `{"analysis":"sequential"}`, `{"targeting":null}`,
	} {
		if r := do(call{method: "PATCH", path: exp, key: admin, body: body, want: 409}); !strings.Contains(string(r.Body), `"field"`) {
			t.Errorf("PATCH running %s: 409 without the field: %s", body, r.Body)
		}
	}
	do(call{method: "PATCH", path: exp, key: admin, body: `{"traffic":2}`, want: 400, rejected: true})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"metrics":{"primary":["nope"]}}`, want: 400})

	// Assignment: every reason the server gives, and its refusals.
	assignBody := func(id string, attrs map[string]any, exps ...string) map[string]any {
		b := map[string]any{"unit_type": "customer", "unit_id": id}
		if attrs != nil {
			b["attributes"] = attrs
		}
		if exps != nil {
			b["experiments"] = exps
		}
		return b
	}
	fr := map[string]any{"country": "FR", "stage": "prospect"}
	reasons := map[string]int{}
	for i := range 40 {
		for _, key := range []string{"checkout-button", "l1", "l2"} {
			r := do(call{method: "POST", path: "/v1/assign", key: sdk, body: assignBody(fmt.Sprintf("c-%d", i), fr, key), want: 200})
			got := onlyAssignment(t, r)
			reasons[got["reason"].(string)]++
			if enrolled := got["enrolled"].(bool); enrolled != (got["variant"] != nil) {
				t.Errorf("enrolled %v with variant %v", enrolled, got["variant"])
			}
		}
	}
	for _, want := range []string{"bucket", "traffic", "layer"} {
		if reasons[want] == 0 {
			t.Errorf("no assignment with reason %s in %v", want, reasons)
		}
	}
	for _, tt := range []struct {
		body   map[string]any
		reason string
	}{
		{assignBody("c-1", map[string]any{"country": "US"}, "checkout-button"), "targeting"},
		{assignBody("qa-customer-1", nil, "checkout-button"), "override"},
		{assignBody("c-1", fr, "minimal"), "not_running"},
	} {
		if got := onlyAssignment(t, do(call{method: "POST", path: "/v1/assign", key: sdk, body: tt.body, want: 200})); got["reason"] != tt.reason {
			t.Errorf("assign %v: reason %v, want %s", tt.body, got["reason"], tt.reason)
		}
	}
	do(call{method: "POST", path: "/v1/assign", key: admin, body: assignBody("c-1", fr), want: 200})
	do(call{method: "POST", path: "/v1/assign", key: sdk, body: map[string]any{"unit_type": "customer", "unit_id": "c-2", "attributes": fr, "log_exposure": true}, want: 200})
	do(call{method: "POST", path: "/v1/assign", key: sdk, body: assignBody("c-1", fr, []string{}...), want: 200})
	do(call{method: "POST", path: "/v1/assign", key: sdk, body: `{"unit_type":"customer","unit_id":"c-1","attributes":null,"experiments":null,"log_exposure":false}`, want: 200})
	for _, tt := range []struct {
		body     string
		want     int
		rejected bool
		field    string
	}{
		{`{"unit_type":"customer","unit_id":"c","experiments":["nope"]}`, 200, false, ""},
		{`{"unit_type":"customer","unit_id":"c","experiments":["checkout-button","on-devices"]}`, 400, false, "experiments[1]"},
		{`{"unit_type":"customer"}`, 400, true, "unit_id"},
		{`{"unit_type":"customer","unit_id":""}`, 400, true, "unit_id"},
		{`{"unit_type":"customer","unit_id":"` + strings.Repeat("u", 257) + `"}`, 400, true, "unit_id"},
		{`{"unit_type":"Customer","unit_id":"c"}`, 400, true, "unit_type"},
		{`{"unit_type":"customer","unit_id":"c","attributes":[1]}`, 400, true, "attributes"},
		{`{"unit_type":"customer","unit_id":"c","user":"x"}`, 400, true, "user"},
		{`{"unit_type":"customer","unit_id":"c","log_exposure":true,"attributes":{"blob":"` + strings.Repeat("b", 17<<10) + `"}}`, 400, false, "attributes"},
		{`{"unit_type":"customer","unit_id":"c","experiments":"checkout-button"}`, 400, true, "experiments"},
		{huge, 413, true, ""},
	} {
		r := do(call{method: "POST", path: "/v1/assign", key: sdk, body: tt.body, want: tt.want, rejected: tt.rejected})
		if _, field, _ := errorMessage(r); field != tt.field {
			t.Errorf("assign %.80s: field %q, want %q", tt.body, field, tt.field)
		}
	}

	// Holdouts: create, refusals, start, the reason holdout, the SDK
	// config, changes, audit, results, stop and archive.
	holdout := map[string]any{"key": "program", "name": "Program", "description": "Q1", "unit_type": "customer", "fraction": 0.1,
		"experiments": []string{"l2"}, "layers": []string{"checkout"}, "metrics": map[string]any{"primary": []string{"purchase"}, "secondary": []string{"revenue"}}}
	if r := do(call{method: "POST", path: "/v1/holdouts", key: admin, body: holdout, want: 201}); r.Header.Get("Location") != "/v1/holdouts/program" {
		t.Errorf("Location = %q", r.Header.Get("Location"))
	}
	do(call{method: "POST", path: "/v1/holdouts", key: admin, body: holdout, want: 409})
	do(call{method: "POST", path: "/v1/holdouts", key: admin, body: map[string]any{"key": "h2", "name": "H", "unit_type": "customer", "fraction": 0.5, "experiments": []string{"l2"}}, want: 400, rejected: true})
	do(call{method: "POST", path: "/v1/holdouts", key: admin, body: map[string]any{"key": "h2", "name": "H", "unit_type": "customer", "fraction": 0.05, "experiments": []string{"nope"}}, want: 400})
	do(call{method: "POST", path: "/v1/holdouts", key: admin, body: map[string]any{"key": "h2", "name": "H", "unit_type": "customer", "fraction": 0.05, "traffic": 1}, want: 400, rejected: true})
	do(call{method: "POST", path: "/v1/holdouts", key: sdk, body: holdout, want: 403, rejected: true})
	do(call{method: "GET", path: "/v1/holdouts", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/holdouts?status=all&limit=1", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/holdouts?status=maybe", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/holdouts/program", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/holdouts/nope", key: admin, want: 404})
	do(call{method: "POST", path: "/v1/holdouts/program/start", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/holdouts/program/start", key: admin, want: 409})
	do(call{method: "POST", path: "/v1/holdouts/nope/start", key: admin, want: 404})
	held := 0
	for i := range 60 {
		r := do(call{method: "POST", path: "/v1/assign", key: sdk, body: map[string]any{"unit_type": "customer", "unit_id": fmt.Sprintf("h-%d", i), "experiments": []string{"l1", "l2"}, "log_exposure": true}, want: 200})
		for _, x := range r.json(t)["assignments"].([]any) {
			if x.(map[string]any)["reason"] == "holdout" {
				held++
			}
		}
	}
	if held == 0 {
		t.Errorf("no assignment with reason holdout in 60 units at 10%%")
	}
	do(call{method: "POST", path: "/v1/assign", key: sdk, body: map[string]any{"unit_type": "device", "unit_id": "d-1", "ids": map[string]string{"customer": "h-1"}}, want: 200})
	do(call{method: "POST", path: "/v1/assign", key: sdk, body: map[string]any{"unit_type": "device", "unit_id": "d-1", "ids": map[string]string{"customer": ""}}, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/sdk/config", key: sdk, want: 200})
	do(call{method: "PATCH", path: "/v1/holdouts/program", key: admin, body: `{"fraction":0.05}`, want: 409})
	do(call{method: "PATCH", path: "/v1/holdouts/program", key: admin, body: `{"fraction":0.2}`, want: 400, rejected: true})
	do(call{method: "PATCH", path: "/v1/holdouts/program", key: admin, body: `{"name":null}`, want: 400, rejected: true})
	do(call{method: "PATCH", path: "/v1/holdouts/program", key: admin, body: `{"name":"Program (Q1)","experiments":["l2","l1"]}`, want: 200})
	do(call{method: "PATCH", path: "/v1/holdouts/nope", key: admin, body: `{"name":"x"}`, want: 404})
	do(call{method: "GET", path: "/v1/holdouts/program/history?limit=2", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/holdouts/nope/history", key: admin, want: 404})
	do(call{method: "GET", path: "/v1/holdouts/program/results", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/holdouts/program/results?alpha=2", key: admin, want: 400})
	do(call{method: "GET", path: "/v1/holdouts/nope/results", key: admin, want: 404})
	do(call{method: "GET", path: "/v1/holdouts/program/results/timeseries", key: a.viewer, want: 200})
	do(call{method: "GET", path: "/v1/holdouts/nope/results/timeseries", key: admin, want: 404})
	do(call{method: "POST", path: "/v1/holdouts/program/archive", key: admin, want: 409})
	do(call{method: "POST", path: "/v1/holdouts/program/stop", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/holdouts/program/stop", key: admin, want: 409})
	do(call{method: "POST", path: "/v1/holdouts/nope/stop", key: admin, want: 404})
	do(call{method: "POST", path: "/v1/holdouts/program/archive", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/holdouts/nope/archive", key: admin, want: 404})

	// The SDK configuration and its ETag.
	cfg := do(call{method: "GET", path: "/v1/sdk/config", key: sdk, want: 200})
	etag := cfg.Header.Get("ETag")
	do(call{method: "GET", path: "/v1/sdk/config", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/sdk/config", key: sdk, headers: []string{"If-None-Match", etag}, want: 304})
	do(call{method: "GET", path: "/v1/sdk/config", key: sdk, headers: []string{"If-None-Match", "W/" + etag}, want: 304})
	do(call{method: "GET", path: "/v1/sdk/config", key: sdk, headers: []string{"If-None-Match", `"0"`}, want: 200})

	// The same configuration as a stream (read up to its first event).
	if r := do(call{method: "GET", path: "/v1/sdk/stream", key: sdk, want: 200}); !strings.Contains(string(r.Body), "id: "+strings.Trim(etag, `"`)+"\n") {
		t.Errorf("stream starts %q, want the event of ETag %s", r.Body, etag)
	}
	do(call{method: "GET", path: "/v1/sdk/stream", key: admin, headers: []string{"Last-Event-ID", "0"}, want: 200})
	do(call{method: "GET", path: "/v1/sdk/stream", key: sdk, headers: []string{"Last-Event-ID", "abc"}, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/sdk/stream", want: 401, rejected: true})

	// Stop, archive, and what that does to changes and assignment.
	do(call{method: "POST", path: exp + "/stop", key: admin, want: 200})
	do(call{method: "POST", path: exp + "/stop", key: admin, want: 409})
	do(call{method: "POST", path: exp + "/start", key: admin, want: 409})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"traffic":1}`, want: 409})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"name":"Green checkout button (stopped)"}`, want: 200})
	if got := onlyAssignment(t, do(call{method: "POST", path: "/v1/assign", key: sdk, body: assignBody("c-1", fr, "checkout-button"), want: 200})); got["reason"] != "not_running" || got["variant"] != nil || got["payload"] != nil {
		t.Errorf("stopped: %v, want not_running with null variant and payload", got)
	}
	do(call{method: "POST", path: exp + "/archive", key: admin, want: 200})
	do(call{method: "POST", path: exp + "/archive", key: admin, want: 409})
	do(call{method: "POST", path: "/v1/experiments/minimal/archive", key: admin, want: 200})
	do(call{method: "PATCH", path: exp, key: admin, body: `{"name":"x"}`, want: 409})
	do(call{method: "GET", path: exp, key: admin, want: 200})
	if got := onlyAssignment(t, do(call{method: "POST", path: "/v1/assign", key: sdk, body: assignBody("c-1", fr, "checkout-button"), want: 200})); got["reason"] != "not_running" || got["enrolled"] != false {
		t.Errorf("archived: %v, want not_running, not enrolled", got)
	}
	if r := do(call{method: "GET", path: "/v1/sdk/config", key: sdk, headers: []string{"If-None-Match", etag}, want: 200}); r.Header.Get("ETag") == etag {
		t.Errorf("ETag did not change after changes: %s", etag)
	}

	// Listings and history, page by page.
	keys := walkPages(t, do, admin, "/v1/experiments?status=all&limit=2", "key")
	if got := strings.Join(keys, ","); got != "checkout-button,l1,l2,minimal,on-devices" {
		t.Errorf("paged experiments = %s", got)
	}
	for _, status := range []string{"", "?status=draft", "?status=running", "?status=stopped", "?status=archived", "?limit=500"} {
		do(call{method: "GET", path: "/v1/experiments" + status, key: admin, want: 200})
	}
	do(call{method: "GET", path: "/v1/experiments?status=done", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/experiments?limit=501", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/experiments?cursor=***", key: admin, want: 400})

	actions := walkPages(t, do, admin, exp+"/history?limit=3", "action")
	if want := "create,update,update,start,update,stop,update,archive"; strings.Join(actions, ",") != want {
		t.Errorf("history = %s, want %s", strings.Join(actions, ","), want)
	}
	do(call{method: "GET", path: "/v1/experiments/l1/history", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/experiments/nope/history", key: admin, want: 404})
	do(call{method: "GET", path: exp + "/history?limit=0", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: exp + "/history?cursor=YWJj", key: admin, want: 400})
	do(call{method: "GET", path: exp + "/history", key: sdk, want: 403, rejected: true})

	// A bandit: its definition, refusals, epochs and results.
	bandit := map[string]any{"key": "bandit-oapi", "unit_type": "customer", "allocation": "bandit",
		"bandit":   map[string]any{"floor": 0.1, "period": "1h", "burn_in": "0s"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}}}
	do(call{method: "POST", path: "/v1/experiments", key: admin, body: bandit, want: 201})
	do(call{method: "POST", path: "/v1/experiments", key: admin, body: `{"key":"bandit-x","unit_type":"customer","allocation":"greedy","variants":[{"key":"a","weight":0.5},{"key":"b","weight":0.5}]}`, want: 400, rejected: true})
	do(call{method: "POST", path: "/v1/experiments", key: admin, body: `{"key":"bandit-x","unit_type":"customer","allocation":"bandit","bandit":{"floor":0.6},"variants":[{"key":"a","weight":0.5},{"key":"b","weight":0.5}],"metrics":{"primary":["purchase"]}}`, want: 400})
	do(call{method: "POST", path: "/v1/experiments", key: admin, body: `{"key":"bandit-x","unit_type":"customer","allocation":"bandit","bandit":{"period":"1h","every":"2h"},"variants":[{"key":"a","weight":0.5},{"key":"b","weight":0.5}],"metrics":{"primary":["purchase"]}}`, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/experiments/bandit-oapi/epochs", key: a.viewer, want: 200})
	do(call{method: "POST", path: "/v1/experiments/bandit-oapi/start", key: admin, want: 200})
	if _, err := a.app.UpdateBandits(context.Background(), time.Now()); err != nil {
		t.Fatalf("UpdateBandits: %v", err)
	}
	if r := do(call{method: "GET", path: "/v1/experiments/bandit-oapi/epochs", key: admin, want: 200}); !strings.Contains(string(r.Body), `"epoch":0`) {
		t.Errorf("epochs after the first cycle = %s, want epoch 0", r.Body)
	}
	do(call{method: "GET", path: "/v1/experiments/nope/epochs", key: admin, want: 404})
	do(call{method: "GET", path: "/v1/experiments/bandit-oapi/results", key: admin, want: 200})
	do(call{method: "POST", path: "/v1/assign", key: sdk, body: map[string]any{"unit_type": "customer", "unit_id": "c-bandit", "experiments": []any{"bandit-oapi"}, "log_exposure": true}, want: 200})
	do(call{method: "POST", path: "/v1/assign", key: sdk, body: map[string]any{"unit_type": "customer", "unit_id": "c-bandit", "experiments": []any{"bandit-oapi"}}, want: 200})

	// Results and power questions.
	do(call{method: "GET", path: exp + "/results", key: admin, want: 200})
	do(call{method: "GET", path: exp + "/results?segment=device&alpha=0.1&adjustment=bh", key: admin, want: 200})
	do(call{method: "GET", path: exp + "/results?alpha=2", key: admin, want: 400})
	do(call{method: "GET", path: exp + "/results?segment=a%20b", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/experiments/nope/results", key: admin, want: 404})
	do(call{method: "GET", path: exp + "/results", key: sdk, want: 403, rejected: true})
	do(call{method: "GET", path: exp + "/results/timeseries", key: admin, want: 200})
	do(call{method: "GET", path: exp + "/results/timeseries?metric=purchase&alpha=0.1", key: admin, want: 200})
	do(call{method: "GET", path: exp + "/results/timeseries?alpha=x", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/experiments/nope/results/timeseries", key: admin, want: 404})
	do(call{method: "GET", path: exp + "/uplift", key: admin, want: 200})
	do(call{method: "GET", path: exp + "/uplift?metric=purchase&alpha=0.1&min_units=10", key: admin, want: 200})
	do(call{method: "GET", path: exp + "/uplift?by=a%20b", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: exp + "/uplift?by=a,b,c,d,e", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: exp + "/uplift?by=nothere", key: admin, want: 400})
	do(call{method: "GET", path: exp + "/uplift?min_units=1", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: exp + "/uplift?metric=nope", key: admin, want: 400})
	do(call{method: "GET", path: exp + "/uplift?metric=aov", key: admin, want: 400})
	do(call{method: "GET", path: "/v1/experiments/nope/uplift", key: admin, want: 404})
	do(call{method: "GET", path: exp + "/uplift", key: sdk, want: 403, rejected: true})
	if r := do(call{method: "GET", path: exp + "/attributes", key: a.viewer, want: 200}); !strings.Contains(string(r.Body), `{"name":"country","units":1}`) {
		t.Errorf("GET %s/attributes = %s, want country among them", exp, r.Body)
	}
	do(call{method: "GET", path: "/v1/experiments/nope/attributes", key: admin, want: 404})
	do(call{method: "GET", path: exp + "/attributes", key: sdk, want: 403, rejected: true})
	do(call{method: "POST", path: "/v1/power", key: admin, body: map[string]any{"type": "conversion", "baseline_rate": 0.05, "relative_mde": 0.1}, want: 200})
	do(call{method: "POST", path: "/v1/power", key: admin, body: map[string]any{"type": "mean", "baseline_mean": 10, "sd": 30, "units_per_arm": 5000}, want: 200})
	do(call{method: "POST", path: "/v1/power", key: admin, body: map[string]any{"type": "conversion", "baseline_rate": 1.5, "relative_mde": 0.1}, want: 400})
	do(call{method: "POST", path: "/v1/power", key: admin, body: map[string]any{"type": "conversion", "colour": 1}, want: 400, rejected: true})

	// Events, JSON and NDJSON, and the units they are about.
	ev := func(fields ...any) map[string]any {
		m := map[string]any{"id": newID(t)}
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1]
		}
		return m
	}
	now := time.Now().UTC().Format(time.RFC3339)
	valid := []any{
		ev("type", "exposure", "experiment", "l1", "variant", "a", "unit_type", "customer", "unit_id", "c-42", "timestamp", now, "attributes", map[string]any{"device": "mobile"}),
		ev("type", "track", "event", "purchase", "value", 59.9, "unit_type", "customer", "unit_id", "c-42", "properties", map[string]any{"sku": "x-1"}),
		ev("type", "identify", "unit_type", "device", "unit_id", "d-9", "customer_id", "c-42"),
		ev("type", "track", "event", "visit", "unit_type", "device", "unit_id", "d-9", "attributes", nil),
	}
	if r := do(call{method: "POST", path: "/v1/events", key: sdk, body: map[string]any{"events": valid}, want: 200}); !strings.Contains(string(r.Body), `"accepted":4`) {
		t.Errorf("valid batch: %s", r.Body)
	}
	if r := do(call{method: "POST", path: "/v1/events", key: admin, body: map[string]any{"events": valid}, want: 200}); !strings.Contains(string(r.Body), `"duplicates":4`) {
		t.Errorf("the same batch again: %s", r.Body)
	}
	do(call{method: "POST", path: "/v1/events", key: sdk, body: `{"events":[]}`, want: 200})
	mixed := []any{
		ev("type", "track", "event", "visit", "unit_type", "device", "unit_id", "d-9"),
		ev("type", "exposure", "experiment", "nope", "variant", "a", "unit_type", "customer", "unit_id", "c-1"),
		map[string]any{"id": "not-a-uuid", "type": "track", "event": "x", "unit_type": "customer", "unit_id": "c-1"},
		ev("type", "track", "event", "x", "unit_type", "customer", "unit_id", "c-1", "timestamp", time.Now().Add(48*time.Hour).Format(time.RFC3339)),
		ev("type", "track", "event", "x", "unit_type", "customer", "unit_id", "c-1", "variant", "a"),
		ev("type", "click", "unit_type", "customer", "unit_id", "c-1"),
		ev("type", "track", "event", "x", "unit_type", "customer", "unit_id", "c-1", "colour", "red"),
		"not an object",
	}
	r := do(call{method: "POST", path: "/v1/events", key: sdk, body: map[string]any{"events": mixed}, want: 200, rejected: true})
	var answer struct {
		Accepted int
		Rejected []struct {
			Index int
			Error struct{ Field string }
		}
	}
	if err := json.Unmarshal(r.Body, &answer); err != nil || answer.Accepted != 1 || len(answer.Rejected) != 7 {
		t.Errorf("mixed batch = %s (%v), want 1 accepted and 7 rejected", r.Body, err)
	}
	ndjson := func(lines ...any) string {
		var b strings.Builder
		for _, l := range lines {
			if s, ok := l.(string); ok {
				b.WriteString(s + "\n")
				continue
			}
			raw, _ := json.Marshal(l)
			b.Write(append(raw, '\n'))
		}
		return b.String()
	}
	for _, mt := range []string{"application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-lines; charset=utf-8"} {
		do(call{method: "POST", path: "/v1/events", key: sdk, headers: []string{"Content-Type", mt}, want: 200,
			body: ndjson(ev("type", "track", "event", "visit", "unit_type", "device", "unit_id", "d-1"), "", ev("type", "track", "event", "visit", "unit_type", "device", "unit_id", "d-2"))})
	}
	do(call{method: "POST", path: "/v1/events", key: sdk, headers: []string{"Content-Type", "application/x-ndjson"}, want: 200, rejected: true,
		body: ndjson(ev("type", "track", "event", "visit", "unit_type", "device", "unit_id", "d-1"), `{"id": "broken", "type":`)})
	many := make([]any, 10001)
	for i := range many {
		many[i] = map[string]any{}
	}
	for _, tt := range []struct {
		body  any
		want  int
		field string
	}{
		{`{"events": [`, 400, "events[0]"},
		{`{}`, 400, "events"},
		{`{"events": null}`, 400, "events"},
		{`{"events": 5}`, 400, "events"},
		{`{"events": [], "batch": 1}`, 400, "batch"},
		{``, 400, ""},
		{map[string]any{"events": many}, 413, ""},
		{`{"events": ["` + strings.Repeat("x", 6<<20) + `"]}`, 413, ""},
	} {
		r := do(call{method: "POST", path: "/v1/events", key: sdk, body: tt.body, want: tt.want, rejected: true})
		if _, field, _ := errorMessage(r); field != tt.field {
			t.Errorf("POST /v1/events %.40v: field %q, want %q", tt.body, field, tt.field)
		}
	}
	do(call{method: "POST", path: "/v1/events", body: map[string]any{"events": valid}, want: 401, rejected: true})

	do(call{method: "GET", path: "/v1/units/device/d-9", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/units/customer/nobody", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/units/customer/a%2Fb", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/units/Customer/c-42", key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/units/customer/" + strings.Repeat("u", 257), key: admin, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/units/device/d-9", key: sdk, want: 403, rejected: true})
	do(call{method: "PUT", path: "/v1/units/customer/c-5/consent", key: admin, body: `{"analytics":false}`, want: 200})
	if got := onlyAssignment(t, do(call{method: "POST", path: "/v1/assign", key: sdk, body: assignBody("c-5", fr, "l2"), want: 200})); got["reason"] != "opted_out" {
		t.Errorf("opted-out unit: reason %v, want opted_out", got["reason"])
	}
	if r := do(call{method: "POST", path: "/v1/events", key: sdk, body: map[string]any{"events": []any{ev("type", "track", "event", "x", "unit_type", "customer", "unit_id", "c-5")}}, want: 200}); !strings.Contains(string(r.Body), `"dropped":1`) {
		t.Errorf("event of an opted-out unit: %s", r.Body)
	}
	do(call{method: "GET", path: "/v1/units/customer/c-5", key: admin, want: 200})
	feed := do(call{method: "GET", path: "/v1/sdk/opt-outs", key: sdk, want: 200})
	if token := fmt.Sprintf("%016x", assign.OptOutToken("customer", "c-5")); !strings.Contains(string(feed.Body), token) {
		t.Errorf("opt-out feed %s lacks c-5's token %s", feed.Body, token)
	}
	do(call{method: "GET", path: "/v1/sdk/opt-outs?limit=1", key: admin, want: 200})
	do(call{method: "GET", path: "/v1/sdk/opt-outs?limit=0", key: sdk, want: 400, rejected: true})
	do(call{method: "GET", path: "/v1/sdk/opt-outs?cursor=bad", key: sdk, want: 400})
	do(call{method: "GET", path: "/v1/sdk/opt-outs", want: 401, rejected: true})
	do(call{method: "PUT", path: "/v1/units/customer/c-5/consent", key: admin, body: `{"analytics":true}`, want: 200})
	for _, body := range []string{`{}`, `{"analytics":"no"}`, `{"analytics":null}`, `{"analytics":true,"marketing":false}`, ``} {
		do(call{method: "PUT", path: "/v1/units/customer/c-5/consent", key: admin, body: body, want: 400, rejected: true})
	}
	do(call{method: "PUT", path: "/v1/units/Customer/c-5/consent", key: admin, body: `{"analytics":true}`, want: 400, rejected: true})
	do(call{method: "PUT", path: "/v1/units/customer/c-5/consent", key: admin, body: huge, want: 413, rejected: true})
	do(call{method: "PUT", path: "/v1/units/customer/c-5/consent", key: sdk, body: `{"analytics":true}`, want: 403, rejected: true})
	erased := do(call{method: "DELETE", path: "/v1/units/customer/c-42", key: admin, want: 200})
	var done struct{ Erasure struct{ ID string } }
	if err := json.Unmarshal(erased.Body, &done); err != nil || done.Erasure.ID == "" {
		t.Fatalf("DELETE answer %s has no erasure id", erased.Body)
	}
	do(call{method: "GET", path: "/v1/erasures/" + done.Erasure.ID, key: admin, want: 200})
	do(call{method: "GET", path: "/v1/erasures/" + done.Erasure.ID, key: sdk, want: 403, rejected: true})
	do(call{method: "GET", path: "/v1/erasures/0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a", key: admin, want: 404})
	do(call{method: "DELETE", path: "/v1/units/customer/nobody", key: admin, want: 200})
	// During a long aggregation cycle: 202 and a pending request to poll.
	lock, err := pgx.Connect(context.Background(), a.url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(context.Background(), `SELECT pg_advisory_lock($1)`, store.AggregationLock); err != nil {
		t.Fatal(err)
	}
	pending := do(call{method: "DELETE", path: "/v1/units/customer/c-43", key: admin, want: 202})
	do(call{method: "GET", path: pending.Header.Get("Location"), key: admin, want: 200})
	lock.Close(context.Background()) // ends the "cycle"; the background finishes the erasure
	do(call{method: "DELETE", path: "/v1/units/Customer/c-42", key: admin, want: 400, rejected: true})
	do(call{method: "DELETE", path: "/v1/units/device/", key: admin, want: 404})
	do(call{method: "DELETE", path: "/v1/units/customer/c-42", key: sdk, want: 403, rejected: true})
	do(call{method: "DELETE", path: "/v1/units/customer/c-42", want: 401, rejected: true})

	// Every operation that needs a key refuses a request without one, and
	// a key of a scope its security does not name, before reading anything
	// else.
	for _, o := range c.operations() {
		if o.op.Responses.Status(http.StatusUnauthorized) == nil {
			continue
		}
		x := c.exampleCall(o)
		x.want, x.rejected = http.StatusUnauthorized, true
		do(x)
		schemes := "|" + schemesOf(c.doc, o.op) + "|"
		for _, k := range []struct{ scheme, key string }{{"sdkKey", sdk}, {"viewerKey", a.viewer}} {
			if !strings.Contains(schemes, "|"+k.scheme+"|") {
				x.key, x.want = k.key, http.StatusForbidden
				do(x)
			}
		}
	}

	// Gin's own answers: an unknown route and a known path with another method.
	do(call{method: "GET", path: "/v1/nothing", key: admin, want: 404})
	do(call{method: "DELETE", path: exp, key: admin, want: 405})

	// A server whose assignment configuration is not loaded yet: 503s.
	cold := &testAPI{t: t, db: a.db, admin: a.admin, sdk: a.sdk}
	cold.srv = httptest.NewServer(api.NewServer(api.Deps{Store: a.db, Live: live.New(a.db)}))
	t.Cleanup(cold.srv.Close)
	for _, x := range []call{
		{method: "GET", path: "/readyz", want: 503},
		{method: "GET", path: "/v1/sdk/config", key: sdk, want: 503},
		{method: "POST", path: "/v1/assign", key: sdk, body: assignBody("c-1", nil), want: 503},
		{method: "POST", path: "/v1/events", key: sdk, body: map[string]any{"events": valid}, want: 503},
	} {
		if r := c.do(cold, x); r.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s = 503 without Retry-After", x.method, x.path)
		}
	}

	// A server whose database goes away: every call that needs it is a 503
	// (the key lookup is the first), with the document's examples as requests.
	proxied, cut := startDBProxy(t, a.url)
	db, err := store.Open(context.Background(), proxied, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatalf("store.Open through the proxy: %v", err)
	}
	t.Cleanup(db.Close)
	reg := live.New(db)
	if err := reg.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	down := &testAPI{t: t, db: db, admin: a.admin, sdk: a.sdk}
	down.srv = httptest.NewServer(api.NewServer(api.Deps{Store: db, Live: reg, Units: db}))
	t.Cleanup(down.srv.Close)
	cut()
	for _, o := range c.operations() {
		x := c.exampleCall(o)
		x.key, x.want = admin, http.StatusServiceUnavailable
		if o.path == "/healthz" || o.path == "/metrics" || o.path == "/v1/openapi.json" {
			x.want = http.StatusOK
		}
		c.do(down, x)
	}

	c.coverage()
}

// TestOpenAPICheckFails makes sure that the checks of
// TestOpenAPIMatchesResponses can fail: a response that breaks the document,
// a status it does not list, and a request the server refused that the
// document accepts are all reported.
func TestOpenAPICheckFails(t *testing.T) {
	a := newTestAPI(t)
	c := newOAPICheck(t, a)
	var failures []string
	c.errorf = func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	// Corrupt the document in memory: an Experiment must have a field the
	// server never sends, and GET /v1/metrics/{key} has no 404.
	exp := c.doc.Components.Schemas["Experiment"].Value
	exp.Required = append(slices.Clone(exp.Required), "owner")
	c.doc.Paths.Value("/v1/metrics/{key}").Get.Responses.Delete("404")

	for _, tt := range []struct {
		name string
		x    call
		want string
	}{
		{"missing field", call{method: "POST", path: "/v1/experiments", key: a.admin, want: 201,
			body: map[string]any{"key": "e", "unit_type": "customer", "variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}}}},
			`property "owner" is missing`},
		{"undocumented status", call{method: "GET", path: "/v1/metrics/nope", key: a.admin, want: 404}, "status is not supported"},
		{"lenient document", call{method: "POST", path: "/v1/metrics", key: a.admin, body: `{"key":"m","type":"conversion"}`, want: 400, rejected: true},
			"the document accepts this request"},
		{"strict document", call{method: "POST", path: "/v1/metrics", key: a.admin, body: `{"key":"m","type":"count","event":"e"}`, want: 201, rejected: false},
			""},
	} {
		failures = nil
		c.do(a, tt.x)
		if tt.want == "" {
			if len(failures) != 0 {
				t.Errorf("%s: failures = %q, want none", tt.name, failures)
			}
			continue
		}
		if !slices.ContainsFunc(failures, func(f string) bool { return strings.Contains(f, tt.want) }) {
			t.Errorf("%s: failures = %q, want one containing %q", tt.name, failures, tt.want)
		}
	}
}

// walkPages GETs path page by page, following next_cursor, and returns the
// string field of every item in order. It stops after 20 pages.
func walkPages(t *testing.T, do func(call) response, key, path, field string) []string {
	t.Helper()
	var out []string
	cursor := ""
	for range 20 {
		r := do(call{method: "GET", path: path + "&cursor=" + cursor, key: key, want: 200})
		var p struct {
			Items      []map[string]any `json:"items"`
			NextCursor string           `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			v, _ := it[field].(string)
			out = append(out, v)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	return out
}
