package store

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestExactNumeric compares exactNumeric with PostgreSQL's own cast to
// numeric for values of every kind the aggregates sum: zeros, whole
// numbers, cents and their squares and products, arbitrary doubles, the
// bounds of each cheaper cast, and the special values. The two must be the
// same numeric, or sums that one statement adds and another subtracts
// would drift. It also checks that the cheaper casts are taken where they
// should be (a value the CASE sends to the slow cast is correct but the
// change would be for nothing).
func TestExactNumeric(t *testing.T) {
	ctx := context.Background()
	_, conn := openWithConn(t)
	r := rand.New(rand.NewPCG(7, 11))
	values := []float64{0, math.Copysign(0, -1), 1, -1, 2, 0.5, 0.25, 0.1, 0.01, 0.001, 0.0001, 0.00001, 0.005, 0.00005,
		0.1 + 0.2, 1.0000000000000002, 0.30000000000000004, 40.13, -40.13, 40.10, 1e-7, 5e-324, math.MaxFloat64, -math.MaxFloat64,
		1e11, -1e11, math.Nextafter(1e11, 0), 99999999999.99, 9999999.9999, 1e15 - 1, 1e15, 1e16, 123456789012.5,
		math.Inf(1), math.Inf(-1), math.NaN(), 1.0 / 3, 2.0 / 3, math.Pi, math.E, 33.333333333333336}
	var money []float64 // whole numbers and cents: each must take a cheaper cast
	for range 20000 {
		cents := float64(r.IntN(10_000_000)-5_000_000) / 100
		whole := float64(r.IntN(1 << 40))
		money = append(money, cents, math.Round(r.ExpFloat64()*4000)/100, float64(r.IntN(1e9)), 1e11-float64(r.IntN(1e6))-1)
		values = append(values, cents*cents, cents*float64(r.IntN(1000))/100, whole, whole*whole,
			r.Float64()*1000, r.NormFloat64()*1e6, r.ExpFloat64()*40, math.Float64frombits(r.Uint64()), r.Float64()*1e12, r.Float64()*1e16)
	}
	values = append(values, money...)
	var differ, slow int
	var first string
	err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE a IS DISTINCT FROM b),
		    COALESCE(min(x::text) FILTER (WHERE a IS DISTINCT FROM b), '')
		FROM (SELECT x, `+exactNumeric("x")+` AS a, x::numeric AS b FROM unnest($1::float8[]) x) v`, values).Scan(&differ, &first)
	if err != nil {
		t.Fatal(err)
	}
	if differ > 0 {
		t.Errorf("exactNumeric differs from ::numeric for %d of %d values (the least as text: %s)", differ, len(values), first)
	}
	// The slow cast is the CASE's ELSE, and the first branch for large
	// values: with it replaced by NULL, no whole number or cents is NULL.
	slowCast := strings.NewReplacer("ELSE (x)::numeric", "ELSE NULL", "THEN (x)::numeric", "THEN NULL").Replace(exactNumeric("x"))
	if slowCast == exactNumeric("x") {
		t.Fatal("the slow casts are not where the test looks for them")
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM unnest($1::float8[]) x WHERE `+slowCast+` IS NULL`, money).Scan(&slow); err != nil {
		t.Fatal(err)
	}
	if slow > 0 {
		t.Errorf("%d of %d whole numbers and cents took the slow cast", slow, len(money))
	}
	var text string
	if err := conn.QueryRow(ctx, `SELECT string_agg(`+exactNumeric("x")+`::text, ' ' ORDER BY o)
		FROM unnest($1::float8[]) WITH ORDINALITY AS v(x, o)`, []float64{40.13, -0.5, 12, 0.0001, 1e-7, 0}).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if want := "40.13 -0.50 12 0.0001 0.0000001 0"; text != want {
		t.Errorf("exactNumeric as text = %q, want %q", text, want)
	}
}
