package sdk

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Client assigns units to experiments and sends their events. It is safe
// for concurrent use; create one per process with New and Close it on
// shutdown.
type Client struct {
	url  string // base URL without trailing slash; "" offline
	key  string
	opts options
	log  *slog.Logger
	seed maphash.Seed

	config  atomic.Pointer[compiled]
	optOuts optOuts // the server's opt-outs, as tokens
	seen    *seenSet
	sticky  *stickyArms // first arms of units in sticky (bandit) experiments

	clock    eventClock
	queue    *queue    // nil offline
	delivery *delivery // nil offline
	stats    counters
	// overflowing is set by the first event the full buffer pushes out,
	// which is logged, and cleared when the server next takes a batch: one
	// log line per episode, never one per dropped event.
	overflowing atomic.Bool

	fetchMu     sync.Mutex  // serialises config fetches and installs
	streaming   atomic.Bool // the config stream is open
	staleWarned *compiled   // the config in use when an older one was last logged; under fetchMu
	errMu       sync.Mutex
	lastErr     error         // last config fetch error, nil after a success
	ready       chan struct{} // closed at the first config from the server
	readyOnce   sync.Once
	startFailed chan struct{} // closed when start-up cannot succeed (e.g. 401)
	failOnce    sync.Once

	stop      context.CancelFunc // stops the poller
	pollDone  chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// ErrOffline is returned by EnsureLoaded and Refresh of a client created
// without a URL.
var ErrOffline = errors.New("sdk: client is offline (no URL)")

// New creates a client for the Flywheel server at cfg.URL (e.g.
// "https://flywheel.example.com") with an sdk-scope cfg.Key, and starts its
// background work: config polling and event delivery. ctx bounds the
// start-up wait only; the background work runs until Close.
//
// New waits for the first config from the server at most the start-up
// timeout (WithStartupTimeout, default 2 s) or until ctx ends, and returns
// early when the server refuses the key. Either way it then returns a
// working client: until a config arrives it assigns from the bootstrap
// config (WithBootstrap, WithBootstrapFile) or, without one, assigns nobody
// (ReasonNoConfig), and it keeps fetching in the background. Ready and
// EnsureLoaded tell whether the server's config has arrived.
//
// New returns an error only for invalid options (a URL that is not http or
// https, an empty key, a bootstrap config that cannot be read or compiled,
// out-of-range sizes); never because the server is unreachable. An empty
// cfg.URL makes an offline client: it assigns from the bootstrap config,
// fetches nothing and sends nothing (events count as dropped).
func New(ctx context.Context, cfg Config, opts ...Option) (*Client, error) {
	serverURL, key := cfg.URL, cfg.Key
	o := defaults()
	var errs []error
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			errs = append(errs, err)
		}
	}
	serverURL = strings.TrimRight(serverURL, "/")
	if serverURL != "" {
		u, err := url.Parse(serverURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("the server URL must be an http or https URL"))
		}
		if key == "" {
			errs = append(errs, errors.New("the key is empty"))
		}
	}
	c := &Client{
		url:         serverURL,
		key:         key,
		opts:        o,
		log:         o.logger,
		seed:        maphash.MakeSeed(),
		ready:       make(chan struct{}),
		startFailed: make(chan struct{}),
	}
	if o.bootstrap != nil {
		cfg, err := compileConfig(o.bootstrap, c.seed)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.bootstrapName, err))
		} else {
			c.config.Store(cfg)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("sdk: new client: %w", errors.Join(errs...))
	}
	c.opts.batchSize = min(o.batchSize, o.bufferSize)
	c.seen = newSeenSet(o.cacheSize)
	c.sticky = newStickyArms(o.stickyUnits)
	if serverURL == "" {
		return c, nil
	}

	c.queue = newQueue(o.bufferSize, recordBound)
	c.delivery = newDelivery(c)
	go c.delivery.run()
	pollCtx, stop := context.WithCancel(context.Background())
	c.stop, c.pollDone = stop, make(chan struct{})
	go c.poll(pollCtx)

	if o.startupTimeout > 0 {
		wait, cancel := context.WithTimeout(ctx, o.startupTimeout)
		defer cancel()
		select {
		case <-c.ready:
		case <-c.startFailed:
		case <-wait.Done():
		}
	}
	if !c.Ready() {
		source := "nobody is enrolled until it arrives"
		if c.config.Load() != nil {
			source = "assigning from the bootstrap config until it arrives"
		}
		c.log.Warn("flywheel: no config from the server at start-up; "+source, "err", c.fetchError())
	}
	return c, nil
}

// Ready reports whether the client has loaded a config from the server. A
// client that is not ready assigns from its bootstrap config, or assigns
// nobody.
func (c *Client) Ready() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// EnsureLoaded waits until the client has loaded a config from the server,
// or ctx ends; then it returns an error wrapping ctx's and the last fetch
// error (a *ServerError when the server answered). It returns ErrOffline at
// once for an offline client.
func (c *Client) EnsureLoaded(ctx context.Context) error {
	if c.url == "" {
		return ErrOffline
	}
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		if err := c.fetchError(); err != nil {
			return fmt.Errorf("sdk: config not loaded: %w", errors.Join(ctx.Err(), err))
		}
		return fmt.Errorf("sdk: config not loaded: %w", ctx.Err())
	}
}

// Flush sends every event recorded before the call and waits until each is
// delivered, rejected or given up, or until ctx ends (the events stay
// queued). During an outage it waits for the retries.
func (c *Client) Flush(ctx context.Context) error {
	if c.delivery == nil {
		return nil
	}
	return c.delivery.flush(ctx)
}

// Close stops polling, sends the queued events (retrying as usual) and
// stops the delivery goroutine. It waits until every event is delivered or
// ctx ends; the events still unsent then are dropped, counted in
// Stats.Dropped, and Close returns an error wrapping ctx's. Pass a ctx with
// a deadline. After Close, Assign keeps working from the last config but
// logs no exposures, and Track and Identify return ErrClosed. Close is
// idempotent; later calls return the first call's result.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.delivery == nil {
			return
		}
		c.stop()
		c.closeErr = c.delivery.close(ctx)
		<-c.pollDone
	})
	return c.closeErr
}

// markReady records the first config from the server.
func (c *Client) markReady() {
	c.readyOnce.Do(func() { close(c.ready) })
}

func (c *Client) setFetchError(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	c.lastErr = err
}

func (c *Client) fetchError() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.lastErr
}
