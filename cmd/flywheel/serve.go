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
	return serveApp(ctx, cfg, cfg.logger(stderr), func(_ context.Context, addr string, _ *app.App) error {
		if listening != nil {
			listening(addr)
		}
		return nil
	})
}

// serveApp runs the service of cfg until ctx ends, then shuts down
// gracefully. started, when not nil, runs beside the server once it
// listens, with the bound address and the app; if it fails, the server
// shuts down and serveApp returns its error. Shutdown cancels the context
// it was given and waits for it to return.
func serveApp(ctx context.Context, cfg config, log *slog.Logger, started func(ctx context.Context, addr string, fw *app.App) error) error {
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
	// SDK config streams end when the shutdown starts; clients reconnect.
	srv.RegisterOnShutdown(fw.API.CloseStreams)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("flywheel listening", "addr", ln.Addr().String(), "version", version())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var startedc chan error
	sctx, cancelStarted := context.WithCancel(ctx)
	defer cancelStarted()
	if started != nil {
		startedc = make(chan error, 1)
		go func() { startedc <- started(sctx, ln.Addr().String(), fw) }()
	}

	var runErr error
wait:
	for {
		select {
		case err := <-errc:
			runErr = fmt.Errorf("serve: %w", err)
			break wait
		case err := <-startedc:
			startedc = nil
			if err != nil && ctx.Err() == nil {
				runErr = err
				break wait
			}
		case <-ctx.Done():
			break wait
		}
	}
	cancelStarted()
	if startedc != nil {
		<-startedc
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(tctx)
	// In-flight requests are answered; commit whatever is still queued.
	if err := fw.Close(tctx); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	log.Info("stopped")
	return nil
}
