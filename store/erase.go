package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/flywheel-oss/flywheel"
)

// Erasure runs as a request: RequestErasure records it (durably, so it is
// carried out even if this process dies) and carries it out at once when
// it can take the aggregation lock within the caller's wait; otherwise it
// stays pending and RunPendingErasures (a background loop) carries it out
// as soon as the running aggregation cycle (e.g. the first build of a large
// experiment) ends. Either way a unit is erased in one transaction, never
// in part. A pending request holds the unit's stored id; a done one holds
// only the unit type and the counts.

// pgLockNotAvailable is lock_timeout expiring.
const pgLockNotAvailable = "55P03"

// EraseUnit deletes everything held about the unit and every id linked to
// it, in one transaction, and audits the counts (never the ids). It waits
// for a running aggregation cycle as long as ctx allows.
func (db *DB) EraseUnit(ctx context.Context, u flywheel.UnitRef, actor string) (flywheel.Erasure, error) {
	st, err := db.RequestErasure(ctx, u, actor, 0)
	if err != nil {
		return flywheel.Erasure{}, err
	}
	if st.Erased == nil {
		return flywheel.Erasure{}, flywheel.Errorf(flywheel.CodeUnavailable, "erase unit: erasure %s is still pending; retry", st.ID)
	}
	return *st.Erased, nil
}

// RequestErasure records the erasure of u and its linked ids, then carries
// it out if the aggregation lock can be had within wait (0: as long as ctx
// allows). It returns the request: done with its counts, or pending (to be
// finished by RunPendingErasures; FindErasure tells when).
func (db *DB) RequestErasure(ctx context.Context, u flywheel.UnitRef, actor string, wait time.Duration) (flywheel.ErasureStatus, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return flywheel.ErasureStatus{}, err
	}
	st := flywheel.ErasureStatus{ID: id.String(), Status: flywheel.ErasurePending, UnitType: u.UnitType, RequestedAt: db.now()}
	if _, err := db.pool.Exec(ctx, `INSERT INTO erasure_requests (id, unit_type, unit_id, actor, requested_at) VALUES ($1, $2, $3, $4, $5)`,
		id, u.UnitType, u.UnitID, actor, st.RequestedAt); err != nil {
		return st, translate("request erasure", err)
	}
	if _, err := db.runErasure(ctx, id, wait, false); err != nil {
		return st, err
	}
	// Done here, done by the background loop that claimed it first (this
	// call waited for it), or still pending (a lock not had within wait:
	// the loop finishes it): the stored request tells which.
	return db.FindErasure(ctx, st.ID)
}

