package store_test

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
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

// TestQueryPreparedLarge sends parameters larger than the connection's
// write buffer, for which queryPrepared makes room before the Bind, and
// small ones between them: each must reach the server whole, in order.
func TestQueryPreparedLarge(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for i, sizes := range [][]int{{1 << 20}, {10}, {3 << 20, 70_000, 0, 5}, {64 << 10}, {200_000, 200_000}} {
		var params [][]byte
		want := ""
		for j, n := range sizes {
			v := make([]byte, n)
			for k := range v {
				v[k] = byte(i*7 + j*13 + k*31)
			}
			params = append(params, v)
			want += fmt.Sprintf("%x;", md5.Sum(v))
		}
		var md5s []string
		for j := range sizes {
			md5s = append(md5s, fmt.Sprintf("md5($%d::bytea) || ';'", j+1))
		}
		sql := "SELECT " + strings.Join(md5s, " || ")
		got, rows := "", 0
		if err := store.QueryPreparedForTest(ctx, tx, fmt.Sprintf("large_%d", i), sql, params, func(vals [][]byte) error {
			got, rows = string(vals[0]), rows+1
			return nil
		}); err != nil {
			t.Fatalf("parameters of %v bytes: %v", sizes, err)
		}
		if rows != 1 || got != want {
			t.Errorf("parameters of %v bytes: %d rows, %q; want their md5s %q", sizes, rows, got, want)
		}
	}
}

// TestBindSize: the room queryPrepared makes before a Bind holds the Bind
// and the Describe, Execute and Sync that pgconn's ExecPrepared sends
// after it, as pgproto3 encodes them.
func TestBindSize(t *testing.T) {
	for _, values := range [][][]byte{nil, {nil}, {{}}, {[]byte("x")}, {make([]byte, 70_000), nil, []byte("agg-cust"), make([]byte, 3)}} {
		for _, name := range []string{"", "flywheel_write_fold", strings.Repeat("n", 63)} {
			formats := slices.Repeat([]int16{1}, len(values))
			var b []byte
			var err error
			for _, m := range []pgproto3.FrontendMessage{
				&pgproto3.Bind{PreparedStatement: name, ParameterFormatCodes: formats, Parameters: values, ResultFormatCodes: []int16{1}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
			} {
				if b, err = m.Encode(b); err != nil {
					t.Fatal(err)
				}
			}
			if got := store.BindSizeForTest(name, values); got < len(b) {
				t.Errorf("%d values to %q: room for %d bytes, the messages take %d", len(values), name, got, len(b))
			}
		}
	}
}

// BenchmarkQueryPreparedLarge sends 16 MB of parameters, 16 of 1 MB, as a
// fold's arrays are sent, through queryPrepared (reserved: the write
// buffer made large enough first) and through pgconn's ExecPrepared alone
// (pgconn: the buffer grows from 1 KB as the Bind is encoded).
func BenchmarkQueryPreparedLarge(b *testing.B) {
	db := newDB(b)
	ctx := context.Background()
	var params [][]byte
	var args []string
	for i := range 16 {
		v := make([]byte, 1<<20)
		for k := range v {
			v[k] = byte(i + k)
		}
		params = append(params, v)
		args = append(args, fmt.Sprintf("octet_length($%d::bytea)", i+1))
	}
	sql := "SELECT " + strings.Join(args, " + ")
	check := func(vals [][]byte) error {
		if len(vals[0]) != 4 || binary.BigEndian.Uint32(vals[0]) != 16<<20 {
			return fmt.Errorf("the server read %x, want the length %d", vals[0], 16<<20)
		}
		return nil
	}
	formats := slices.Repeat([]int16{1}, len(params))
	for _, way := range []string{"pgconn", "reserved"} {
		b.Run(way, func(b *testing.B) {
			tx, err := db.Pool().Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Conn().Prepare(ctx, "large", sql); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(16 << 20)
			b.ReportAllocs()
			for b.Loop() {
				if way == "reserved" {
					err = store.QueryPreparedForTest(ctx, tx, "large", sql, params, check)
				} else {
					rr := tx.Conn().PgConn().ExecPrepared(ctx, "large", params, formats, []int16{1})
					for rr.NextRow() && err == nil {
						err = check(rr.Values())
					}
					if _, cerr := rr.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
