package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// With several servers, any of them may run an aggregation cycle (the
// advisory lock aggLock keeps it to one at a time), but each keeps copies
// that only its own cycles keep current: its definitions' unit rows
// (unitCache), its filters of linked ids and of tracked days. A cycle of
// another server moves the definitions' epochs on and breaks the filters'
// chains of cycles, and the next cycle of this one drops or rebuilds them
// and reads every unit it needs again. Servers that took turns, as they
// would each ticking on its own, would each work without their copies.
//
// So each cycle that ends well records its server and the time in
// agg_leader, and a server's background aggregator runs a cycle only when
// it ran the last one, or when the last one ended longer ago than a
// takeover time (the server that ran it has stopped, or is stuck: a long
// cycle holds the lock meanwhile, and ends with a record). It asks before
// it tries the lock, and again once it holds it (AggregateUnlessLed). A server that
// closes gives the lead up at once. Erasures and consent changes, which
// take the lock themselves, are not affected.

// newServerID is a server's name in agg_leader: random, for its lifetime.
func newServerID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// recordLead records that this server's cycle ended now, on conn (which
// holds the aggregation lock).
func (db *DB) recordLead(ctx context.Context, conn *pgxpool.Conn) error {
	_, err := conn.Exec(ctx, `INSERT INTO agg_leader (id, server, at) VALUES (1, $1, clock_timestamp())
		ON CONFLICT (id) DO UPDATE SET server = EXCLUDED.server, at = EXCLUDED.at`, db.server)
	return err
}

// AggregationLed says whether another server leads aggregation: it ran
// the last cycle, which ended less than takeover ago. A background
// aggregator leaves the cycle to it then (see above).
func (db *DB) AggregationLed(ctx context.Context, takeover time.Duration) (bool, error) {
	led, err := db.led(ctx, db.pool, takeover)
	return led, translate("aggregation leader", err)
}

// led is AggregationLed on q.
func (db *DB) led(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, takeover time.Duration) (bool, error) {
	var led bool
	err := q.QueryRow(ctx, `SELECT COALESCE((SELECT server <> $1 AND at > clock_timestamp() - make_interval(secs => $2) FROM agg_leader WHERE id = 1), false)`,
		db.server, takeover.Seconds()).Scan(&led)
	return led, err
}

// ResignAggregation gives the lead up, if this server has it, so that
// another server's next tick runs the cycles. A server that is closing
// calls it.
func (db *DB) ResignAggregation(ctx context.Context) error {
	_, err := db.pool.Exec(ctx, `UPDATE agg_leader SET at = '-infinity' WHERE id = 1 AND server = $1`, db.server)
	return translate("aggregation leader", err)
}
