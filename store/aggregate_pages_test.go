package store

import (
	"slices"
	"testing"
)

// TestPageUpdatesMark: a write looks up its first row on a page not
// counted yet, or on a page whose versions since its last prune would
// reach pruneAt with the write's; a lookup clears the versions of earlier
// cycles, not the cycle's own, and so does a read by key.
func TestPageUpdatesMark(t *testing.T) {
	p := &pageUpdates{}
	steps := []struct {
		name   string
		begin  bool     // a new cycle first
		pruned []uint32 // read by key before the write
		blocks []uint32
		want   []bool
	}{
		{"pages not counted yet", true, nil, []uint32{1, 1, 2, 5}, []bool{true, false, true, true}},
		{"the same cycle, under the bound", false, nil, []uint32{1, 2, 2, 2}, []bool{false, false, false, false}},
		// Old: page 1 3 versions, page 2 4, page 5 1.
		{"the next cycle, under the bound", true, nil, []uint32{1, 1, 1, 2, 5}, []bool{false, false, false, false, false}},
		// Page 1: 3 + 3 + 1 = 7; page 2: 4 + 1 + 3 = 8.
		{"page 2 reaches the bound", false, nil, []uint32{1, 2, 2, 2}, []bool{false, true, false, false}},
		// Old: page 1 3 + 4 = 7 (reaches 8 with the write), page 2 4, page 5 2, read by key.
		{"page 1 reaches it, page 5 read by key", true, []uint32{5}, []uint32{1, 5}, []bool{true, false}},
		// Page 5, 1 update this cycle: with the write's 9 it reaches the
		// bound, and with the next write's 1 its 10 do.
		{"a page busy within a cycle", false, nil, []uint32{5, 5, 5, 5, 5, 5, 5, 5, 5}, append([]bool{true}, make([]bool, 8)...)},
		{"and again", false, nil, []uint32{5}, []bool{true}},
	}
	for _, s := range steps {
		if s.begin {
			p.begin()
		}
		p.pruned(s.pruned)
		if got := p.mark(s.blocks); !slices.Equal(got, s.want) {
			t.Errorf("%s: mark(%v) = %v, want %v", s.name, s.blocks, got, s.want)
		}
	}
	want := map[uint32][2]uint8{1: {0, 1}, 2: {4, 0}, 5: {0, 11}}
	for b, w := range want {
		if c, _ := p.at(b); [2]uint8{c.old, c.cur} != w {
			t.Errorf("page %d: %d old versions and %d of this cycle, want %d and %d", b, c.old, c.cur, w[0], w[1])
		}
	}
	if len(p.pages) != len(want) {
		t.Errorf("%d pages counted, want %d: %v", len(p.pages), len(want), p.pages)
	}
}
