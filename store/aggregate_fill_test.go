package store_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/flywheel-oss/flywheel/store"
)

// TestFillStep checks how many rows a fold reads into an incomplete unit
// copy: 128 (the default) or the given rows an owner, at least the least
// and at most the most (1,000 and 200,000 by default), whatever is left
// to read.
func TestFillStep(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		owners, least, most, perOwner int
		chunk                         int
	}{
		{"the bench's definitions at 20,000 events/s: the most", 9_500, 1_000, 200_000, 0, 200_000},
		{"128 rows an owner", 1_000, 1_000, 200_000, 0, 128_000},
		{"a quiet definition, at least the least", 5, 1_000, 200_000, 0, 1_000},
		{"a shared copy, 16 an owner", 1_000, 1_000, 200_000, 16, 16_000},
		{"tests: chunks of 2", 100, 2, 2, 0, 2},
		{"tests: the owners decide between least and most", 2, 1, 1_000, 16, 32},
		{"the defaults: 128 an owner, 1,000 to 200,000", 10, 0, 0, 0, 1_280},
		{"the defaults' most", 5_000, 0, 0, 0, 200_000},
		{"the defaults' least", 1, 0, 0, 0, 1_000},
	} {
		if chunk := store.FillStep(tc.owners, tc.least, tc.most, tc.perOwner); chunk != tc.chunk {
			t.Errorf("%s: FillStep(%d owners, least %d, most %d, %d an owner) = %d; want %d",
				tc.name, tc.owners, tc.least, tc.most, tc.perOwner, chunk, tc.chunk)
		}
	}
}

// TestTIDLess checks the table's order, by which the fill reads a copy's
// rows and notices rows out of it.
func TestTIDLess(t *testing.T) {
	tid := func(block uint32, offset uint16) pgtype.TID {
		return pgtype.TID{BlockNumber: block, OffsetNumber: offset, Valid: true}
	}
	for _, tc := range []struct {
		a, b pgtype.TID
		want bool
	}{
		{pgtype.TID{}, tid(0, 1), true}, // the fill starts before every row
		{tid(0, 1), tid(0, 2), true},
		{tid(0, 2), tid(0, 1), false},
		{tid(0, 9), tid(1, 1), true}, // a later page, a lower offset
		{tid(1, 1), tid(0, 9), false},
		{tid(3, 4), tid(3, 4), false},    // the same row is not after itself
		{tid(0, 65535), tid(1, 1), true}, // the end of a page scanned whole
		{tid(1<<31, 1), tid(1<<31+1, 1), true},
	} {
		if got := store.TIDLess(tc.a, tc.b); got != tc.want {
			t.Errorf("TIDLess(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestSortIDs checks that sorting ids by their first 8 bytes first gives
// the byte order: ids that differ only after the 8th byte, ids shorter
// than 8 bytes or prefixes of others, and ids with NUL or high bytes,
// among pseudonyms (64 hex digits) and random ones.
func TestSortIDs(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	ids := []string{"", "a", "a\x00", "a\x00\x00", "ab", "abcdefgh", "abcdefgh\x00", "abcdefghi", "abcdefgg\xff",
		"\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\x01", "c-1", "c-10", "c-2", "customer-000001", "customer-000002"}
	for i := range 2_000 {
		ids = append(ids, fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()))
		b := make([]byte, r.IntN(12))
		for j := range b {
			b[j] = []byte{0, 'a', 'b', 0xff}[r.IntN(4)]
		}
		ids = append(ids, string(b), fmt.Sprintf("user-%06d", i))
	}
	r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	got := slices.Clone(ids)
	store.SortIDs(got)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("SortIDs: at %d, %q; byte order has %q", i, got[i], want[i])
			}
		}
	}
}
