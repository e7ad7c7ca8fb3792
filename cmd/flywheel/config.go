package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"github.com/flywheel-oss/flywheel/ingest"
)

// config is every setting of the server: defaults, then FLYWHEEL_* and
// DATABASE_URL from the environment, then flags.
type config struct {
	Addr            string
	DatabaseURL     string
	DataDir         string
	InitAdminKey    string
	InitSDKKey      string
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	ConfigPoll      time.Duration
	MaxConns        int
	IDHMACKey       string
	RetentionDays   int
	IngestWriters   int
	IngestQueue     int
	AggregateEvery  time.Duration
}

func loadConfig(getenv func(string) string) config {
	c := config{
		Addr:            "127.0.0.1:8080",
		LogLevel:        "info",
		LogFormat:       "json",
		ShutdownTimeout: 20 * time.Second,
		ConfigPoll:      2 * time.Second,
		MaxConns:        32,
		IngestWriters:   2,
		IngestQueue:     200_000,
		AggregateEvery:  time.Second,
	}
	str := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	str(&c.Addr, "FLYWHEEL_ADDR")
	str(&c.DatabaseURL, "DATABASE_URL")
	str(&c.DataDir, "FLYWHEEL_DATA_DIR")
	str(&c.InitAdminKey, "FLYWHEEL_INIT_ADMIN_KEY")
	str(&c.InitSDKKey, "FLYWHEEL_INIT_SDK_KEY")
	str(&c.LogLevel, "FLYWHEEL_LOG_LEVEL")
	str(&c.LogFormat, "FLYWHEEL_LOG_FORMAT")
	dur := func(dst *time.Duration, name string) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				d = -1 // reported by Validate
			}
			*dst = d
		}
	}
	dur(&c.ShutdownTimeout, "FLYWHEEL_SHUTDOWN_TIMEOUT")
	dur(&c.ConfigPoll, "FLYWHEEL_CONFIG_POLL")
	dur(&c.AggregateEvery, "FLYWHEEL_AGGREGATE_EVERY")
	num := func(dst *int, name string) {
		if v := getenv(name); v != "" {
			if _, err := fmt.Sscan(v, dst); err != nil {
				*dst = -1 // reported by Validate
			}
		}
	}
	num(&c.MaxConns, "FLYWHEEL_DB_MAX_CONNS")
	num(&c.RetentionDays, "FLYWHEEL_RETENTION_DAYS")
	num(&c.IngestWriters, "FLYWHEEL_INGEST_WRITERS")
	num(&c.IngestQueue, "FLYWHEEL_INGEST_QUEUE")
	str(&c.IDHMACKey, "FLYWHEEL_ID_HMAC_KEY")
	return c
}

// Validate reports every problem at once.
func (c config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: want host:port", c.Addr))
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		errs = append(errs, errors.New("DATABASE_URL must be a postgres:// URL"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("FLYWHEEL_LOG_LEVEL %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("FLYWHEEL_LOG_FORMAT %q: want json or text", c.LogFormat))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("FLYWHEEL_SHUTDOWN_TIMEOUT must be a positive duration such as 20s"))
	}
	if c.ConfigPoll <= 0 {
		errs = append(errs, errors.New("FLYWHEEL_CONFIG_POLL must be a positive duration such as 2s"))
	}
	if c.AggregateEvery <= 0 {
		errs = append(errs, errors.New("FLYWHEEL_AGGREGATE_EVERY must be a positive duration such as 1s"))
	}
	if c.MaxConns < 1 {
		errs = append(errs, errors.New("FLYWHEEL_DB_MAX_CONNS must be a whole number >= 1"))
	}
	if c.RetentionDays < 0 {
		errs = append(errs, errors.New("FLYWHEEL_RETENTION_DAYS must be a whole number of days (0 keeps events forever)"))
	}
	if c.IngestWriters < 1 || c.IngestWriters > 64 {
		errs = append(errs, errors.New("FLYWHEEL_INGEST_WRITERS must be from 1 to 64"))
	}
	if c.IngestQueue < MaxEventsPerRequest {
		errs = append(errs, fmt.Errorf("FLYWHEEL_INGEST_QUEUE must be at least %d events", MaxEventsPerRequest))
	}
	if c.IDHMACKey != "" && len(c.IDHMACKey) < 32 {
		errs = append(errs, errors.New("FLYWHEEL_ID_HMAC_KEY must be at least 32 characters"))
	}
	for _, k := range []struct{ name, v string }{{"FLYWHEEL_INIT_ADMIN_KEY", c.InitAdminKey}, {"FLYWHEEL_INIT_SDK_KEY", c.InitSDKKey}} {
		if k.v != "" && len(k.v) < 16 {
			errs = append(errs, fmt.Errorf("%s must be at least 16 characters", k.name))
		}
	}
	return errors.Join(errs...)
}

// MaxEventsPerRequest is the most events one POST /v1/events may carry.
const MaxEventsPerRequest = ingest.MaxEvents

func (c config) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
