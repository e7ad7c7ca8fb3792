// Package store keeps flywheel's state in PostgreSQL: definitions through
// gorm with private row types, and (for events) COPY through pgx directly.
// It maps driver errors to flywheel errors by type and code, never by
// message text. It does not log; it returns errors with context.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/flywheel-oss/flywheel"
)

// DB is flywheel's PostgreSQL storage. One pgx pool serves both gorm (through
// database/sql) and the raw pgx paths; the aggregator has a small pool of
// its own (see Open).
type DB struct {
	pool   *pgxpool.Pool
	agg    *pgxpool.Pool // the aggregator's: its lock's connection and its folds'
	sql    *sql.DB
	gorm   *gorm.DB
	clock  flywheel.Clock
	units  *unitCache         // the aggregator's copy of unit rows (store/aggregate_fold.go)
	pages  *pageUpdates       // the folds' updates per page of agg_units (store/aggregate_pages.go)
	links  *linkFilter        // the unit ids that may have an identity link (store/aggregate_links.go)
	tracks *trackFilter       // the days on which unit ids may have track events (store/aggregate_tracked.go)
	stop   context.CancelFunc // stops the store's background work (a track filter's build)
	server string             // this server's name in agg_leader (store/aggregate_leader.go)
}

// Compile-time checks that DB is every store the centre declares.
var (
	_ flywheel.ExperimentStore = (*DB)(nil)
	_ flywheel.MetricStore     = (*DB)(nil)
	_ flywheel.KeyStore        = (*DB)(nil)
)

// Options tune Open.
type Options struct {
	MaxConns int32          // pool size; 0 = pgx default (max(4, cores)); the aggregator's pool adds 1 + min(cores, MaxConns-2) (at least 1)
	Clock    flywheel.Clock // nil = time.Now
}

// Open connects to the database at url. It does not migrate.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "flywheel"
	// The aggregator's per-cycle temporary tables hold up to a few hundred
	// thousand rows; the default 8MB of temporary buffers spills them.
	cfg.ConnConfig.RuntimeParams["temp_buffers"] = "32MB"
	// JIT compiles the aggregator's statements for ~0.6 s each (their
	// estimates are large) to save milliseconds; flywheel's statements are
	// short or bounded.
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	// The aggregator's connections live as long as the process. A backend
	// pays for its first touch of each page of the shared buffers: a page
	// fault per 4 kB, about 9 µs each on this project's 2-core VMs, so that
	// a new connection's first 8,000 primary-key probes in a table of 1M
	// rows take 4-5 times as long as from its third batch on. Folds on
	// whichever connection of the main pool was free paid that on every
	// backend of the pool, again each time pgxpool replaced one (hourly);
	// a few connections of their own, never replaced, pay it once. Huge
	// pages remove the cost itself (README, "Huge pages"; BENCHMARKS.md,
	// "A backend's first pages").
	acfg := cfg.Copy()
	acfg.MaxConns = 1 + int32(foldParallelism(cfg.MaxConns))
	acfg.MinConns, acfg.MinIdleConns = 0, 0
	acfg.MaxConnLifetime = 0              // never recycled for age
	acfg.MaxConnIdleTime = 24 * time.Hour // a cycle uses them every second or so
	acfg.ConnConfig.RuntimeParams["application_name"] = "flywheel aggregator"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	agg, err := pgxpool.NewWithConfig(ctx, acfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	g, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		TranslateError:         false,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		pool.Close()
		agg.Close()
		return nil, fmt.Errorf("store: gorm: %w", err)
	}
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	quit, stop := context.WithCancel(context.Background())
	return &DB{pool: pool, agg: agg, sql: sqlDB, gorm: g, clock: clock, units: &unitCache{}, pages: &pageUpdates{},
		links: newLinkFilter(), tracks: newTrackFilter(quit), stop: stop, server: newServerID()}, nil
}

// Close stops the store's background work and releases every connection.
func (db *DB) Close() {
	db.stop()
	db.tracks.wg.Wait()
	db.sql.Close()
	db.pool.Close()
	db.agg.Close()
}

// Pool returns the pgx pool, for the paths that use pgx directly.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return translate("ping", err)
	}
	return nil
}

func (db *DB) now() time.Time { return db.clock().UTC().Truncate(time.Microsecond) }

// tx runs fn in a transaction.
func (db *DB) tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return db.gorm.WithContext(ctx).Transaction(fn)
}

// bumpRevision increments the configuration revision inside tx and returns
// the new value, announced on ConfigChannel at commit. Every change that an
// SDK could see goes through it.
func bumpRevision(tx *gorm.DB) (int64, error) {
	var rev int64
	if err := tx.Raw(`UPDATE config_state SET revision = revision + 1 WHERE id = 1 RETURNING revision`).Scan(&rev).Error; err != nil {
		return 0, err
	}
	return rev, notifyRevision(tx, rev)
}

// lockRevision takes the configuration revision's row lock without moving
// the revision: a write that orders itself with the others but changes
// nothing an SDK or an assignment reads (an audience that nothing uses yet,
// or any more) leaves every SDK's config as it is.
func lockRevision(tx *gorm.DB) error {
	return tx.Exec(`SELECT revision FROM config_state WHERE id = 1 FOR UPDATE`).Error
}

// ConfigRevision returns the current configuration revision.
func (db *DB) ConfigRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := db.gorm.WithContext(ctx).Raw(`SELECT revision FROM config_state WHERE id = 1`).Scan(&rev).Error; err != nil {
		return 0, translate("config revision", err)
	}
	return rev, nil
}
