package api_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
)

// sseItem is what a stream sent: an event (its fields) or a comment.
type sseItem struct {
	comment          string // a comment line, without its colon
	id, event, data  string
	retry            string
	isEvent, isRetry bool
}

// sseConn is an open GET /v1/sdk/stream, read item by item.
type sseConn struct {
	t   testing.TB
	res *http.Response
	rd  *bufio.Reader
}

// openStream opens the config stream with key and headers (name, value,
// ...) and fails the test unless the server answers want. The stream is
// closed when the test ends.
func openStream(t testing.TB, base, key string, want int, headers ...string) *sseConn {
	t.Helper()
	// The deadline only guards against a hung test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/sdk/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/sdk/stream: %v", err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != want {
		raw, _ := io.ReadAll(res.Body)
		t.Fatalf("GET /v1/sdk/stream = %d, want %d: %s", res.StatusCode, want, raw)
	}
	return &sseConn{t: t, res: res, rd: bufio.NewReader(res.Body)}
}

// next returns the next event or comment, failing the test at the end of
// the stream.
func (s *sseConn) next() sseItem {
	s.t.Helper()
	it, err := s.read()
	if err != nil {
		s.t.Fatalf("stream: %v", err)
	}
	return it
}

// read returns the next event or comment (a retry: field alone counts as
// an item too), or the read error.
func (s *sseConn) read() (sseItem, error) {
	var it sseItem
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return it, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if it.isEvent || it.isRetry {
				return it, nil
			}
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "":
			if !it.isEvent && !it.isRetry {
				return sseItem{comment: value}, nil
			}
		case "id":
			it.id, it.isEvent = value, true
		case "event":
			it.event, it.isEvent = value, true
		case "data":
			it.data, it.isEvent = value, true
		case "retry":
			it.retry, it.isRetry = value, true
		default:
			s.t.Fatalf("stream: unexpected line %q", line)
		}
	}
}

// nextEvent skips comments and retry hints up to the next event.
func (s *sseConn) nextEvent() sseItem {
	s.t.Helper()
	for {
		if it := s.next(); it.isEvent {
			return it
		}
	}
}

// readFirstEvent reads a stream's body up to the end of its first event
// (for roundTrip, which cannot wait for the end of a stream).
func readFirstEvent(t testing.TB, body io.Reader) []byte {
	t.Helper()
	rd := bufio.NewReader(body)
	var out strings.Builder
	inEvent := false
	for {
		line, err := rd.ReadString('\n')
		out.WriteString(line)
		if err != nil {
			return []byte(out.String())
		}
		switch {
		case strings.HasPrefix(line, "id:"), strings.HasPrefix(line, "data:"), strings.HasPrefix(line, "event:"):
			inEvent = true
		case line == "\n" && inEvent:
			return []byte(out.String())
		}
	}
}

// sdkConfig is GET /v1/sdk/config's body and ETag.
func sdkConfig(t testing.TB, a *testAPI) (body, etag string) {
	t.Helper()
	r := a.do("GET", "/v1/sdk/config", a.sdk, nil)
	if r.Status != 200 {
		t.Fatalf("GET /v1/sdk/config = %d: %s", r.Status, r.Body)
	}
	return string(r.Body), r.Header.Get("ETag")
}

// startExperiment creates and starts an experiment: a new config revision.
func startExperiment(t testing.TB, a *testAPI, key string) {
	t.Helper()
	a.must(201, "POST", "/v1/experiments", map[string]any{
		"key": key, "name": key, "unit_type": "customer",
		"variants": []map[string]any{{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}},
	})
	a.must(200, "POST", "/v1/experiments/"+key+"/start", nil)
}

// checkConfigEvent fails the test unless it is the config event of the
// body and ETag of GET /v1/sdk/config.
func checkConfigEvent(t testing.TB, it sseItem, body, etag string) {
	t.Helper()
	if it.event != "config" {
		t.Errorf("event = %q, want config", it.event)
	}
	if `"`+it.id+`"` != etag {
		t.Errorf("id = %s, want the revision of ETag %s", it.id, etag)
	}
	if it.data != body {
		t.Errorf("data = %.300s\nwant GET /v1/sdk/config's %.300s", it.data, body)
	}
}

func TestSDKStreamSendsCurrentConfigThenEachChange(t *testing.T) {
	a := newTestAPI(t)
	startExperiment(t, a, "first")
	body, etag := sdkConfig(t, a)

	s := openStream(t, a.srv.URL, a.sdk, 200)
	for name, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"} {
		if got := s.res.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if it := s.next(); it.comment == "" {
		t.Errorf("first item = %+v, want the opening comment", it)
	}
	if it := s.next(); it.retry != "2000" {
		t.Errorf("second item = %+v, want retry: 2000", it)
	}
	checkConfigEvent(t, s.nextEvent(), body, etag)

	startExperiment(t, a, "second") // two revisions: create, then start
	body2, etag2 := sdkConfig(t, a)
	it := s.nextEvent()
	for it.data != body2 {
		// The create's revision may come first.
		if rev, _ := strconv.Atoi(it.id); `"`+it.id+`"` == etag || rev <= 0 {
			t.Fatalf("event %+v after a change, want a new revision", it)
		}
		it = s.nextEvent()
	}
	checkConfigEvent(t, it, body2, etag2)
	if !strings.Contains(it.data, `"second"`) {
		t.Errorf("the new config has no experiment second: %.300s", it.data)
	}

	// An admin key may stream too.
	checkConfigEvent(t, openStream(t, a.srv.URL, a.admin, 200).nextEvent(), body2, etag2)
}

