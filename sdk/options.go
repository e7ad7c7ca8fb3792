package sdk

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// Option configures a Client. Options are applied in order by New; an
// invalid value makes New fail.
type Option func(*options) error

// options is what the options set, starting from defaults().
type options struct {
	pollInterval   time.Duration
	startupTimeout time.Duration
	bootstrap      []byte
	bootstrapName  string // where bootstrap came from, for error messages
	httpClient     *http.Client
	logger         *slog.Logger
	batchSize      int
	flushInterval  time.Duration
	bufferSize     int
	backoffMin     time.Duration
	backoffMax     time.Duration
	exposures      bool
	cacheSize      int
	stickyUnits    int
	consent        func(Unit) bool
	streaming      bool
	streamIdle     time.Duration
}

// Defaults of the options, as their doc comments state.
const (
	defaultPollInterval   = 30 * time.Second
	defaultStartupTimeout = 2 * time.Second
	defaultHTTPTimeout    = 10 * time.Second
	defaultBatchSize      = 500
	defaultFlushInterval  = 2 * time.Second
	defaultBufferSize     = 10000
	defaultBackoffMin     = time.Second
	defaultBackoffMax     = 30 * time.Second
	defaultCacheSize      = 1 << 16
	// maxBatchEvents and maxBatchBytes keep a request within the server's
	// limits (10,000 events, 5 MiB).
	maxBatchEvents = 10000
	maxBatchBytes  = 4 << 20
)

func defaults() options {
	return options{
		pollInterval:   defaultPollInterval,
		startupTimeout: defaultStartupTimeout,
		httpClient:     &http.Client{Timeout: defaultHTTPTimeout},
		logger:         slog.New(slog.DiscardHandler),
		batchSize:      defaultBatchSize,
		flushInterval:  defaultFlushInterval,
		bufferSize:     defaultBufferSize,
		backoffMin:     defaultBackoffMin,
		backoffMax:     defaultBackoffMax,
		exposures:      true,
		cacheSize:      defaultCacheSize,
		streaming:      true,
		streamIdle:     defaultStreamIdle,
		stickyUnits:    defaultStickyUnits,
	}
}

// WithPollInterval sets how often the client asks the server for a new
// config. Each wait adds a random jitter of up to a tenth of d, so a change
// reaches the app within d + d/10 plus one request. d <= 0 disables
// polling: the client fetches the config once at start-up (retrying until
// it succeeds) and keeps it, and opens no stream either. While the config
// stream is up (WithStreaming), changes come by the stream and only the
// opt-outs are polled at this interval. Default: 30 s.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) error {
		o.pollInterval = d
		return nil
	}
}

// WithStartupTimeout sets how long New waits for the first config from the
// server before it returns a client that assigns from the bootstrap config
// (or assigns nobody). 0 makes New return at once. New's ctx bounds the wait
// too. Default: 2 s.
func WithStartupTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("startup timeout %v is negative", d)
		}
		o.startupTimeout = d
		return nil
	}
}

// WithBootstrap gives the config to assign from until one arrives from the
// server: the JSON body of GET /v1/sdk/config, saved earlier (for example
// with go:embed). It must parse and compile, or New fails. Default: none.
func WithBootstrap(config []byte) Option {
	return func(o *options) error {
		o.bootstrap = append([]byte(nil), config...)
		o.bootstrapName = "bootstrap"
		return nil
	}
}

// WithBootstrapFile is WithBootstrap with the config read from a file at
// start-up, e.g. one written by
//
//	curl -H "Authorization: Bearer $FLYWHEEL_SDK_KEY" $FLYWHEEL_URL/v1/sdk/config > flywheel-config.json
//
// A file that cannot be read, parsed or compiled makes New fail.
// Default: none.
func WithBootstrapFile(path string) Option {
	return func(o *options) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read bootstrap: %w", err)
		}
		o.bootstrap, o.bootstrapName = b, "bootstrap file "+path
		return nil
	}
}

// WithHTTPClient sets the HTTP client for config fetches and event
// delivery. Its Timeout bounds each request. Default: an http.Client with a
// 10 s timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("http client is nil")
		}
		o.httpClient = c
		return nil
	}
}

// WithLogger sets the logger for config changes, fetch and delivery
// failures and dropped events: one line per batch or fetch, never per event,
// and never a unit id or the key. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.logger = l
		}
		return nil
	}
}

// WithBatchSize sets how many events one request carries at most (and how
// many queued events trigger a send before the flush interval). It is capped
// at 10,000 (the server's limit) and at the buffer size; a batch also stays
// under 4 MiB. Default: 500.
func WithBatchSize(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("batch size %d is not positive", n)
		}
		o.batchSize = min(n, maxBatchEvents)
		return nil
	}
}