// RunPendingErasures carries out every pending erasure request that no
// other process is working on, oldest first, each waiting for the
// aggregation lock as long as ctx allows, and returns how many it did.
func (db *DB) RunPendingErasures(ctx context.Context) (int, error) {
	rows, err := db.pool.Query(ctx, `SELECT id FROM erasure_requests WHERE done_at IS NULL ORDER BY requested_at`)
	if err != nil {
		return 0, translate("pending erasures", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return 0, translate("pending erasures", err)
	}
	n := 0
	for _, id := range ids {
		done, err := db.runErasure(ctx, id, 0, true)
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// runErasure carries out request id in one transaction: it claims the
// request, takes the aggregation lock within wait (0: no limit but ctx),
// erases, and marks the request done without the id. The background loop
// (skipLocked) skips a request another transaction holds; the request's
// own call waits for it within wait, so that a request the loop claimed
// first is answered done when the loop finishes in time. It reports false
// when the request was claimed elsewhere, already done, or a lock was not
// had in time.
func (db *DB) runErasure(ctx context.Context, id uuid.UUID, wait time.Duration, skipLocked bool) (bool, error) {
	done := false
	var forget func(*unitCache) // the erased units, for this process's unit copies
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if wait > 0 {
			if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", max(wait.Milliseconds(), 1))); err != nil {
				return err
			}
		}
		claim := `SELECT unit_type, unit_id, actor FROM erasure_requests WHERE id = $1 AND done_at IS NULL FOR UPDATE`
		if skipLocked {
			claim += ` SKIP LOCKED`
		}
		var u flywheel.UnitRef
		var actor string
		err := tx.QueryRow(ctx, claim, id).Scan(&u.UnitType, &u.UnitID, &actor)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		// Never interleave with an aggregation cycle (store/aggregate.go).
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(aggLock)); err != nil {
			return err
		}
		if wait > 0 {
			if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', '0', true)`); err != nil {
				return err
			}
		}
		n, f, err := db.erase(ctx, tx, u)
		if err != nil {
			return err
		}
		forget = f
		if err := audit(ctx, tx, actor, "erase_unit", map[string]any{"unit_type": u.UnitType, "erased": n}); err != nil {
			return err
		}
		counts, err := json.Marshal(n)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE erasure_requests SET unit_id = NULL, done_at = $2, erased = $3 WHERE id = $1`,
			id, db.now(), counts); err != nil {
			return err
		}
		done = true
		return nil
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgLockNotAvailable {
		return false, nil
	}
	if err != nil {
		return false, translate("erase unit", err)
	}
	if forget != nil {
		forget(db.units)
	}
	return done, nil
}

// FindErasure returns an erasure request by id.
func (db *DB) FindErasure(ctx context.Context, id string) (flywheel.ErasureStatus, error) {
	st := flywheel.ErasureStatus{ID: id}
	uid, err := uuid.Parse(id)
	if err != nil {
		return st, &flywheel.Error{Code: flywheel.CodeNotFound, Message: "erasure " + id + " not found"}
	}
	var doneAt *time.Time
	var counts []byte
	err = db.pool.QueryRow(ctx, `SELECT unit_type, requested_at, done_at, erased FROM erasure_requests WHERE id = $1`, uid).
		Scan(&st.UnitType, &st.RequestedAt, &doneAt, &counts)
	if err != nil {
		return st, translate("find erasure", err)
	}
	st.RequestedAt = st.RequestedAt.UTC()
	if doneAt != nil {
		t := doneAt.UTC()
		st.Status, st.DoneAt, st.Erased = flywheel.ErasureDone, &t, &flywheel.Erasure{}
		if err := json.Unmarshal(counts, st.Erased); err != nil {
			return st, err
		}
	} else {
		st.Status = flywheel.ErasurePending
	}
	return st, nil
}

// erase deletes everything held about u and every id linked to it, keeping
// a tombstone of each opt-out; the caller holds the aggregation lock, and
// calls forget on the unit copies once the transaction has committed.
func (db *DB) erase(ctx context.Context, tx pgx.Tx, u flywheel.UnitRef) (n flywheel.Erasure, forget func(*unitCache), err error) {
	units, err := db.cluster(ctx, tx, u)
	if err != nil {
		return n, nil, err
	}
	n = flywheel.Erasure{Units: int64(len(units))}
	types := make([]string, len(units))
	ids := make([]string, len(units))
	for i, x := range units {
		types[i], ids[i] = x.UnitType, x.UnitID
	}
	const unitsCTE = `WITH u AS (SELECT * FROM unnest($1::text[], $2::text[]) AS u(unit_type, unit_id)) `
	err = tx.QueryRow(ctx, unitsCTE+`,
		-- the units' events, and the identify events of other ids that name
		-- an erased customer: two deletes, each with its index
		-- (events_unit, events_identify_customer), on disjoint rows
		ev1 AS (DELETE FROM events e USING u WHERE e.unit_type = u.unit_type AND e.unit_id = u.unit_id
		       RETURNING e.id, e.unit_id),
		ev2 AS (DELETE FROM events e USING u WHERE u.unit_type = 'customer' AND e.type = 'identify' AND e.customer_id = u.unit_id
		       AND NOT EXISTS (SELECT FROM u o WHERE o.unit_type = e.unit_type AND o.unit_id = e.unit_id)
		       RETURNING e.id, e.unit_id),
		ev AS (SELECT * FROM ev1 UNION ALL SELECT * FROM ev2),
		ids AS (DELETE FROM event_ids i USING ev WHERE i.id = ev.id AND i.unit_id = ev.unit_id RETURNING 1),
		ex AS (DELETE FROM exposures x USING u WHERE x.unit_type = u.unit_type AND x.unit_id = u.unit_id RETURNING 1),
		al AS (DELETE FROM aliases a USING u WHERE (a.unit_type = u.unit_type AND a.unit_id = u.unit_id)
		                                   OR (u.unit_type = 'customer' AND a.customer_id = u.unit_id) RETURNING 1),
		co AS (DELETE FROM consent c USING u WHERE c.unit_type = u.unit_type AND c.unit_id = u.unit_id
		       RETURNING c.unit_type, c.unit_id, c.analytics, c.sdk_token),
		-- an opt-out outlives the erasure as a tombstone without the id
		-- (flywheel.UnitRef.Digest), so that a unit that comes back is
		-- still left alone
		tb AS (INSERT INTO consent_tombstones AS t (digest, unit_type, sdk_token, updated_at)
		       SELECT sha256(convert_to(co.unit_type || ':' || co.unit_id, 'UTF8')), co.unit_type, co.sdk_token, $3::timestamptz
		       FROM co WHERE NOT co.analytics
		       ON CONFLICT (digest) DO UPDATE SET sdk_token = COALESCE(EXCLUDED.sdk_token, t.sdk_token), updated_at = EXCLUDED.updated_at
		       RETURNING 1)
		SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM ids), (SELECT count(*) FROM ex),
		       (SELECT count(*) FROM al), (SELECT count(*) FROM co), (SELECT count(*) FROM tb)`, types, ids, db.now()).
		Scan(&n.Events, &n.EventIDs, &n.Exposures, &n.Aliases, &n.Consent, &n.OptOutsKept)
	if err != nil {
		return n, nil, err
	}
	if forget, err = eraseAggregates(ctx, tx, types, ids); err != nil {
		return n, nil, err
	}
	return n, forget, nil
}
