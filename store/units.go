package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
)

var _ flywheel.UnitStore = (*DB)(nil)

// identityCluster is every id connected to ($1, $2) through identity links,
// in either direction: a customer's devices, a device's customer, customers
// merged into one another. UNION (not ALL) ends cycles; the size is capped.
const identityCluster = `
WITH RECURSIVE cluster(unit_type, unit_id) AS (
    SELECT $1::text, $2::text
    UNION
    SELECT n.unit_type, n.unit_id FROM cluster c CROSS JOIN LATERAL (
        SELECT a.unit_type, a.unit_id FROM aliases a
        WHERE c.unit_type = 'customer' AND a.customer_id = c.unit_id
        UNION ALL
        SELECT 'customer', a.customer_id FROM aliases a
        WHERE a.unit_type = c.unit_type AND a.unit_id = c.unit_id
    ) n
)
SELECT unit_type, unit_id FROM cluster LIMIT 10000`

func (db *DB) cluster(ctx context.Context, q pgx.Tx, u flywheel.UnitRef) ([]flywheel.UnitRef, error) {
	rows, err := q.Query(ctx, identityCluster, u.UnitType, u.UnitID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (flywheel.UnitRef, error) {
		var x flywheel.UnitRef
		err := r.Scan(&x.UnitType, &x.UnitID)
		return x, err
	})
}

// SetConsent records a unit's analytics consent and audits the change
// (with the unit type only: the audit log never holds unit ids). Opting in
// also deletes the unit's opt-out tombstone, if it was erased while opted
// out: it consents again.
func (db *DB) SetConsent(ctx context.Context, u flywheel.UnitRef, analytics bool, sdkToken uint64, actor string) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO consent (unit_type, unit_id, analytics, updated_at, sdk_token) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (unit_type, unit_id) DO UPDATE SET analytics = EXCLUDED.analytics, updated_at = EXCLUDED.updated_at,
			    sdk_token = COALESCE(EXCLUDED.sdk_token, consent.sdk_token)`,
			u.UnitType, u.UnitID, analytics, db.now(), nullToken(sdkToken)); err != nil {
			return err
		}
		if analytics {
			d := u.Digest()
			if _, err := tx.Exec(ctx, `DELETE FROM consent_tombstones WHERE digest = $1`, d[:]); err != nil {
				return err
			}
		}
		// The unit's aggregates leave (or rejoin) results at the next cycle.
		if _, err := tx.Exec(ctx, enqueueSQL, db.now(), []string{u.UnitType}, []string{u.UnitID}); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "consent", map[string]any{"unit_type": u.UnitType, "analytics": analytics})
	})
	return translate("set consent", err)
}

// nullToken stores an unknown opt-out token (0) as NULL.
func nullToken(t uint64) *int64 {
	if t == 0 {
		return nil
	}
	v := int64(t)
	return &v
}

// OptedOut returns the consent changes after since: units now opted out,
// units opted back in, tombstones of erased opted-out units, and the time
// to ask from next (a little before the newest change, so nothing at the
// boundary is missed; applying a change twice is harmless).
func (db *DB) OptedOut(ctx context.Context, since time.Time) (flywheel.ConsentChanges, error) {
	ch := flywheel.ConsentChanges{Until: since}
	rows, err := db.pool.Query(ctx, `
		SELECT unit_type, unit_id, analytics, NULL::bytea, updated_at FROM consent WHERE updated_at > $1
		UNION ALL
		SELECT unit_type, NULL, false, digest, updated_at FROM consent_tombstones WHERE updated_at > $1
		ORDER BY 5`, since)
	if err != nil {
		return ch, translate("opted out", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u flywheel.UnitRef
		var id *string
		var analytics bool
		var digest []byte
		var at time.Time
		if err := rows.Scan(&u.UnitType, &id, &analytics, &digest, &at); err != nil {
			return ch, translate("opted out", err)
		}
		switch {
		case id == nil:
			var d [32]byte
			copy(d[:], digest)
			ch.Tombstones = append(ch.Tombstones, d)
		case analytics:
			u.UnitID = *id
			ch.In = append(ch.In, u)
		default:
			u.UnitID = *id
			ch.Out = append(ch.Out, u)
		}
		if at.After(ch.Until) {
			ch.Until = at
		}
	}
	if err := rows.Err(); err != nil {
		return ch, translate("opted out", err)
	}
	if ch.Until.After(since) {
		ch.Until = ch.Until.Add(-time.Second)
	}
	return ch, nil
}

// OptOutTokens returns up to limit changes of the SDKs' opt-out set after
// (at, kind, token), in that order: consent records (kind 0) and
// tombstones (kind 1) that have a token. Records without a token (ids
// pseudonymised before tokens existed) are not listed.
func (db *DB) OptOutTokens(ctx context.Context, at time.Time, kind int, token uint64, limit int) ([]flywheel.TokenChange, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT updated_at, kind, sdk_token, opted_out FROM (
		    SELECT updated_at, 0 AS kind, sdk_token, NOT analytics AS opted_out FROM consent
		    WHERE updated_at >= $1 AND sdk_token IS NOT NULL
		    UNION ALL
		    SELECT updated_at, 1, sdk_token, true FROM consent_tombstones
		    WHERE updated_at >= $1 AND sdk_token IS NOT NULL
		) c
		WHERE (updated_at, kind, sdk_token) > ($1, $2, $3)
		ORDER BY updated_at, kind, sdk_token
		LIMIT $4`, at, kind, int64(token), limit)
	if err != nil {
		return nil, translate("opt-out tokens", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (flywheel.TokenChange, error) {
		var c flywheel.TokenChange
		var t int64
		err := r.Scan(&c.At, &c.Kind, &t, &c.OptedOut)
		c.Token = uint64(t)
		return c, err
	})
	return out, translate("opt-out tokens", err)
}

