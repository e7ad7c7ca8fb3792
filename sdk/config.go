package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// maxConfigBytes bounds a config body.
const maxConfigBytes = 64 << 20

// Start-up retry: before the first config from the server, a failed fetch
// is retried after 250 ms, doubling up to the poll interval (or a minute
// when polling is off).
const (
	startupRetry    = 250 * time.Millisecond
	maxStartupRetry = time.Minute
)

// Refresh fetches the config from the server now (with If-None-Match) and
// returns once it is loaded, unchanged or failed; on failure the client
// keeps its last good config. The poller does this in the background; call
// Refresh to pick up a change at once (in tests, or after an admin action
// the app made itself).
func (c *Client) Refresh(ctx context.Context) error {
	if c.url == "" {
		return ErrOffline
	}
	return c.fetch(ctx)
}

// fetch makes one GET /v1/sdk/config and installs a new config.
func (c *Client) fetch(ctx context.Context) (err error) {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	defer func() {
		if err != nil {
			c.stats.configErrors.Add(1)
		}
		c.setFetchError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/sdk/config", nil)
	if err != nil {
		return fmt.Errorf("sdk: fetch config: %w", err)
	}
	c.setHeaders(req)
	cur := c.config.Load()
	if cur != nil && cur.fromServer && cur.etag != "" {
		req.Header.Set("If-None-Match", cur.etag)
	}
	res, err := c.opts.httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("sdk: fetch config: %w", err)
	}
	defer drain(res)
	switch res.StatusCode {
	case http.StatusNotModified:
		if cur != nil && cur.fromServer {
			c.refreshOptOuts(ctx)
			c.markReady()
			return nil
		}
		return errors.New("sdk: fetch config: 304 Not Modified without a config to keep")
	case http.StatusOK:
	default:
		return fmt.Errorf("sdk: fetch config: %w", serverError(res))
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxConfigBytes+1))
	if err != nil {
		return fmt.Errorf("sdk: fetch config: read body: %w", err)
	}
	if len(raw) > maxConfigBytes {
		return fmt.Errorf("sdk: fetch config: body larger than %d bytes", maxConfigBytes)
	}
	cfg, err := compileConfig(raw, c.seed)
	if err != nil {
		c.log.Error("flywheel: config from the server does not compile; keeping the last good one", "err", err)
		return fmt.Errorf("sdk: compile config: %w", err)
	}
	cfg.fromServer, cfg.etag = true, res.Header.Get("ETag")
	c.install(cfg)
	// Before the client is ready: the first assignments already leave out
	// the units that opted out on the server.
	c.refreshOptOuts(ctx)
	c.markReady()
	return nil
}

// install makes cfg, from the server, the client's config, unless the
// client has one from the server at a newer revision: a server that lags
// behind another (a replica, a stream and a poll crossing) never takes the
// client back. It reports whether cfg was installed. Callers hold fetchMu.
func (c *Client) install(cfg *compiled) bool {
	cur := c.config.Load()
	if cur != nil && cur.fromServer && cfg.revision < cur.revision {
		c.stats.configStale.Add(1)
		// One warning per config in use, however often a lagging server
		// sends the same old one.
		level := slog.LevelDebug
		if c.staleWarned != cur {
			c.staleWarned, level = cur, slog.LevelWarn
		}
		c.log.Log(context.Background(), level, "flywheel: the server sent an older config than the one in use; keeping it",
			"revision", cfg.revision, "current", cur.revision)
		return false
	}
	c.config.Store(cfg)
	c.stats.configUpdates.Add(1)
	if cur == nil || !cur.fromServer || cur.revision != cfg.revision {
		c.log.Info("flywheel: config loaded", "revision", cfg.revision, "experiments", len(cfg.experiments))
	}
	return true
}

// poll fetches the config at once, then every poll interval plus jitter,
// until ctx ends. Failures keep the last good config; before the first
// success they are retried sooner.
func (c *Client) poll(ctx context.Context) {
	defer close(c.pollDone)
	ceiling := c.opts.pollInterval
	if ceiling <= 0 {
		ceiling = maxStartupRetry
	}
	failures := 0
	for wait := time.Duration(0); ; {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		err := c.fetch(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if failures > 0 {
				c.log.Info("flywheel: config fetch recovered", "failures", failures)
			}
			failures = 0
			if c.opts.pollInterval <= 0 {
				return // polling off: one config is enough
			}
			if c.opts.streaming {
				c.follow(ctx) // the stream, polling only while it is down
				return
			}
			wait = jitter(c.opts.pollInterval)
			continue
		}
		failures++
		if failures == 1 {
			c.log.Warn("flywheel: config fetch failed; keeping the current config", "err", err)
		} else {
			c.log.Debug("flywheel: config fetch failed again", "failures", failures, "err", err)
		}
		var se *ServerError
		isServer := errors.As(err, &se)
		if isServer && !se.Retryable() && !c.Ready() {
			c.failOnce.Do(func() { close(c.startFailed) })
		}
		if c.Ready() {
			wait = jitter(ceiling)
		} else {
			wait = min(ceiling, startupRetry<<min(failures-1, 20))
		}
		if isServer {
			wait = max(wait, se.RetryAfter)
		}
	}
}

// jitter returns d plus a random fraction of up to a tenth of d, so that
// many apps started together do not poll in step.
func jitter(d time.Duration) time.Duration {
	if d < 10 {
		return d
	}
	return d + rand.N(d/10)
}
