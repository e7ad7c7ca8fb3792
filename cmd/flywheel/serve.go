package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/api"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/live"
	"github.com/flywheel-oss/flywheel/migrations"
	"github.com/flywheel-oss/flywheel/store"
)

// runServe runs the HTTP service until ctx ends, then shuts down gracefully:
// stop accepting, finish in-flight requests, close the database, stop the
// embedded cluster. listening, when not nil, receives the bound address
// (tests serve on 127.0.0.1:0).
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, listening func(addr string)) error {
	cfg := loadConfig(getenv)
	fs := newFlagSet("serve", stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (env FLYWHEEL_ADDR)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.logger(stderr)

	url, stopDB, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopDB()
	db, err := store.Open(ctx, url, store.Options{MaxConns: int32(cfg.MaxConns)})
	if err != nil {
		return err
	}
	defer db.Close()
	for _, k := range []struct {
		secret string
		scope  flywheel.Scope
	}{{cfg.InitAdminKey, flywheel.ScopeAdmin}, {cfg.InitSDKKey, flywheel.ScopeSDK}} {
		if k.secret != "" {
			if err := db.EnsureKey(ctx, "init-"+string(k.scope), k.scope, k.secret); err != nil {
				return fmt.Errorf("FLYWHEEL_INIT_%s_KEY: %w", map[flywheel.Scope]string{flywheel.ScopeAdmin: "ADMIN", flywheel.ScopeSDK: "SDK"}[k.scope], err)
			}
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registry := live.New(db)
	if err := registry.Refresh(ctx); err != nil {
		return fmt.Errorf("load experiments: %w", err)
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	go registry.Run(bg, cfg.ConfigPoll, func(err error) { log.Warn("config poll failed", "err", err) })

	optOuts := ingest.NewOptOuts(db)
	if err := optOuts.Refresh(ctx); err != nil {
		return fmt.Errorf("load consent: %w", err)
	}
	go optOuts.Run(bg, cfg.ConfigPoll, func(err error) { log.Warn("consent poll failed", "err", err) })
	// Partitions exist before the first event arrives; then hourly.
	maintainPartitions(ctx, db, cfg.RetentionDays, log)
	go func() {
		for {
			select {
			case <-bg.Done():
				return
			case <-time.After(time.Hour):
				maintainPartitions(bg, db, cfg.RetentionDays, log)
			}
		}
	}()
	ingester := ingest.New(db, ingest.Options{MaxQueuedEvents: cfg.IngestQueue, Writers: cfg.IngestWriters, Registry: reg})

	handler := api.NewServer(api.Deps{
		Store:     db,
		Live:      registry,
		Units:     db,
		Ingest:    ingester,
		Validator: &ingest.Validator{IDs: ingest.NewPseudonymizer(cfg.IDHMACKey)},
		OptOuts:   optOuts,
		Logger:    log,
		Registry:  reg,
		Ready: func(ctx context.Context) error {
			pending, err := migrations.Pending(ctx, url)
			if err == nil && pending {
				err = errors.New("migrations pending")
			}
			return err
		},
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("flywheel listening", "addr", ln.Addr().String(), "version", version())
	if listening != nil {
		listening(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	// In-flight requests are answered; commit whatever is still queued.
	if err := ingester.Close(sctx); err != nil {
		return fmt.Errorf("flush events: %w", err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	stopBG()
	log.Info("stopped")
	return nil
}

// maintainPartitions creates the daily event partitions ahead of time and
// enforces retention.
func maintainPartitions(ctx context.Context, db *store.DB, retentionDays int, log *slog.Logger) {
	now := time.Now()
	if created, err := db.EnsurePartitions(ctx, now, 2, 7); err != nil {
		log.Warn("event partitions", "err", err)
	} else if len(created) > 0 {
		log.Info("event partitions created", "partitions", created)
	}
	if retentionDays > 0 {
		if dropped, err := db.DropPartitionsBefore(ctx, now.AddDate(0, 0, -retentionDays)); err != nil {
			log.Warn("event retention", "err", err)
		} else if len(dropped) > 0 {
			log.Info("event partitions dropped", "partitions", dropped, "retention_days", retentionDays)
		}
	}
}
