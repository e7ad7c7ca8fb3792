package store

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// CopyTestRow is a row of TestCopyRowsMatchPgx's table.
type CopyTestRow struct {
	Text  string
	ID    [16]byte
	TS    time.Time
	Value *float64
	Doc   []byte
}

// CopyRowsForTest COPYs rows into table (t text, t_or_null text, id uuid,
// ts timestamptz, v float8, doc jsonb) with copyRows.
func CopyRowsForTest(ctx context.Context, db *DB, table string, rows []CopyTestRow) (int64, error) {
	c := newCopyRows(0)
	for _, r := range rows {
		c.row(6)
		c.text(r.Text)
		c.textOrNull(r.Text)
		c.uuid(r.ID)
		c.timestamptz(r.TS)
		c.float8OrNull(r.Value)
		c.jsonbOrNull(r.Doc)
	}
	var n int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) (err error) {
		n, err = c.copyTo(ctx, tx, "COPY "+pgx.Identifier{table}.Sanitize()+" (t, t_or_null, id, ts, v, doc) FROM STDIN (FORMAT binary)")
		return err
	})
	return n, err
}

// UpliftFoldsForTest computes the cross-fitting fold of each id with the
// SQL of UpliftInput.
func UpliftFoldsForTest(ctx context.Context, db *DB, ids []string) ([]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+upliftFoldSQL+` FROM unnest($1::text[]) WITH ORDINALITY AS x(unit_id, i) ORDER BY i`, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// Float8NumericForTest is float8Numeric's value as numeric input.
func Float8NumericForTest(x float64) string { return DecSumForTest(x) }

// DecSumForTest is the exact sum of the terms' numeric values (decSum).
func DecSumForTest(terms ...float64) string {
	var s decSum
	for _, x := range terms {
		s.addSigned(1, x)
	}
	return s.String()
}

// SetUnitFillForTest sets the unit rows each fold reads into an incomplete
// copy (0: the default), so that tests fill copies over many folds, and
// for how many rows left an owner has a fold read them all (0: the
// default, -1: never).
func SetUnitFillForTest(db *DB, chunk, restPerOwner int) {
	db.units.fillChunk, db.units.fillRest = chunk, restPerOwner
}

// FillStep is fillStep.
var FillStep = fillStep

// UnitCopy is what the aggregator's copy of a definition holds.
type UnitCopy struct {
	Epoch    int64 // the agg_defs.epoch it is current at
	Units    int   // unit rows
	Complete bool
	Unknown  []string // units to look up again, sorted
}

// UnitCopyForTest returns the aggregator's copy of definition (exp,
// metric); ok false when there is none.
func UnitCopyForTest(db *DB, exp, metric string) (c UnitCopy, ok bool) {
	db.units.mu.Lock()
	defer db.units.mu.Unlock()
	d := db.units.defs[[2]string{exp, metric}]
	if d == nil {
		return c, false
	}
	return UnitCopy{Epoch: d.epoch, Units: len(d.units), Complete: d.complete, Unknown: slices.Sorted(maps.Keys(d.unknown))}, true
}
