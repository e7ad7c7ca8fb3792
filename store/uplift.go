package store

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// UpliftFold is the cross-fitting fold, in [0, analysis.UpliftFolds), of a
// (stored) unit id: the first four bytes of MD5(id), big-endian, modulo
// the number of folds. The database computes the same (upliftFoldSQL), so
// that uplift answers are reproducible and independent of the order of the
// rows. (It lives here, not in the pure analysis package, which holds no
// hash.)
func UpliftFold(unitID string) int {
	sum := md5.Sum([]byte(unitID))
	return int(binary.BigEndian.Uint32(sum[:4]) % analysis.UpliftFolds)
}

// upliftFoldSQL is UpliftFold in SQL, of the column x.unit_id.
var upliftFoldSQL = fmt.Sprintf(`(('x' || substr(md5(x.unit_id), 1, 8))::bit(32)::bigint %% %d)::int`, analysis.UpliftFolds)

// UpliftInput aggregates, in one transaction, the sufficient statistics of
// metric m for experiment e per variant, cross-fitting fold and
// combination of the values of the exposure attributes by (the attributes
// of each unit's first exposure), from the stored exposures and events,
// with the metric's window and cap, identity links, consent, multiple
// exposures and overrides applied as in the results. A numeric attribute
// with more than analysis.MaxUpliftNumericValues distinct values is cut
// into analysis.UpliftNumericBuckets quantile buckets; an attribute found
// on no exposure, or with more than analysis.MaxUpliftValues values, is an
// invalid argument (field by). Only sufficient statistics leave the
// database.
func (db *DB) UpliftInput(ctx context.Context, e *flywheel.Experiment, m flywheel.Metric, by []string, q analysis.Query) (analysis.UpliftInput, error) {
	q = normalizeQuery(q)
	in := analysis.UpliftInput{Experiment: *e, Metric: m, By: by, ComputedAt: q.Now}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		args := []any{e.Key, q.Overrides}
		exprs, err := upliftAttributes(ctx, tx, e.Key, &in, &args)
		if err != nil {
			return err
		}
		by = in.By
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE r_units ON COMMIT DROP AS
		SELECT x.unit_id, x.variant, x.first_ts, jsonb_build_array(`+strings.Join(append([]string{upliftFoldSQL}, exprs...), ", ")+`)::text AS segment
		FROM exposures x
		WHERE x.experiment = $1 AND NOT x.multiple AND x.unit_id <> ALL($2)
		  AND NOT EXISTS (SELECT 1 FROM consent c WHERE c.unit_type = x.unit_type AND c.unit_id = x.unit_id AND NOT c.analytics)`, args...); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE INDEX ON r_units (unit_id); ANALYZE r_units`); err != nil {
			return err
		}
		var scratch analysis.Input
		owned, err := ownedEvents(ctx, tx, e, &scratch)
		if err != nil {
			return err
		}
		all, segmented, err := metricStats(ctx, tx, owned, e.UnitType, m, analysis.Query{Segment: "uplift", Now: q.Now})
		if err != nil {
			return fmt.Errorf("metric %q: %w", m.Key, err)
		}
		for _, s := range all {
			in.Maturing += s.Maturing
		}
		for _, s := range segmented {
			c, err := upliftCell(s, len(by))
			if err != nil {
				return err
			}
			in.Cells = append(in.Cells, c)
		}
		return nil
	})
	if err != nil {
		return in, translate("uplift", err)
	}
	return in, nil
}

