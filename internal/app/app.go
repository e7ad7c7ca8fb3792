// Package app assembles a running flywheel from a migrated database: the
// store, the live configuration, consent, event partitions, the ingester
// and the HTTP handler, with their background loops. cmd/flywheel serves
// it; tests in any package run the same stack in process (httptest), so
// what they test is what ships.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/api"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/live"
	"github.com/flywheel-oss/flywheel/migrations"
	"github.com/flywheel-oss/flywheel/store"
	"github.com/flywheel-oss/flywheel/web"
)

// Config is what the app needs; cmd/flywheel fills it from the environment.
type Config struct {
	DatabaseURL   string // migrated already
	InitAdminKey  string
	InitSDKKey    string
	Logger        *slog.Logger         // nil discards
	Registry      *prometheus.Registry // nil = a new one
	ConfigPoll    time.Duration        // 0 = 2 s
	MaxConns      int                  // 0 = 32
	IDHMACKey     string
	RetentionDays int // 0 keeps events forever
	IngestWriters int // 0 = 2
	IngestQueue   int // 0 = 200,000 events
	// AggregateEvery is how often results aggregates fold in new events
	// (0 = 1 s; negative = never in the background: call App.Aggregate).
	AggregateEvery time.Duration
	// EraseWait is how long an erasure request waits for a running
	// aggregation cycle before it answers 202 and finishes in the
	// background (0 = 10 s).
	EraseWait time.Duration
	// StreamHeartbeat, StreamWriteTimeout, MaxStreams and MaxStreamsPerKey
	// are api.Deps' (0 = its defaults).
	StreamHeartbeat, StreamWriteTimeout time.Duration
	MaxStreams, MaxStreamsPerKey        int
	// BanditEvery is how often bandit experiments are checked for a due
	// weight update (0 = 1 min; negative = never in the background: call
	// App.UpdateBandits).
	BanditEvery time.Duration
}

// App is a running flywheel without its listener.
type App struct {
	DB       *store.DB
	Live     *live.Registry
	OptOuts  *ingest.OptOuts
	Ingester *ingest.Ingester
	Handler  http.Handler
	// API is Handler as the API server, for CloseStreams on shutdown.
	API      *api.Server
	log      *slog.Logger
	agg      *aggregator
	migrated atomic.Bool // every migration was seen applied
	stop     context.CancelFunc
	wg       sync.WaitGroup
	closed   sync.Once
}

// New opens the database and starts everything but the listener.
func New(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.ConfigPoll <= 0 {
		cfg.ConfigPoll = 2 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 32
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{MaxConns: int32(cfg.MaxConns)})
	if err != nil {
		return nil, err
	}
	a := &App{DB: db, log: cfg.Logger}
	if err := a.start(ctx, cfg); err != nil {
		db.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) start(ctx context.Context, cfg Config) error {
	for _, k := range []struct {
		secret, env string
		scope       flywheel.Scope
	}{{cfg.InitAdminKey, "FLYWHEEL_INIT_ADMIN_KEY", flywheel.ScopeAdmin}, {cfg.InitSDKKey, "FLYWHEEL_INIT_SDK_KEY", flywheel.ScopeSDK}} {
		if k.secret != "" {
			if err := a.DB.EnsureKey(ctx, "init-"+string(k.scope), k.scope, k.secret); err != nil {
				return fmt.Errorf("%s: %w", k.env, err)
			}
		}
	}
	a.Live = live.New(a.DB)
	if err := a.Live.Refresh(ctx); err != nil {
		return fmt.Errorf("load experiments: %w", err)
	}
	a.OptOuts = ingest.NewOptOuts(a.DB)
	if err := a.OptOuts.Refresh(ctx); err != nil {
		return fmt.Errorf("load consent: %w", err)
	}
	// Partitions exist before the first event arrives; then hourly.
	a.maintainPartitions(ctx, cfg.RetentionDays)

	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = stop
	a.loop(bg, cfg.ConfigPoll, func(ctx context.Context) {
		if err := a.Live.Refresh(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("config poll failed", "err", err)
		}
		if err := a.OptOuts.Refresh(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("consent poll failed", "err", err)
		}
	})
	// Changes made through other processes arrive at once by NOTIFY; the
	// poll above stays as the fallback while the listener is down.
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.listenConfig(bg)
	}()
	a.loop(bg, time.Hour, func(ctx context.Context) { a.maintainPartitions(ctx, cfg.RetentionDays) })
	// Erasures that could not start at once (a long aggregation cycle held
	// the lock) are finished here, each as soon as the cycle ends.
	a.loop(bg, time.Second, func(ctx context.Context) {
		if n, err := a.DB.RunPendingErasures(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("pending erasures", "err", err)
		} else if n > 0 {
			a.log.Info("pending erasures done", "erasures", n)
		}
	})
	a.agg = newAggregator(a, cfg.Registry)
	if cfg.AggregateEvery == 0 {
		cfg.AggregateEvery = time.Second
	}
	if cfg.AggregateEvery > 0 {
		a.agg.takeover = aggregationTakeover(cfg.AggregateEvery)
		a.loop(bg, cfg.AggregateEvery, a.agg.run)
	}

	if cfg.BanditEvery == 0 {
		cfg.BanditEvery = time.Minute
	}
	if cfg.BanditEvery > 0 {
		a.loop(bg, cfg.BanditEvery, func(ctx context.Context) {
			if _, err := a.UpdateBandits(ctx, time.Now()); err != nil && ctx.Err() == nil {
				a.log.Warn("bandit updates", "err", err)
			}
		})
	}

	a.Ingester = ingest.New(a.DB, ingest.Options{MaxQueuedEvents: cfg.IngestQueue, Writers: cfg.IngestWriters, Registry: cfg.Registry})
	url := cfg.DatabaseURL
	a.API = api.NewServer(api.Deps{
		Store:              a.DB,
		Live:               a.Live,
		Units:              a.DB,
		Results:            a.DB,
		Ingest:             a.Ingester,
		Validator:          &ingest.Validator{IDs: ingest.NewPseudonymizer(cfg.IDHMACKey)},
		OptOuts:            a.OptOuts,
		EraseWait:          cfg.EraseWait,
		UI:                 web.Handler(),
		Logger:             cfg.Logger,
		Registry:           cfg.Registry,
		StreamHeartbeat:    cfg.StreamHeartbeat,
		StreamWriteTimeout: cfg.StreamWriteTimeout,
		MaxStreams:         cfg.MaxStreams,
		MaxStreamsPerKey:   cfg.MaxStreamsPerKey,
		Ready: func(ctx context.Context) error {
			// Applied migrations stay applied: once seen, /readyz stops
			// opening a connection to ask again.
			if a.migrated.Load() {
				return nil
			}
			pending, err := migrations.Pending(ctx, url)
			if err == nil && pending {
				err = errors.New("migrations pending")
			}
			a.migrated.Store(err == nil)
			return err
		},
	})
	a.Handler = a.API
	return nil
}

