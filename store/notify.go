package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// ConfigChannel is the PostgreSQL notification channel on which every
// configuration change is announced, with the new revision as payload,
// when its transaction commits: other flywheel processes on the database
// listen to it (ListenConfig) and pick the change up at once instead of at
// their next poll.
const ConfigChannel = "flywheel_config"

// notifyRevision announces rev on ConfigChannel inside tx: PostgreSQL
// delivers it at commit, and never for a transaction that rolls back.
func notifyRevision(tx *gorm.DB, rev int64) error {
	return tx.Exec(`SELECT pg_notify(?, ?)`, ConfigChannel, strconv.FormatInt(rev, 10)).Error
}

// ListenConfig listens on ConfigChannel on a connection of its own (not
// one of the pool's) and calls changed with each announced revision until
// ctx ends or the connection fails; it returns that error (ctx's when ctx
// ended). ready, when not nil, is called once the LISTEN is in place: a
// change committed after it is announced. Callers run it in a loop and
// re-read the configuration after each (re)connection, for the changes
// made while no one listened.
func (db *DB) ListenConfig(ctx context.Context, ready func(), changed func(rev int64)) error {
	conn, err := pgxConnect(ctx, db)
	if err != nil {
		return fmt.Errorf("store: listen for config changes: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+ConfigChannel); err != nil {
		return fmt.Errorf("store: listen for config changes: %w", err)
	}
	if ready != nil {
		ready()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("store: listen for config changes: %w", err)
		}
		rev, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			continue // not ours
		}
		changed(rev)
	}
}

// pgxConnect opens a connection outside the pool, with the pool's settings.
func pgxConnect(ctx context.Context, db *DB) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
}