// DescribeUnit reports what is held about a unit.
func (db *DB) DescribeUnit(ctx context.Context, u flywheel.UnitRef) (flywheel.UnitInfo, error) {
	info := flywheel.UnitInfo{UnitRef: u, Linked: []flywheel.UnitRef{}, Exposures: []string{}}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// Never interleave with an aggregation cycle (store/aggregate.go).
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(aggLock)); err != nil {
			return err
		}
		units, err := db.cluster(ctx, tx, u)
		if err != nil {
			return err
		}
		for _, x := range units[1:] {
			info.Linked = append(info.Linked, x)
		}
		info.Customer, err = resolveCustomer(ctx, tx, u)
		if err != nil {
			return err
		}
		// The consent record, else an opt-out kept as a tombstone when the
		// unit was erased.
		var analytics *bool
		d := u.Digest()
		if err := tx.QueryRow(ctx, `SELECT COALESCE(
			    (SELECT analytics FROM consent WHERE unit_type = $1 AND unit_id = $2),
			    (SELECT false FROM consent_tombstones WHERE digest = $3))`, u.UnitType, u.UnitID, d[:]).Scan(&analytics); err != nil {
			return err
		}
		info.Analytics = analytics
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM events WHERE unit_type = $1 AND unit_id = $2`, u.UnitType, u.UnitID).Scan(&info.Events); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT experiment FROM exposures WHERE unit_type = $1 AND unit_id = $2 ORDER BY experiment`, u.UnitType, u.UnitID)
		if err != nil {
			return err
		}
		info.Exposures, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return info, translate("describe unit", err)
	}
	if info.Exposures == nil {
		info.Exposures = []string{}
	}
	return info, nil
}

// resolveCustomer follows identity links from u to the customer it belongs
// to ("" when it links nowhere); a chain of links (a device to a customer
// merged into another customer) resolves to the last, at most 16 steps.
func resolveCustomer(ctx context.Context, tx pgx.Tx, u flywheel.UnitRef) (string, error) {
	cur, customer := u, ""
	seen := map[flywheel.UnitRef]bool{}
	for range 16 {
		seen[cur] = true
		var next string
		err := tx.QueryRow(ctx, `SELECT customer_id FROM aliases WHERE unit_type = $1 AND unit_id = $2`, cur.UnitType, cur.UnitID).Scan(&next)
		if err == pgx.ErrNoRows {
			break
		} else if err != nil {
			return "", err
		}
		customer, cur = next, flywheel.UnitRef{UnitType: "customer", UnitID: next}
		if seen[cur] {
			break
		}
	}
	return customer, nil
}

func audit(ctx context.Context, tx pgx.Tx, actor, action string, details any) error {
	raw, err := json.Marshal(details)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_log (actor, action, details) VALUES ($1, $2, $3)`, actor, action, raw)
	return err
}