// Backoff of the config listener's reconnections.
const (
	listenBackoffMin = time.Second
	listenBackoffMax = 30 * time.Second
)

// listenConfig follows the configuration changes announced by NOTIFY
// (store.ConfigChannel), from this process or any other on the database,
// and refreshes the live configuration on each, until ctx ends. On every
// (re)connection it refreshes once, for the changes made while no one
// listened; a lost connection is retried with a backoff, the config poll
// covering the gap.
func (a *App) listenConfig(ctx context.Context) {
	wait := listenBackoffMin
	for {
		start := time.Now()
		err := a.DB.ListenConfig(ctx, func() {
			if err := a.Live.Refresh(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("config refresh failed", "err", err)
			}
		}, func(rev int64) {
			if cur := a.Live.Current(); cur != nil && cur.Revision >= rev {
				return // this process made the change and refreshed already
			}
			if err := a.Live.Refresh(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("config refresh failed", "err", err)
			}
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > listenBackoffMax {
			wait = listenBackoffMin // it worked for a while
		}
		a.log.Warn("config change listener failed; polling until it is back", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, listenBackoffMax)
	}
}

// loop runs fn every interval until ctx ends.
func (a *App) loop(ctx context.Context, every time.Duration, fn func(context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
}

// maintainPartitions creates the daily event partitions ahead of time and
// enforces retention.
func (a *App) maintainPartitions(ctx context.Context, retentionDays int) {
	now := time.Now()
	if created, err := a.DB.EnsurePartitions(ctx, now, 2, 7); err != nil {
		a.log.Warn("event partitions", "err", err)
	} else if len(created) > 0 {
		a.log.Info("event partitions created", "partitions", created)
	}
	if retentionDays > 0 {
		if dropped, err := a.DB.DropPartitionsBefore(ctx, now.AddDate(0, 0, -retentionDays)); err != nil {
			a.log.Warn("event retention", "err", err)
		} else if len(dropped) > 0 {
			a.log.Info("event partitions dropped", "partitions", dropped, "retention_days", retentionDays)
		}
	}
}

// Close commits every queued event, stops the background loops and closes
// the database. Call it after the HTTP server has finished its requests.
func (a *App) Close(ctx context.Context) error {
	var err error
	a.closed.Do(func() {
		if a.Ingester != nil {
			if e := a.Ingester.Close(ctx); e != nil {
				err = fmt.Errorf("flush events: %w", e)
			}
		}
		if a.stop != nil {
			a.stop()
		}
		a.wg.Wait()
		// Another server's aggregator takes over at its next tick (or
		// after the takeover time, if this fails: nothing is lost).
		if e := a.DB.ResignAggregation(ctx); e != nil {
			a.log.Warn("could not give the aggregation lead up", "err", e)
		}
		a.DB.Close()
	})
	return err
}