// upliftAttributes returns the SQL expressions of the attributes of in.By.
// When By is empty, they are the experiment's exposure attributes, in
// alphabetical order, at most analysis.MaxUpliftAttributes of them,
// skipping (with a note) those with too many values.
func upliftAttributes(ctx context.Context, tx pgx.Tx, key string, in *analysis.UpliftInput, args *[]any) ([]string, error) {
	if len(in.By) > 0 {
		exprs := make([]string, len(in.By))
		for i, attr := range in.By {
			expr, note, err := upliftAttribute(ctx, tx, key, attr, args)
			if err != nil {
				return nil, err
			}
			exprs[i] = expr
			if note != "" {
				in.Notes = append(in.Notes, note)
			}
		}
		return exprs, nil
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT k FROM exposures x CROSS JOIN LATERAL jsonb_object_keys(x.attributes) k
		WHERE x.experiment = $1 AND NOT x.multiple AND jsonb_typeof(x.attributes) = 'object' ORDER BY k LIMIT 100`, key)
	if err != nil {
		return nil, err
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	in.By = []string{}
	var exprs []string
	for _, attr := range keys {
		if len(in.By) == analysis.MaxUpliftAttributes {
			in.Notes = append(in.Notes, fmt.Sprintf("by was not given: the first %d exposure attributes in alphabetical order are used; name others with by=.", analysis.MaxUpliftAttributes))
			break
		}
		if !analysis.ValidAttribute(attr) {
			continue
		}
		n := len(*args)
		expr, note, err := upliftAttribute(ctx, tx, key, attr, args)
		var fe *flywheel.Error
		if errors.As(err, &fe) && fe.Code == flywheel.CodeInvalidArgument {
			*args = (*args)[:n]
			in.Notes = append(in.Notes, "Left out: "+fe.Message+".")
			continue
		}
		if err != nil {
			return nil, err
		}
		in.By = append(in.By, attr)
		exprs = append(exprs, expr)
		if note != "" {
			in.Notes = append(in.Notes, note)
		}
	}
	return exprs, nil
}

// upliftAttribute returns the SQL expression of the value of attribute
// attr of an exposure x (a text: the value, its numeric bucket, or
// "(none)"), appending its parameters to args, and a note on how a
// numeric attribute was bucketed.
func upliftAttribute(ctx context.Context, tx pgx.Tx, key, attr string, args *[]any) (expr, note string, err error) {
	var total, distinct, present, numbers int64
	if err := tx.QueryRow(ctx, `SELECT count(*), count(DISTINCT x.attributes->>$2), count(*) FILTER (WHERE x.attributes ? $2),
		count(*) FILTER (WHERE jsonb_typeof(x.attributes->$2) = 'number')
		FROM exposures x WHERE x.experiment = $1 AND NOT x.multiple`, key, attr).Scan(&total, &distinct, &present, &numbers); err != nil {
		return "", "", err
	}
	if present == 0 {
		return "", "", flywheel.Invalid("by", "attribute %q is on no exposure of experiment %q", attr, key)
	}
	*args = append(*args, attr)
	name := "$" + strconv.Itoa(len(*args))
	if numbers == present && distinct > analysis.MaxUpliftNumericValues {
		return upliftBuckets(ctx, tx, key, attr, name, args)
	}
	values := distinct
	if present < total {
		values++ // "(none)"
	}
	if values > analysis.MaxUpliftValues {
		return "", "", flywheel.Invalid("by", "attribute %q has %d distinct values; uplift segments take at most %d (choose an attribute such as a channel or a country, or a numeric one, which is bucketed)", attr, values, analysis.MaxUpliftValues)
	}
	return fmt.Sprintf("COALESCE(x.attributes->>%s::text, %s)", name, quoteLiteral(analysis.NoneValue)), "", nil
}

// upliftBuckets cuts a numeric attribute at its quintiles (of the
// exposures that carry it): buckets [lo, hi), the last one closed.
func upliftBuckets(ctx context.Context, tx pgx.Tx, key, attr, name string, args *[]any) (expr, note string, err error) {
	probs := make([]float64, analysis.UpliftNumericBuckets-1)
	for i := range probs {
		probs[i] = float64(i+1) / analysis.UpliftNumericBuckets
	}
	var lo, hi float64
	var cuts []float64
	if err := tx.QueryRow(ctx, `SELECT min(v), max(v), percentile_disc($3::float8[]) WITHIN GROUP (ORDER BY v)
		FROM (SELECT (x.attributes->>$2)::float8 AS v FROM exposures x
		      WHERE x.experiment = $1 AND NOT x.multiple AND jsonb_typeof(x.attributes->$2) = 'number') n`,
		key, attr, probs).Scan(&lo, &hi, &cuts); err != nil {
		return "", "", err
	}
	// Edges: lo, the distinct cuts above lo, and hi.
	edges := []float64{lo}
	for _, c := range cuts {
		if c > edges[len(edges)-1] && c < hi {
			edges = append(edges, c)
		}
	}
	edges = append(edges, hi)
	var b strings.Builder
	fmt.Fprintf(&b, "CASE WHEN jsonb_typeof(x.attributes->%s::text) IS DISTINCT FROM 'number' THEN %s", name, quoteLiteral(analysis.NoneValue))
	labels := make([]string, 0, len(edges)-1)
	for i := 1; i < len(edges); i++ {
		label := "[" + number(edges[i-1]) + ", " + number(edges[i]) + ")"
		if i == len(edges)-1 {
			label = "[" + number(edges[i-1]) + ", " + number(edges[i]) + "]"
			fmt.Fprintf(&b, " ELSE %s END", quoteLiteral(label))
		} else {
			fmt.Fprintf(&b, " WHEN (x.attributes->>%s::text)::float8 < %s THEN %s", name, strconv.FormatFloat(edges[i], 'g', -1, 64), quoteLiteral(label))
		}
		labels = append(labels, label)
	}
	note = fmt.Sprintf("Numeric attribute %q has more than %d distinct values: it is cut at its quantiles into %s.", attr, analysis.MaxUpliftNumericValues, strings.Join(labels, ", "))
	return b.String(), note, nil
}

// number writes a bucket edge.
func number(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

// quoteLiteral quotes s as an SQL string literal (the labels are made
// here from numbers and constants, never from user input).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// upliftCell reads a segmented row of metricStats whose segment is the
// JSON array [fold, value₁, …, valueₖ].
func upliftCell(s analysis.MetricStats, k int) (analysis.UpliftCell, error) {
	var parts []any
	if err := json.Unmarshal([]byte(s.Segment), &parts); err != nil || len(parts) != k+1 {
		return analysis.UpliftCell{}, fmt.Errorf("uplift cell %q: want [fold, %d values]", s.Segment, k)
	}
	fold, ok := parts[0].(float64)
	if !ok {
		return analysis.UpliftCell{}, fmt.Errorf("uplift cell %q: fold is not a number", s.Segment)
	}
	c := analysis.UpliftCell{Variant: s.Variant, Fold: int(fold), N: s.N, Sum: s.Sum, SumSq: s.SumSq, Values: make([]string, k)}
	for i, p := range parts[1:] {
		v, ok := p.(string)
		if !ok {
			return analysis.UpliftCell{}, fmt.Errorf("uplift cell %q: value %d is not a string", s.Segment, i+1)
		}
		c.Values[i] = v
	}
	return c, nil
}
