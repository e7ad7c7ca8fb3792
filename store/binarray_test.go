package store

import (
	"context"
	"testing"
	"time"
)

// TestBinArrayMatchesPgx sends arrays built by binArray and the same
// values encoded by pgx, and compares what the server reads from each
// (as text), for every element type foldNew takes: empty, with NULLs, with
// text that needs quoting, timestamps before 2000 and with microseconds.
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
	}
	oids := map[string]uint32{"int[]": oidInt4, "text[]": oidText, "timestamptz[]": oidTimestamptz, "float8[]": oidFloat8}
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
