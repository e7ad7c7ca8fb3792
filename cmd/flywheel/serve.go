package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flywheel-oss/flywheel/internal/app"
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fw, err := app.New(ctx, app.Config{
		DatabaseURL:    url,
		InitAdminKey:   cfg.InitAdminKey,
		InitSDKKey:     cfg.InitSDKKey,
		Logger:         log,
		Registry:       reg,
		ConfigPoll:     cfg.ConfigPoll,
		MaxConns:       cfg.MaxConns,
		IDHMACKey:      cfg.IDHMACKey,
		RetentionDays:  cfg.RetentionDays,
		IngestWriters:  cfg.IngestWriters,
		IngestQueue:    cfg.IngestQueue,
		AggregateEvery: cfg.AggregateEvery,
	})
	if err != nil {
		return err
	}
	defer fw.Close(context.WithoutCancel(ctx)) // on early returns; idempotent
	srv := &http.Server{
		Handler:           fw.Handler,
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
	if err := fw.Close(sctx); err != nil {
		return err
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	log.Info("stopped")
	return nil
}
