package store_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/flywheel-oss/flywheel/store"
)

// TestCopyRowsMatchPgx: rows COPYed with the hand-built binary stream read
// back exactly as the same values COPYed by pgx.
func TestCopyRowsMatchPgx(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("UTC+1", 3600)
	}
	f := func(v float64) *float64 { return &v }
	type row struct {
		text  string
		id    [16]byte
		ts    time.Time
		value *float64
		doc   string
	}
	rows := []row{
		{"plain", [16]byte{1}, t0, f(59.9), `{"device": "mobile"}`},
		{"", [16]byte{2}, time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC), nil, ""},
		{"café 😀 \t\n\"'\\", [16]byte{0xff, 0xfe}, time.Date(1969, 7, 20, 20, 17, 40, 500000000, time.UTC), f(0), "null"},
		{strings.Repeat("x", 100_000), [16]byte{}, time.Date(2026, 11, 23, 10, 0, 0, 1999, paris), f(-1e300), `{"n": 12345678901234567890, "a": [1, "x", null, {"b": true}]}`},
		{"u-5", [16]byte{5}, time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC), f(math.SmallestNonzeroFloat64), `[]`},
		{"u-6", [16]byte{6}, time.Date(2262, 4, 11, 23, 47, 16, 854775000, time.UTC), f(math.MaxFloat64), `"s"`},
	}
	for _, table := range []string{"copy_hand", "copy_pgx"} {
		if _, err := db.Pool().Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (t text, t_or_null text, id uuid, ts timestamptz, v float8, doc jsonb)`, table)); err != nil {
			t.Fatal(err)
		}
	}
	var hand []store.CopyTestRow
	for _, r := range rows {
		hand = append(hand, store.CopyTestRow{Text: r.text, ID: r.id, TS: r.ts, Value: r.value, Doc: []byte(r.doc)})
	}
	n, err := store.CopyRowsForTest(ctx, db, "copy_hand", hand)
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("hand-built COPY: %d rows, %v", n, err)
	}
	_, err = db.Pool().CopyFrom(ctx, pgx.Identifier{"copy_pgx"}, []string{"t", "t_or_null", "id", "ts", "v", "doc"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			var orNull, doc any
			if r.text != "" {
				orNull = r.text
			}
			if r.doc != "" && r.doc != "null" {
				doc = []byte(r.doc)
			}
			return []any{r.text, orNull, pgtype.UUID{Bytes: r.id, Valid: true}, r.ts, r.value, doc}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`SELECT count(*) FROM (SELECT * FROM copy_hand EXCEPT SELECT * FROM copy_pgx) d`,
		`SELECT count(*) FROM (SELECT * FROM copy_pgx EXCEPT SELECT * FROM copy_hand) d`,
	} {
		if n := queryInt(t, db, q); n != 0 {
			diff := queryStrings(t, db, `SELECT h::text || ' | ' || p::text FROM copy_hand h JOIN copy_pgx p USING (id) WHERE h IS DISTINCT FROM p`)
			t.Fatalf("%s = %d; rows that differ (hand | pgx):\n%s", q, n, strings.Join(diff, "\n"))
		}
	}
	if n := queryInt(t, db, `SELECT count(*) FROM copy_hand WHERE t_or_null IS NULL AND doc IS NULL AND v IS NULL`); n != 1 {
		t.Errorf("rows with NULL text, jsonb and float = %d, want 1 (the second)", n)
	}
}
