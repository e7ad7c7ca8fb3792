package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
)

// streamPath is the route of the SDK config stream; observe gives it no
// request deadline.
const streamPath = "/v1/sdk/stream"

// The defaults of the stream settings in Deps, and the stream's wire format.
const (
	defaultStreamHeartbeat    = 20 * time.Second
	defaultStreamWriteTimeout = 30 * time.Second
	defaultMaxStreams         = 10000
	defaultMaxStreamsPerKey   = 5000
	streamRetryMillis         = 2000 // the retry: hint, for EventSource clients
	streamHeartbeatLine       = ": heartbeat\n\n"
	streamHelloLine           = ": flywheel sdk config stream\n"
	lastEventIDHeader         = "Last-Event-ID"
	lastEventIDMaxLength      = 20 // digits of an int64
	streamEventName           = "config"
	streamContentType         = "text/event-stream"
	streamCacheControl        = "no-cache, no-transform"
	streamBufferingHeaderName = "X-Accel-Buffering" // nginx: do not buffer this answer
)

// streams counts the open SDK config streams, in all and per key, and
// ends them all on shutdown.
type streams struct {
	mu     sync.Mutex
	total  int
	perKey map[int64]int
	max    int
	maxKey int
	// closing is closed by CloseStreams: every stream ends.
	closing   chan struct{}
	closeOnce sync.Once
	frame     atomic.Pointer[frame]
}

func newStreams(max, maxKey int) *streams {
	return &streams{perKey: map[int64]int{}, max: max, maxKey: maxKey, closing: make(chan struct{})}
}

// acquire counts a new stream of key, or refuses it: 503 overloaded when
// the server holds its maximum, 429 rate_limited when the key does, and
// 503 unavailable once the server is shutting down.
func (s *streams) acquire(key int64) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		return nil, flywheel.Errorf(flywheel.CodeUnavailable, "the server is shutting down; reconnect")
	default:
	}
	if s.total >= s.max {
		return nil, flywheel.Errorf(flywheel.CodeOverloaded, "this server holds its maximum of %d config streams; retry later or poll GET /v1/sdk/config", s.max)
	}
	if s.perKey[key] >= s.maxKey {
		return nil, flywheel.Errorf(flywheel.CodeRateLimited, "this key holds its maximum of %d config streams; retry later or poll GET /v1/sdk/config", s.maxKey)
	}
	s.total++
	s.perKey[key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.total--
		if s.perKey[key]--; s.perKey[key] == 0 {
			delete(s.perKey, key)
		}
	}, nil
}

// open returns the number of open streams.
func (s *streams) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// CloseStreams ends every open SDK config stream and refuses new ones (503
// unavailable). Call it when the HTTP server starts its graceful shutdown
// (http.Server.RegisterOnShutdown): Shutdown waits for active requests,
// and a stream is one until it ends. Clients reconnect, to another
// instance or to this one once it is back, and catch up with Last-Event-ID.
func (s *Server) CloseStreams() {
	s.streams.closeOnce.Do(func() { close(s.streams.closing) })
}

// OpenStreams returns the number of SDK config streams open now.
func (s *Server) OpenStreams() int { return s.streams.open() }

// handleSDKStream serves GET /v1/sdk/stream: the SDK config as
// Server-Sent Events. Each event is
//
//	id: <revision>
//	event: config
//	data: <the JSON body of GET /v1/sdk/config>
//
// sent at once when the client's Last-Event-ID is absent or another
// revision than the current one, then again at every change. A comment
// line opens the stream (so that a client can tell a buffering proxy from
// a quiet server) and another is sent every heartbeat interval.
func (s *Server) handleSDKStream(c *gin.Context) {
	last := int64(-1)
	if h := c.GetHeader(lastEventIDHeader); h != "" {
		v, err := strconv.ParseInt(strings.TrimSpace(h), 10, 64)
		if err != nil || v < 0 || len(h) > lastEventIDMaxLength+2 {
			s.writeError(c, flywheel.Invalid(lastEventIDHeader, "the Last-Event-ID header must be a config revision (a non-negative integer), as sent in the stream's id: lines; got %q", truncate(h, 40)))
			return
		}
		last = v
	}
	st := s.deps.Live.Current()
	if st == nil {
		s.writeError(c, flywheel.Errorf(flywheel.CodeUnavailable, "configuration not loaded yet; retry"))
		return
	}
	var keyID int64
	if k := callerKey(c); k != nil {
		keyID = k.ID
	}
	release, err := s.streams.acquire(keyID)
	if err != nil {
		s.writeError(c, err)
		return
	}
	defer release()

	// The server's read and write timeouts are for requests that end; a
	// stream lives until the client leaves or the server shuts down. Each
	// write has its own deadline instead: a client that stops reading
	// blocks a write once its connection's buffers are full, and the
	// write fails StreamWriteTimeout later (the stream ends and frees its
	// slot). The last deadline is renewed on the way out, for the end of
	// the answer. (A ResponseWriter that cannot set deadlines, as in some
	// tests, is fine.)
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Time{})
	timeout := s.deps.StreamWriteTimeout
	defer func() { _ = rc.SetWriteDeadline(time.Now().Add(timeout)) }()

	h := c.Writer.Header()
	h.Set("Content-Type", streamContentType)
	h.Set("Cache-Control", streamCacheControl)
	h.Set(streamBufferingHeaderName, "no")
	c.Status(http.StatusOK)
	ctx := c.Request.Context()
	w := c.Writer
	write := func(parts ...string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(timeout))
		for _, p := range parts {
			if _, err := w.WriteString(p); err != nil {
				return false
			}
		}
		w.Flush()
		return true
	}
	if !write(streamHelloLine, "retry: ", strconv.Itoa(streamRetryMillis), "\n\n") {
		return
	}
	beat := time.NewTicker(s.deps.StreamHeartbeat)
	defer beat.Stop()
	for {
		if st.Revision != last {
			if !write(s.streams.event(st.Revision, st.SDKConfig)) {
				return
			}
			last = st.Revision
			beat.Reset(s.deps.StreamHeartbeat)
		}
		select {
		case <-st.Changed():
			st = s.deps.Live.Current()
		case <-beat.C:
			if !write(streamHeartbeatLine) {
				return
			}
		case <-ctx.Done():
			return
		case <-s.streams.closing:
			return
		}
	}
}

// frame is one state's config event, framed once for every stream.
type frame struct {
	rev  int64
	text string
}

// event returns the framed config event of st, from the cache when another
// stream framed it already.
func (s *streams) event(rev int64, config []byte) string {
	if f := s.frame.Load(); f != nil && f.rev == rev {
		return f.text
	}
	f := &frame{rev: rev, text: sseEvent(rev, config)}
	s.frame.Store(f)
	return f.text
}

// sseEvent frames one config event. The config JSON is one line (encoding/
// json never writes a raw newline), so one data: line carries it.
func sseEvent(rev int64, config []byte) string {
	return fmt.Sprintf("id: %d\nevent: %s\ndata: %s\n\n", rev, streamEventName, config)
}

// truncate shortens s to at most n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