func TestSDKStreamLastEventIDResumes(t *testing.T) {
	a := newTestAPI(t, apiOptions{streamHeartbeat: 5 * time.Millisecond})
	startExperiment(t, a, "first")
	body, etag := sdkConfig(t, a)
	rev := strings.Trim(etag, `"`)

	// An older revision (or one this server does not have): the current
	// config at once.
	for _, old := range []string{"0", "1", " 1 ", "999999999"} {
		checkConfigEvent(t, openStream(t, a.srv.URL, a.sdk, 200, "Last-Event-ID", old).nextEvent(), body, etag)
	}

	// The current revision: heartbeats only, until the next change.
	s := openStream(t, a.srv.URL, a.sdk, 200, "Last-Event-ID", rev)
	for beats := 0; beats < 3; {
		it := s.next()
		if it.isEvent {
			t.Fatalf("event %+v for a client that has revision %s already", it, rev)
		}
		if it.comment == "heartbeat" {
			beats++
		}
	}
	a.must(200, "POST", "/v1/experiments/first/stop", nil)
	body2, etag2 := sdkConfig(t, a)
	checkConfigEvent(t, s.nextEvent(), body2, etag2)
}

func TestSDKStreamRefusesBadRequests(t *testing.T) {
	a := newTestAPI(t)
	for _, tt := range []struct {
		name, key string
		headers   []string
		want      int
		code      string
		field     string
	}{
		{"no key", "", nil, 401, "unauthenticated", ""},
		{"unknown key", "fw_sdk_nobody", nil, 401, "unauthenticated", ""},
		{"viewer key", a.viewer, nil, 403, "permission_denied", ""},
		{"Last-Event-ID not a number", a.sdk, []string{"Last-Event-ID", "abc"}, 400, "invalid_argument", "Last-Event-ID"},
		{"Last-Event-ID negative", a.sdk, []string{"Last-Event-ID", "-1"}, 400, "invalid_argument", "Last-Event-ID"},
		{"Last-Event-ID an ETag", a.sdk, []string{"Last-Event-ID", `"3"`}, 400, "invalid_argument", "Last-Event-ID"},
		{"Last-Event-ID too large", a.sdk, []string{"Last-Event-ID", "99999999999999999999999"}, 400, "invalid_argument", "Last-Event-ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do("GET", "/v1/sdk/stream", tt.key, nil, tt.headers...)
			if r.Status != tt.want {
				t.Fatalf("status = %d, want %d: %s", r.Status, tt.want, r.Body)
			}
			code, field, msg := r.errorOf(t)
			if code != tt.code || field != tt.field {
				t.Errorf("error = %s field %q (%s), want %s field %q", code, field, msg, tt.code, tt.field)
			}
		})
	}
}

func TestSDKStreamLimits(t *testing.T) {
	t.Run("per key", func(t *testing.T) {
		a := newTestAPI(t, apiOptions{maxStreamsPerKey: 1})
		first := openStream(t, a.srv.URL, a.sdk, 200)
		first.nextEvent()
		r := a.do("GET", "/v1/sdk/stream", a.sdk, nil)
		if code, _, _ := r.errorOf(t); r.Status != 429 || code != "rate_limited" || r.Header.Get("Retry-After") == "" {
			t.Errorf("second stream of a key = %d %s (Retry-After %q), want 429 rate_limited with Retry-After", r.Status, code, r.Header.Get("Retry-After"))
		}
		openStream(t, a.srv.URL, a.admin, 200).nextEvent() // another key may
		if m := a.do("GET", "/metrics", "", nil); !strings.Contains(string(m.Body), "\nflywheel_sdk_streams 2\n") {
			t.Errorf("/metrics lacks flywheel_sdk_streams 2")
		}
		first.res.Body.Close()
		waitOpenStreams(t, a.app.API, 1)
		openStream(t, a.srv.URL, a.sdk, 200).nextEvent()
	})
	t.Run("total", func(t *testing.T) {
		a := newTestAPI(t, apiOptions{maxStreams: 1})
		openStream(t, a.srv.URL, a.sdk, 200).nextEvent()
		r := a.do("GET", "/v1/sdk/stream", a.admin, nil)
		if code, _, _ := r.errorOf(t); r.Status != 503 || code != "overloaded" || r.Header.Get("Retry-After") == "" {
			t.Errorf("stream over the total = %d %s, want 503 overloaded with Retry-After", r.Status, code)
		}
	})
}

