package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Stream timing. The server sends a comment at once and a heartbeat every
// 20 s; a stream that sends nothing for the idle timeout is dead (or held
// by a buffering proxy) and is dropped for polling.
const (
	defaultStreamIdle    = 60 * time.Second
	maxStreamFirstLine   = 10 * time.Second
	streamBackoffMin     = 500 * time.Millisecond
	streamBackoffMax     = 30 * time.Second
	streamBackoffRefused = 5 * time.Minute // a server without the stream, or a key refused
	streamReconnectMax   = 500 * time.Millisecond
)

// errStreamIdle ends a stream that stayed silent too long.
var errStreamIdle = errors.New("sdk: config stream: nothing received within the idle timeout (a proxy may buffer or cut the stream)")

// follow keeps the config current over GET /v1/sdk/stream until ctx ends,
// once the first config is loaded. When the stream cannot be opened or
// ends, the client catches up by polling GET /v1/sdk/config (ETag) at
// once, then at the poll interval, and tries the stream again after a
// backoff: at once (within 0.5 s) after a stream that worked, else 0.5 s
// doubling up to 30 s, or 5 minutes after a 4xx (a server without the
// stream, a key refused). While the stream works, the opt-outs are still
// polled at the poll interval.
func (c *Client) follow(ctx context.Context) {
	failures := 0
	for {
		worked, err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if worked {
			failures = 0
			wait = rand.N(streamReconnectMax)
			c.log.Info("flywheel: config stream ended; reconnecting", "err", err)
		} else {
			failures++
			b := min(streamBackoffMax, streamBackoffMin<<min(failures-1, 20))
			var se *ServerError
			if errors.As(err, &se) {
				if !se.Retryable() {
					b = streamBackoffRefused
				}
				b = max(b, se.RetryAfter)
			}
			wait = b/2 + rand.N(b/2+1)
			if failures == 1 {
				c.log.Warn("flywheel: config stream unavailable; polling until it is back", "err", err, "retry_in", wait)
			} else {
				c.log.Debug("flywheel: config stream unavailable again", "failures", failures, "err", err)
			}
		}
		// Catch up by polling (a change may have happened while the
		// stream was down), and keep polling until the stream is retried.
		retryAt := time.Now().Add(wait)
		for {
			_ = c.fetch(ctx)
			left := time.Until(retryAt)
			if left <= 0 {
				break
			}
			if !sleep(ctx, min(left, jitter(c.opts.pollInterval))) {
				return
			}
			if time.Now().After(retryAt) {
				break
			}
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stream opens GET /v1/sdk/stream with the current revision as
// Last-Event-ID and installs each config event until the stream fails.
// worked reports whether the server accepted the stream and sent
// something: a stream that worked and then ended is reconnected at once.
func (c *Client) stream(ctx context.Context) (worked bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/sdk/stream", nil)
	if err != nil {
		return false, fmt.Errorf("sdk: config stream: %w", err)
	}
	c.setHeaders(req)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if cur := c.config.Load(); cur != nil && cur.fromServer {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(cur.revision, 10))
	}
	// The watchdog: the request's headers, then the first line, then each
	// next line must come in time, or the stream is cancelled.
	idle := c.opts.streamIdle
	first := min(idle, maxStreamFirstLine)
	headerWait := first
	if t := c.opts.httpClient.Timeout; t > 0 {
		headerWait = t
	}
	watchdog := time.AfterFunc(headerWait, func() { cancel(errStreamIdle) })
	defer watchdog.Stop()

	res, err := c.streamClient().Do(req)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStreamIdle) {
			err = cause
		}
		return false, fmt.Errorf("sdk: config stream: %w", err)
	}
	defer drainStream(res)
	if res.StatusCode != http.StatusOK {
		return false, fmt.Errorf("sdk: config stream: %w", serverError(res))
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, fmt.Errorf("sdk: config stream: answer is %q, not text/event-stream", ct)
	}
	watchdog.Reset(first)
	rd := newSSEReader(res.Body, maxConfigBytes)
	rd.onLine = func() {
		if !worked {
			worked = true
			c.stats.streamConnects.Add(1)
			c.streaming.Store(true)
		}
		watchdog.Reset(idle)
	}
	defer c.streaming.Store(false)

	// The opt-outs have no stream: poll them beside it.
	optOutsDone := make(chan struct{})
	defer func() { <-optOutsDone }()
	defer cancel(nil)
	go func() {
		defer close(optOutsDone)
		for sleep(ctx, jitter(c.opts.pollInterval)) {
			c.fetchMu.Lock()
			c.refreshOptOuts(ctx)
			c.fetchMu.Unlock()
		}
	}()

	for {
		ev, err := rd.next()
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errStreamIdle) {
				err = cause
			} else if errors.Is(err, io.EOF) {
				err = errors.New("the server ended the stream")
			}
			return worked, fmt.Errorf("sdk: config stream: %w", err)
		}
		if ev.Event != "config" {
			continue // an event type this client does not know
		}
		c.installStreamed(ctx, ev)
	}
}

// installStreamed compiles a config event and installs it unless it is
// older than the config the client has.
func (c *Client) installStreamed(ctx context.Context, ev sseEvent) {
	cfg, err := compileConfig(ev.Data, c.seed)
	if err != nil {
		c.stats.configErrors.Add(1)
		c.log.Error("flywheel: streamed config does not compile; keeping the last good one", "err", err)
		return
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	cfg.fromServer, cfg.etag = true, `"`+strconv.FormatInt(cfg.revision, 10)+`"`
	if c.install(cfg) {
		c.refreshOptOuts(ctx)
	}
	c.setFetchError(nil)
	c.markReady()
}

// streamClient is the HTTP client of the stream: the configured one
// without its overall Timeout, which would cut every stream (the watchdog
// bounds the wait for headers and for each line instead).
func (c *Client) streamClient() *http.Client {
	hc := *c.opts.httpClient
	hc.Timeout = 0
	return &hc
}

// drainStream closes a stream's body without reading it to its end: it
// has none.
func drainStream(res *http.Response) {
	_ = res.Body.Close()
}
