package sdk_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// fakeServer is a small stand-in for flywheel: GET /v1/sdk/config with
// ETag and If-None-Match, and POST /v1/events that checks each event's
// wire format strictly and stores each id once, as the real server does.
// Its behaviour per request can be changed while it runs.
type fakeServer struct {
	t   testing.TB
	srv *httptest.Server

	mu             sync.Mutex
	config         []byte // the config body; its ETag is `"<revision>"`
	revision       int64
	configStatus   int // non-zero: answer config requests with it
	configRequests int
	notModified    int
	// events: fail, when set, may answer a request itself (return true);
	// n counts event requests from 1.
	fail      func(w http.ResponseWriter, r *http.Request, body []byte, n int) bool
	reject    func(ev fakeEvent) bool // events to reject one by one
	requests  int
	receipts  map[string]int // event id -> times received
	stored    []fakeEvent    // first receipt of each id, in order
	sizes     []int          // events per request
	lastError string
	// stream says how GET /v1/sdk/stream answers: streamOff (the zero
	// value, as a server without it: 404) or another streamMode.
	stream        streamMode
	changed       chan struct{} // closed and replaced by setConfig
	streamOpens   int           // stream requests
	lastEventIDs  []string      // their Last-Event-ID headers
	streamHeaders http.Header   // the last stream request's headers
}

// streamMode is how the fake answers GET /v1/sdk/stream.
type streamMode int

const (
	streamOff    streamMode = iota // 404, as a server without the stream
	streamOn                       // the real server's protocol
	streamCut                      // a proxy that cuts the answer after its first line
	streamBuffer                   // a proxy that buffers: headers, then nothing
	streamHTML                     // a proxy's 200 error page
	streamSilent                   // a connection that dies without a word after the first event
)

// fakeEvent is one event as the SDK sends it; unknown fields fail decoding.
type fakeEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Experiment string          `json:"experiment"`
	Variant    string          `json:"variant"`
	UnitType   string          `json:"unit_type"`
	UnitID     string          `json:"unit_id"`
	Timestamp  *time.Time      `json:"timestamp"`
	Attributes json.RawMessage `json:"attributes"`
	Event      string          `json:"event"`
	Value      *float64        `json:"value"`
	Properties json.RawMessage `json:"properties"`
	CustomerID string          `json:"customer_id"`
}

func newFakeServer(t testing.TB, config []byte) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, config: config, revision: 1, receipts: map[string]int{}, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sdk/config", f.handleConfig)
	mux.HandleFunc("GET /v1/sdk/stream", f.handleStream)
	mux.HandleFunc("POST /v1/events", f.handleEvents)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// URL returns the server's base URL.
func (f *fakeServer) URL() string { return f.srv.URL }

// setConfig installs a new config revision.
func (f *fakeServer) setConfig(rev int64, config []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.config, f.revision = config, rev
	close(f.changed)
	f.changed = make(chan struct{})
}

// setStream changes how the stream answers from the next request on.
func (f *fakeServer) setStream(m streamMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stream = m
}

// handleStream serves GET /v1/sdk/stream as the server does (a config event
// at once unless Last-Event-ID is the current revision, then one per
// setConfig), or as a broken proxy would.
func (f *fakeServer) handleStream(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode := f.stream
	f.streamOpens++
	f.lastEventIDs = append(f.lastEventIDs, r.Header.Get("Last-Event-ID"))
	f.streamHeaders = r.Header.Clone()
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer sdk-key" {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "")
		return
	}
	switch mode {
	case streamOff:
		writeError(w, http.StatusNotFound, "not_found", "")
		return
	case streamHTML:
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>gateway</html>")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	switch mode {
	case streamBuffer:
		fl.Flush() // the headers only, as a buffering proxy passes them
		<-r.Context().Done()
		return
	case streamCut:
		io.WriteString(w, ": hello\n\n")
		fl.Flush()
		return
	case streamSilent:
		f.mu.Lock()
		rev, body := f.revision, f.config
		f.mu.Unlock()
		fmt.Fprintf(w, ": hello\n\nid: %d\nevent: config\ndata: %s\n\n", rev, bytes.ReplaceAll(body, []byte("\n"), nil))
		fl.Flush()
		<-r.Context().Done()
		return
	}
	io.WriteString(w, ": hello\nretry: 1000\n\n")
	fl.Flush()
	last := r.Header.Get("Last-Event-ID")
	for {
		f.mu.Lock()
		rev, body, changed := f.revision, f.config, f.changed
		f.mu.Unlock()
		if id := strconv.FormatInt(rev, 10); id != last {
			fmt.Fprintf(w, "id: %s\nevent: config\ndata: %s\n\n", id, bytes.ReplaceAll(body, []byte("\n"), nil))
			fl.Flush()
			last = id
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeServer) handleConfig(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.configRequests++
	status, body, etag := f.configStatus, f.config, `"`+strconv.FormatInt(f.revision, 10)+`"`
	if status == 0 && r.Header.Get("If-None-Match") == etag {
		f.notModified++
		status = http.StatusNotModified
	}
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer sdk-key" {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "")
		return
	}
	switch status {
	case 0:
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	case http.StatusNotModified:
		w.WriteHeader(status)
	default:
		writeError(w, status, "internal", "")
	}
}