// WithFlushInterval sets how long an event may wait for its batch to fill
// before it is sent anyway. Default: 2 s.
func WithFlushInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("flush interval %v is not positive", d)
		}
		o.flushInterval = d
		return nil
	}
}

// WithBufferSize bounds the events waiting to be sent. When it is full, a
// new event pushes out the oldest waiting one, which is counted in
// Stats.Dropped and Stats.Overflowed; the first one is logged (a warning),
// then no other until the server has taken a batch again. A batch being
// sent or retried (at most the batch size) is held apart from the buffer
// until the server answers. So however long the server is away, the client
// holds at most buffer size + batch size events, and delivers each of them
// once it is back. Default: 10,000.
func WithBufferSize(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("buffer size %d is not positive", n)
		}
		o.bufferSize = n
		return nil
	}
}

// WithRetryBackoff sets the exponential backoff between attempts to send a
// batch after a network error, a 429 or a 5xx: the n-th wait is drawn from
// [b/2, b) with b = min(max, min·2ⁿ⁻¹), and is never shorter than the
// server's Retry-After (capped at 5 minutes). Failed batches are retried
// until they are delivered or Close gives up. Default: 1 s and 30 s.
func WithRetryBackoff(minWait, maxWait time.Duration) Option {
	return func(o *options) error {
		if minWait <= 0 || maxWait < minWait {
			return fmt.Errorf("retry backoff [%v, %v] is not a positive range", minWait, maxWait)
		}
		o.backoffMin, o.backoffMax = minWait, maxWait
		return nil
	}
}

// WithExposureLogging turns the exposures that Assign logs on or off. On,
// the first enrolled assignment of each unit to each experiment (per
// process, per variant) queues one exposure event. Default: on.
func WithExposureLogging(on bool) Option {
	return func(o *options) error {
		o.exposures = on
		return nil
	}
}

// WithExposureCacheSize bounds the cache that remembers which (experiment,
// unit) pairs already had their exposure logged: a fixed table of n
// 64-bit hashes (8 bytes each, rounded up to a power of two), allocated
// once. When it is full, an old entry is evicted (Stats.CacheEvictions) and
// that pair's next assignment logs its exposure again; the server keeps the
// first. Default: 65,536 (512 KiB).
func WithExposureCacheSize(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("exposure cache size %d is not positive", n)
		}
		o.cacheSize = n
		return nil
	}
}

// WithStickyUnits bounds the memory of the arms units were first given in
// bandit experiments (whose weights move; a unit keeps its first arm for
// the process's lifetime): at most n (experiment, unit) pairs. Past it,
// new units are assigned by the current weights without being remembered
// (Stats.StickyFull). Default: 1,048,576 (about 100 MiB at its fullest).
func WithStickyUnits(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("sticky units %d is not positive", n)
		}
		o.stickyUnits = n
		return nil
	}
}

// WithConsent sets a hook that reports whether a unit consents to
// analytics. A unit for which it returns false (or whose OptedOut is set) is
// never enrolled (reason "opted_out") and nothing about it is sent: no
// exposure, no Track, no Identify. It is called on every Assign, from many
// goroutines at once, and must be fast. Default: every unit consents unless
// Unit.OptedOut is set.
func WithConsent(consents func(Unit) bool) Option {
	return func(o *options) error {
		o.consent = consents
		return nil
	}
}

// WithStreaming turns the config stream on or off. On, once the first
// config is loaded, the client keeps GET /v1/sdk/stream (Server-Sent
// Events) open and installs each new config the moment the server pushes
// it; when the stream cannot be opened or breaks (a server without it, a
// proxy that cuts or buffers long answers), the client polls GET
// /v1/sdk/config at the poll interval and tries the stream again with a
// backoff. Off, it only polls. Either way it never replaces its config by
// one of an older revision. Default: on.
func WithStreaming(on bool) Option {
	return func(o *options) error {
		o.streaming = on
		return nil
	}
}

// WithStreamIdleTimeout sets how long the config stream may stay silent
// before the client drops it and polls: the server sends a heartbeat every
// 20 s, so silence means a dead connection or a proxy that buffers. The
// first line after connecting must come within min(d, 10 s). Default: 60 s.
func WithStreamIdleTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("stream idle timeout %v is not positive", d)
		}
		o.streamIdle = d
		return nil
	}
}

// Config is what every client needs: where the server is and the SDK key.
// Everything else is an Option with a default.
type Config struct {
	// URL is the server's base URL, e.g. https://flywheel.example.com; ""
	// runs the client offline (bootstrap config only, nothing sent).
	URL string
	// Key is an API key with the sdk scope.
	Key string
}
