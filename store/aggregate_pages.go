package store

import "sync"

// The fold updates unit rows by ctid (writeFold), and a fetch by ctid
// never prunes a page's dead row versions: left alone, the pages of
// agg_units filled between vacuums and half the updates stopped being HOT
// (BENCHMARKS.md, "A unit's last day in its row"). A row looked up by its
// key first has its page pruned by that index scan, but looking up every
// row made the write about twice as slow, and a page needs it only once
// it holds a few dead versions (BENCHMARKS.md, "A page pruned every few
// updates").
//
// pageUpdates counts, per page of agg_units, the rows this process's
// folds have updated there: those of earlier cycles since one of their
// rows on the page was last looked up (old: a lookup now prunes them), and
// those of this cycle (cur: a lookup prunes those of the folds that have
// committed, and not those of the folds still running, so a lookup does
// not clear them). A write looks up the first of its rows on a page when
// the page was not counted yet (it may hold any number of dead versions),
// or when the page's versions since its last prune would reach pruneAt
// with the write's: on a page busy within a cycle, each write does. At
// fillfactor 70 a page keeps about 2,400 bytes free, some fifteen row
// versions; the margin is for updates the counts cannot see (another
// process's, the units step's).
type pageUpdates struct {
	mu    sync.Mutex
	cycle uint32
	pages map[uint32]pageCount
}

type pageCount struct {
	cycle    uint32 // the cycle cur counts
	old, cur uint8
}

// pruneAt is the versions since a page's last prune at which a write
// looks one of its rows up.
const pruneAt = 8

// maxCountedPages bounds the pages counted (some 12 bytes each): past it
// the counts start over, and each page is looked up at its next update.
const maxCountedPages = 1 << 22

// begin starts a cycle: the updates counted so far become prunable.
func (p *pageUpdates) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cycle++
	if len(p.pages) > maxCountedPages {
		p.pages = nil
	}
}

// at returns page b's count, its earlier cycles' updates moved to old
// (p.mu held).
func (p *pageUpdates) at(b uint32) (c pageCount, counted bool) {
	c, counted = p.pages[b]
	if counted && c.cycle != p.cycle {
		c.old, c.cur, c.cycle = sat(int(c.old)+int(c.cur)), 0, p.cycle
	}
	return c, counted
}

// mark counts the updates of a write whose rows are on blocks, in the
// order the write updates them, and returns which rows it looks up by
// key. Rows of one page must be adjacent (the write's rows are in ctid
// order), so that the lookup prunes the page before its other updates.
func (p *pageUpdates) mark(blocks []uint32) []bool {
	look := make([]bool, len(blocks))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pages == nil {
		p.pages = make(map[uint32]pageCount)
	}
	for i := 0; i < len(blocks); {
		b, m := blocks[i], 1
		for i+m < len(blocks) && blocks[i+m] == b {
			m++
		}
		c, counted := p.at(b)
		if !counted || int(c.old)+int(c.cur)+m >= pruneAt {
			look[i], c.old = true, 0
		}
		c.cur, c.cycle = sat(int(c.cur)+m), p.cycle
		p.pages[b] = c
		i += m
	}
	return look
}

// pruned records that rows on blocks were read by key in this cycle, as
// the fold's lookups of its units are: their pages hold no old version.
func (p *pageUpdates) pruned(blocks []uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pages == nil {
		p.pages = make(map[uint32]pageCount)
	}
	for _, b := range blocks {
		c, _ := p.at(b)
		c.old, c.cycle = 0, p.cycle
		p.pages[b] = c
	}
}

// sat is n as a count, at most 255.
func sat(n int) uint8 { return uint8(min(n, 255)) }