func writeError(w http.ResponseWriter, status int, code, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":"fake %d"}}`, code, status)
}

func (f *fakeServer) handleEvents(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.requests++
	n, fail := f.requests, f.fail
	f.mu.Unlock()
	if fail != nil && fail(w, r, body, n) {
		return
	}
	f.store(w, r, body)
}

// store decodes, checks and stores a batch, and answers like the server.
func (f *fakeServer) store(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Header.Get("Authorization") != "Bearer sdk-key" || r.Header.Get("Content-Type") != "application/json" {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "")
		return
	}
	var env struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Events == nil {
		f.fatalf("events body is not {\"events\": [...]}: %v", err)
		writeError(w, http.StatusBadRequest, "invalid_argument", "")
		return
	}
	type rejection struct {
		Index int               `json:"index"`
		Error map[string]string `json:"error"`
	}
	ans := struct {
		Accepted   int         `json:"accepted"`
		Duplicates int         `json:"duplicates"`
		Dropped    int         `json:"dropped"`
		Rejected   []rejection `json:"rejected"`
	}{Rejected: []rejection{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sizes = append(f.sizes, len(env.Events))
	for i, raw := range env.Events {
		var ev fakeEvent
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			f.fatalfLocked("event %d does not decode: %v: %s", i, err, raw)
			continue
		}
		id, err := uuid.Parse(ev.ID)
		if err != nil || len(ev.ID) != 36 || id.Version() != 7 {
			f.fatalfLocked("event id %q is not a UUIDv7", ev.ID)
		}
		if ev.Timestamp == nil || ev.UnitID == "" || ev.UnitType == "" {
			f.fatalfLocked("event lacks a timestamp, unit type or unit id: %s", raw)
		}
		if f.reject != nil && f.reject(ev) {
			ans.Rejected = append(ans.Rejected, rejection{Index: i, Error: map[string]string{"code": "invalid_argument", "field": "event", "message": "rejected by the fake"}})
			continue
		}
		f.receipts[ev.ID]++
		if f.receipts[ev.ID] > 1 {
			ans.Duplicates++
			continue
		}
		ans.Accepted++
		f.stored = append(f.stored, ev)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ans)
}

// commitThenHangUp stores a batch like the server and then closes the
// connection before answering, as when an answer is lost on the way: the
// client must retry, and the server then sees only duplicates.
func (f *fakeServer) commitThenHangUp(w http.ResponseWriter, r *http.Request, body []byte) {
	f.store(httptest.NewRecorder(), r, body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		f.fatalf("hijack: %v", err)
		return
	}
	conn.Close()
}

// fatalf records a protocol violation; the test fails at its end.
func (f *fakeServer) fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fatalfLocked(format, args...)
}

func (f *fakeServer) fatalfLocked(format string, args ...any) {
	if f.lastError == "" {
		f.t.Errorf("fake server: "+format, args...)
	}
	f.lastError = fmt.Sprintf(format, args...)
}

// events returns a copy of the stored events.
func (f *fakeServer) events() []fakeEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeEvent(nil), f.stored...)
}

// batchSizes returns the number of events of each stored request.
func (f *fakeServer) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.sizes...)
}

// counts returns the number of event requests, and of ids received more
// than once.
func (f *fakeServer) counts() (requests, redelivered int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.receipts {
		if n > 1 {
			redelivered++
		}
	}
	return f.requests, redelivered
}

// waitFor polls cond until it holds; the deadline only guards against a
// hung test, no result depends on timing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testConfig is a config with one customer experiment, 100% traffic, no
// targeting.
var testConfig = []byte(`{"revision":1,"experiments":[{"key":"exp","unit_type":"customer","traffic":1,"running":true,
 "variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5,"payload":{"n":1}}]}]}`)