// waitOpenStreams waits until the server counts n open streams (a closed
// client connection is noticed by the server asynchronously).
func waitOpenStreams(t testing.TB, srv interface{ OpenStreams() int }, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for srv.OpenStreams() != n {
		select {
		case <-ctx.Done():
			t.Fatalf("open streams = %d, want %d", srv.OpenStreams(), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestSDKStreamEndsOnShutdown(t *testing.T) {
	a := newTestAPI(t)
	s := openStream(t, a.srv.URL, a.sdk, 200)
	s.nextEvent()
	a.app.API.CloseStreams()
	for {
		if _, err := s.read(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("stream ended with %v, want a clean end (EOF)", err)
			}
			break
		}
	}
	r := a.do("GET", "/v1/sdk/stream", a.sdk, nil)
	if code, _, _ := r.errorOf(t); r.Status != 503 || code != "unavailable" {
		t.Errorf("stream after shutdown = %d %s, want 503 unavailable", r.Status, code)
	}
	waitOpenStreams(t, a.app.API, 0)
}

// TestSDKStreamOutlivesServerTimeouts runs the app behind an http.Server
// with read and write timeouts far shorter than the stream stays open, as
// cmd/flywheel's are: the stream outlives them (heartbeats counted past
// both) and still carries the next change.
func TestSDKStreamOutlivesServerTimeouts(t *testing.T) {
	const timeout = 50 * time.Millisecond
	srv := apptest.Start(t, app.Config{AggregateEvery: -1, StreamHeartbeat: 10 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.App.Handler, ReadTimeout: timeout, WriteTimeout: timeout, ReadHeaderTimeout: timeout}
	go hs.Serve(ln)
	t.Cleanup(func() {
		srv.App.API.CloseStreams()
		hs.Close()
	})
	base := "http://" + ln.Addr().String()
	s := openStream(t, base, apptest.SDKKey, 200)
	s.nextEvent()
	start := time.Now()
	for beats := 0; beats < 3 || time.Since(start) < 4*timeout; {
		if it := s.next(); it.comment == "heartbeat" {
			beats++
		}
	}
	srv.Admin(t, 201, "POST", "/v1/experiments", map[string]any{
		"key": "late", "name": "late", "unit_type": "customer",
		"variants": []map[string]any{{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}},
	})
	srv.Admin(t, 200, "POST", "/v1/experiments/late/start", nil)
	for {
		if it := s.nextEvent(); strings.Contains(it.data, `"late"`) {
			break
		}
	}
}

// TestSDKStreamSeesChangesOfAnotherProcess: two servers on one database,
// neither polling for changes within the test (an hour): a change made
// through one reaches a stream of the other by NOTIFY.
func TestSDKStreamSeesChangesOfAnotherProcess(t *testing.T) {
	one := apptest.Start(t, app.Config{AggregateEvery: -1, ConfigPoll: time.Hour})
	other := apptest.Start(t, app.Config{DatabaseURL: one.DatabaseURL, AggregateEvery: -1, ConfigPoll: time.Hour})
	s := openStream(t, other.URL, apptest.SDKKey, 200)
	first := s.nextEvent()
	one.Admin(t, 201, "POST", "/v1/experiments", map[string]any{
		"key": "elsewhere", "name": "elsewhere", "unit_type": "customer",
		"variants": []map[string]any{{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}},
	})
	one.Admin(t, 200, "POST", "/v1/experiments/elsewhere/start", nil)
	for {
		it := s.nextEvent()
		if it.id == first.id {
			t.Fatalf("event of revision %s again", it.id)
		}
		if strings.Contains(it.data, `"elsewhere"`) {
			break
		}
	}
}

// smallBuffers accepts connections with a send buffer of a few kilobytes,
// so that a client that stops reading fills it within a second.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestSDKStreamDropsAClientThatStopsReading: a client that opens a stream
// and never reads fills its connection's buffers with heartbeats; the
// write that blocks then fails after StreamWriteTimeout, and the stream
// ends, freeing its slot (without the deadline it would stay open, and
// hold up shutdown, for as long as the client does).
func TestSDKStreamDropsAClientThatStopsReading(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1, StreamHeartbeat: time.Millisecond, StreamWriteTimeout: 200 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.App.Handler}
	go hs.Serve(smallBuffers{ln})
	t.Cleanup(func() {
		srv.App.API.CloseStreams()
		hs.Close()
	})
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(2048)
	if _, err := io.WriteString(conn, "GET /v1/sdk/stream HTTP/1.1\r\nHost: flywheel\r\nAuthorization: Bearer "+apptest.SDKKey+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitOpenStreams(t, srv.App.API, 1)
	waitOpenStreams(t, srv.App.API, 0) // within 10 s: about a second's heartbeats fill the buffers
	// The client, reading at last, finds the stream's start and then its end.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the dropped stream: %v", err)
	}
	if !strings.Contains(string(got), "200 OK") || !strings.Contains(string(got), ": heartbeat") {
		t.Errorf("the dropped stream sent %.200q, want its 200 and heartbeats", got)
	}
}
