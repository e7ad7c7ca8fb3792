// Package sdk is the Go client that applications embed to run Flywheel
// experiments: it assigns units to variants locally, from a compiled copy of
// the server's configuration, and sends exposures and events back in
// batches. It must not import gin, gorm, a database driver or the server's
// packages (api, store, ingest, live, internal): imports_test.go guards the
// edge. Assignment itself is package assign, shared with the server, so the
// SDK and POST /v1/assign always agree (assign/testdata/vectors.json pins
// both).
//
// # Quick start
//
//	c, err := sdk.New(ctx, sdk.Config{URL: "https://flywheel.example.com", Key: os.Getenv("FLYWHEEL_SDK_KEY")},
//		sdk.WithBootstrapFile("flywheel-config.json"), // optional
//		sdk.WithLogger(slog.Default()))
//	if err != nil {
//		return err // invalid options only; never "server unreachable"
//	}
//	defer c.Close(context.Background())
//
//	u := sdk.Unit{CustomerID: "c-42", Attributes: map[string]any{"country": "FR"}}
//	a := c.Assign(ctx, u, "checkout-button") // logs one exposure per unit and experiment
//	if a.Variant == "green" { ... }
//	c.Track(ctx, u, "purchase", 59.90, nil)
//
// # Start-up and bootstrapping
//
// New fetches GET /v1/sdk/config and waits for it at most the start-up
// timeout (WithStartupTimeout, default 2 s, bounded also by New's ctx). If
// no config arrives in time, New still returns a working client: it assigns
// from the bootstrap config when one was given (WithBootstrap,
// WithBootstrapFile: the body of GET /v1/sdk/config saved earlier), and
// otherwise assigns nobody (reason "no_config"), while the background poller
// keeps trying. New returns an error only for invalid options, never because
// the server is unreachable; Ready reports whether a config from the server
// has been loaded and EnsureLoaded waits for one. An empty URL runs the
// client offline: it assigns from the bootstrap and sends nothing.
//
// # How fast a change reaches an app
//
// After the first config, the client keeps the server's config stream open
// (GET /v1/sdk/stream, Server-Sent Events, resumed with Last-Event-ID) and
// installs each config the server pushes: a change reaches the app the
// moment the server has it, from any server process on the database (they
// tell one another by PostgreSQL NOTIFY). When the stream cannot be opened
// or breaks (a server without it, a proxy that cuts, buffers or replaces
// long answers, a silence longer than WithStreamIdleTimeout), the client
// falls back to polling and tries the stream again with a backoff
// (WithStreaming turns the stream off).
//
// The poller asks for the config every poll interval plus a random jitter of
// up to a tenth of it (WithPollInterval, default 30 s: at most 33 s), with
// If-None-Match so an unchanged config costs a 304. So without the stream a
// change reaches the app within poll interval + jitter + one request. When
// a fetch fails or the config does not compile, the client keeps its last
// good config, and it never replaces its config by one of an older revision
// (a lagging replica; Stats.ConfigStale counts them).
//
// # Events
//
// Exposures, Track and Identify events are recorded by the app's call (its
// fields and time, copied into the buffer) and turned into JSON by the
// background goroutine, which gives each a time-ordered UUIDv7 id (of the
// time it was recorded) when it first goes out; every retry sends the same
// id, so the server stores each event exactly once. They wait in a
// bounded buffer (WithBufferSize) that drops the oldest event when full
// (counted in Stats, logged once until the server takes events again), so
// a server away for hours costs the app at most the buffer and one batch
// of memory. They go out in batches
// (WithBatchSize, WithFlushInterval) from one background goroutine; failures (network
// errors, 429, 5xx) are retried with exponential backoff and jitter,
// honouring Retry-After. Assign, Track and Identify never wait for the
// network. Stats counts what happened to every event; Close flushes.
//
// # Privacy
//
// A unit that did not consent (Unit.OptedOut, or a WithConsent hook
// returning false) is never enrolled (reason "opted_out") and nothing about
// it is sent. Neither is a unit opted out on the server (PUT
// /v1/units/{unit_type}/{unit_id}/consent), even after it was erased: with
// each config fetch the client reads the changes of the server's opt-outs
// from GET /v1/sdk/opt-outs, as tokens (assign.OptOutToken, a 64-bit
// SHA-256 prefix of the unit type and raw id), never as ids, and checks a
// unit's token when it is assigned or tracked. A change reaches the client
// with the next config poll (WithPollInterval) or Refresh; until the first
// one, and on a server without the feed, only the app's own consent
// applies, and the server still drops an opted-out unit's events on
// arrival. Logs never contain unit ids or the key.
package sdk
