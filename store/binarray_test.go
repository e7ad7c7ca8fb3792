package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestBinArrayMatchesPgx sends arrays built by binArray and the same
// values encoded by pgx, and compares what the server reads from each
// (as text), for every element type foldNew and the aggregator's
// statements take: empty, with NULLs, with text that needs quoting,
// timestamps and dates before 2000, timestamps with microseconds, the
// largest ctid.
func TestBinArrayMatchesPgx(t *testing.T) {
	ctx := context.Background()
	_, conn := openWithConn(t)
	f := func(v float64) *float64 { return &v }
	s := func(v string) *string { return &v }
	ts := []time.Time{time.Date(1999, 12, 31, 23, 59, 59, 123456789, time.UTC), time.Date(2026, 12, 4, 17, 0, 0, 1000, time.FixedZone("x", 3600))}
	cases := []struct {
		name, cast string
		build      func(a *binArray)
		want       any // the same values for pgx
	}{
		{"int4 empty", "int[]", func(*binArray) {}, []int32{}},
		{"int4", "int[]", func(a *binArray) { a.int4(0); a.int4(-7); a.int4(1 << 30) }, []int32{0, -7, 1 << 30}},
		{"text", "text[]", func(a *binArray) { a.text(""); a.text(`a "b", {c}`); a.text("é") }, []string{"", `a "b", {c}`, "é"}},
		{"text with nulls", "text[]", func(a *binArray) { a.null(); a.text("x"); a.null() }, []*string{nil, s("x"), nil}},
		{"timestamptz", "timestamptz[]", func(a *binArray) { a.timestamptz(ts[0]); a.timestamptz(ts[1]) }, ts},
		{"float8 with nulls", "float8[]", func(a *binArray) { a.float8OrNull(f(1.5)); a.float8OrNull(nil); a.float8OrNull(f(-0.1)) },
			[]*float64{f(1.5), nil, f(-0.1)}},
		{"float8", "float8[]", func(a *binArray) { a.float8(0); a.float8(-2.5e-300); a.float8(math.Inf(1)) }, []float64{0, -2.5e-300, math.Inf(1)}},
		{"tid", "tid[]", func(a *binArray) {
			a.tid(pgtype.TID{BlockNumber: 0, OffsetNumber: 1, Valid: true})
			a.tid(pgtype.TID{BlockNumber: math.MaxUint32, OffsetNumber: 65535, Valid: true})
		}, []pgtype.TID{{BlockNumber: 0, OffsetNumber: 1, Valid: true}, {BlockNumber: math.MaxUint32, OffsetNumber: 65535, Valid: true}}},
		{"date", "date[]", func(a *binArray) {
			a.date(dayNumber(time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC)))
			a.date(dayNumber(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)))
		}, []time.Time{time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)}},
	}
	oids := map[string]uint32{"int[]": oidInt4, "text[]": oidText, "timestamptz[]": oidTimestamptz, "float8[]": oidFloat8, "tid[]": oidTID, "date[]": oidDate}
	for _, c := range cases {
		a := newBinArray(oids[c.cast], 0)
		c.build(a)
		var got []byte
		rr := conn.Conn().PgConn().ExecParams(ctx, "SELECT $1::"+c.cast+"::text", [][]byte{a.bytes()}, nil, []int16{1}, nil)
		for rr.NextRow() {
			got = append(got, rr.Values()[0]...)
		}
		if _, err := rr.Close(); err != nil {
			t.Errorf("%s: the server refused it: %v", c.name, err)
			continue
		}
		var want string
		if err := conn.QueryRow(ctx, "SELECT $1::"+c.cast+"::text", c.want).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s: server read %s, want %s (as from pgx)", c.name, got, want)
		}
	}
}

// TestQueryPreparedDecodes runs a statement through queryPrepared with
// wireParams of each kind (text, binary array, text literal, NULL) and
// decodes its binary result columns with the wire decoders, against the
// values pgx reads for the same expressions. A row callback's error ends
// the query with that error, rows with no callback are read and dropped,
// the transaction stays usable, and a decoder given a value of another
// type says so.
func TestQueryPreparedDecodes(t *testing.T) {
	ctx := context.Background()
	_, conn := openWithConn(t)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	const sql = `SELECT $1::text, '(4294967295,65535)'::tid, x, (-7)::int2, '2026-12-05 01:02:03.000004+00'::timestamptz,
		array_to_string($3::numeric[], ';'), $4::text IS NULL
		FROM unnest($2::float8[]) AS x`
	arr := newBinArray(oidFloat8, 0)
	arr.float8(1.5)
	arr.float8(-0.1)
	p := &wireParams{}
	p.text(`a "b"`)
	p.array(arr)
	p.literal(numericArray([]string{"NaN", "-1.5e-3", "12345678901234567890e-5", "0"}))
	p.null()
	var got []string
	err = queryPrepared(ctx, tx, "test_decodes", sql, p, func(v [][]byte) error {
		tid, err := wireTID(v[1])
		if err != nil {
			return err
		}
		x, err := wireFloat8(v[2])
		if err != nil {
			return err
		}
		i, err := wireInt2(v[3])
		if err != nil {
			return err
		}
		ts, err := wireTimestamptz(v[4])
		if err != nil {
			return err
		}
		got = append(got, fmt.Sprintf("%s|%d,%d|%g|%d|%s|%s|%s", v[0], tid.BlockNumber, tid.OffsetNumber, x, i,
			ts.UTC().Format(time.RFC3339Nano), v[5], v[6]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`a "b"|4294967295,65535|1.5|-7|2026-12-05T01:02:03.000004Z|NaN;-0.0015;123456789012345.67890;0|` + "\x01",
		`a "b"|4294967295,65535|-0.1|-7|2026-12-05T01:02:03.000004Z|NaN;-0.0015;123456789012345.67890;0|` + "\x01",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}

	stop := errors.New("stop")
	rows := 0
	if err := queryPrepared(ctx, tx, "test_decodes", sql, p, func([][]byte) error { rows++; return stop }); !errors.Is(err, stop) || rows != 1 {
		t.Errorf("a callback's error: err = %v after %d rows, want %v after 1", err, rows, stop)
	}
	if err := queryPrepared(ctx, tx, "test_decodes", sql, p, nil); err != nil {
		t.Errorf("rows read with no callback: %v", err)
	}
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Errorf("the transaction after a callback's error: %d, %v", one, err)
	}

	for name, err := range map[string]error{
		"tid":         func() error { _, err := wireTID(make([]byte, 8)); return err }(),
		"float8":      func() error { _, err := wireFloat8(make([]byte, 4)); return err }(),
		"int2":        func() error { _, err := wireInt2(make([]byte, 4)); return err }(),
		"timestamptz": func() error { _, err := wireTimestamptz(make([]byte, 4)); return err }(),
		"infinity": func() error {
			_, err := wireTimestamptz([]byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			return err
		}(),
	} {
		if err == nil {
			t.Errorf("%s: a value of another size or an infinity decoded without an error", name)
		}
	}
}
