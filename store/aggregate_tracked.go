package store

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// A cycle's history step (collectOwned) reads each affected unit's track
// events in its metrics' windows, and the window of a CUPED metric starts
// days before the exposure: one index probe a daily partition, 15 or more
// for a new customer, and nearly every probe finds nothing, since a new
// customer has no events before it is exposed (BENCHMARKS.md, "Where a new
// unit's time goes"). trackFilter says, day by day, which ids may have a
// track event that a ready definition reads, so that the history looks up
// only the days that may hold one, and no day at all for most new units.
//
// It holds every (id, day) of such an event that a cycle can see, from
// its first day on (and some it does not: a Bloom filter's false
// positives, erased events); every earlier day may hold events. It is
// built by reading the events from that day on (trackHorizon), in the
// background on a connection of its own, paced, from the first cycle that
// has definitions reading events (an idle one too: a server started on a
// large database builds it before the first burst of new customers, not
// during it); each cycle that takes queue rows adds their track events
// before its history step, to the built filter or to the one being built.
// An event gets into the events table only with the queue row that names
// it (store/events.go), so the filter misses no event as long as it has
// seen the queue rows of every cycle since its build began. Cycles run one
// at a time across processes, each that takes queue rows with the next
// number of agg_queue_cycle (an idle cycle takes none: it reads the last
// one taken): a cycle whose number does not follow the last one this
// filter saw comes after another process's cycle (or a lost number), and
// the filter is dropped and built again, at most once every
// trackFilterRebuild. A cycle whose definitions read an event the filter
// was not built for drops it too. A dropped or unbuilt filter answers
// "maybe" for every day, and the history probes every partition, as it
// did without one.
//
// The build's snapshot is taken after the queue rows of the cycle that
// started it were taken, so it sees their events (they were committed
// before that cycle's snapshot); every later queue row is added by a
// later cycle (this process's, or the chain is broken); the rows a cycle
// leaves queued (a_later) are not read by its history at all.
type trackFilter struct {
	mu      sync.Mutex
	seed    maphash.Seed
	reads   []string      // the events it holds, sorted
	days    trackDays     // nil: not built (every day may hold events)
	from    int64         // the first day it holds every key of (earlier days may hold events)
	build   *trackBuild   // the build under way, if any
	last    int64         // the agg_queue_cycle of the last cycle whose track events it holds or adds to build
	started time.Time     // when the last build started
	every   time.Duration // the least time between two builds
	off     bool          // it grew past maxTrackFilterIDs: every day is looked up
	quit    context.Context
	wg      sync.WaitGroup
}

// trackBuild is a filter being built from the events, while cycles add
// theirs to it too (under the filter's mu).
type trackBuild struct {
	days  trackDays
	from  int64         // the first day it reads the events of
	done  bool          // the read ended
	err   error         // why it failed
	began time.Time     // when it started
	took  time.Duration // how long the read took, once done
}

const (
	// trackFilterRebuild is the least time between two builds of a track
	// filter: each reads every track event stored since its horizon.
	trackFilterRebuild = time.Minute
	// maxTrackFilterIDs bounds the (id, day) keys a filter holds (3 to 6
	// bytes each: dayBitsPerID at a segment's capacity, twice that in a
	// day's newest segment while it fills): past it, the filter is
	// dropped for good and the history probes every partition.
	maxTrackFilterIDs = 50_000_000
	// trackBuildPace is how long a build waits after each batch of rows,
	// in multiples of the time it took to read and add them.
	trackBuildPace = 3
	// firstDayIDs is the capacity of a day's first segment; each next one
	// holds twice as many.
	firstDayIDs = 1 << 14
	// dayBitsPerID is the bits a key of a day's segment has at its
	// capacity: a new unit's window asks 15 days or more, each of several
	// segments, and each false positive costs a partition's lookup.
	dayBitsPerID = 24
)

func newTrackFilter(quit context.Context) *trackFilter {
	return &trackFilter{seed: maphash.MakeSeed(), every: trackFilterRebuild, quit: quit}
}

// trackDays is a filter's keys, per day (days since 1970-01-01 UTC).
type trackDays map[int64]*dayBloom

// dayBloom holds one day's ids, in segments of growing capacity: a key
// added is in one of them, and a key is held when any segment may hold it.
type dayBloom struct {
	segs []blockBloom
	n    int // keys in the last segment
	cap  int // the last segment's capacity
}

// has says whether the day may hold the key. The newest segment, which
// holds the most keys, is asked first: most keys a cycle adds are held
// already (the day's other events of the same ids).
func (d *dayBloom) has(h1, h2 uint64) bool {
	for i := len(d.segs) - 1; i >= 0; i-- {
		if d.segs[i].has(h1, h2) {
			return true
		}
	}
	return false
}

// add adds a key, unless it may be held already.
func (d *dayBloom) add(h1, h2 uint64) {
	if d.has(h1, h2) {
		return
	}
	if len(d.segs) == 0 || d.n >= d.cap {
		d.cap = max(firstDayIDs, 2*d.cap)
		d.segs, d.n = append(d.segs, newBlockBloom(d.cap)), 0
	}
	d.segs[len(d.segs)-1].add(h1, h2)
	d.n++
}

// blockBloom is a Bloom filter whose filterHashes bits for a key are all
// in one block of 512 bits, a cache line: asking it for a key costs one
// miss of the processor's caches where a plain one costs up to seven, and
// a cycle asks each day's segments for each of its track events. It
// holds dayBitsPerID bits a key at its capacity, a power of two of
// blocks (a few more false positives than a plain filter of that size).
type blockBloom []uint64

func newBlockBloom(n int) blockBloom {
	blocks := 1 << bits.Len(uint(max(1, n*dayBitsPerID/512-1)))
	return make(blockBloom, 8*blocks)
}

// block returns the key's block, and the first bit and the step of its
// bits within it (from bits of h1 that the block's number does not use).
func (b blockBloom) block(h1 uint64) (words []uint64, at, step uint64) {
	i := int(h1&uint64(len(b)/8-1)) * 8
	return b[i : i+8 : i+8], h1 >> 55, (h1>>46)&511 | 1
}

func (b blockBloom) add(h1, _ uint64) {
	w, at, step := b.block(h1)
	for range filterHashes {
		w[at/64&7] |= 1 << (at % 64)
		at = (at + step) & 511
	}
}

func (b blockBloom) has(h1, _ uint64) bool {
	w, at, step := b.block(h1)
	for range filterHashes {
		if w[at/64&7]&(1<<(at%64)) == 0 {
			return false
		}
		at = (at + step) & 511
	}
	return true
}

// size is the keys the days hold.
func (t trackDays) size() int {
	n := 0
	for _, d := range t {
		for i := range d.segs {
			n += firstDayIDs << i // every segment but the last is full
		}
		n -= d.cap - d.n
	}
	return n
}

// dayOf is the day of t, in days since 1970-01-01 UTC.
func dayOf(t time.Time) int64 { return floorDiv(t.Unix(), 86400) }

func dayStart(day int64) time.Time { return time.Unix(day*86400, 0).UTC() }

// add adds the track events to days.
func (f *trackFilter) add(days trackDays, tracks []queueTracks) {
	for _, q := range tracks {
		for i := range q.ids {
			f.addOne(days, q.types[i], q.ids[i], q.ts[i])
		}
	}
}

func (f *trackFilter) addOne(days trackDays, typ, id string, ts time.Time) {
	day := dayOf(ts)
	d := days[day]
	if d == nil {
		d = &dayBloom{}
		days[day] = d
	}
	d.add(idHash(f.seed, typ, id))
}

// advance brings the filter to queue cycle c, whose queue rows hold the
// track events tracks (those of the events reads, which the cycle's ready
// definitions read), or, for an idle cycle (one that took no queue rows),
// to the last number of agg_queue_cycle taken, c. It drops the days
// before keep(the end of the latest day it holds) (from then on, every
// earlier day may hold events: a server running for months keeps only
// the days that new units' windows reach, trackKeep), and starts a build
// when there is none and the last began long enough ago; start runs it.
// It returns the days for the cycle's history step, or nil when the
// filter cannot tell, and the build that ended since the last cycle, if
// one did (well or not).
func (f *trackFilter) advance(c int64, idle bool, reads []string, tracks []queueTracks, keep func(time.Time) int64, start func(*trackBuild, []string)) (trackDays, *TrackFilterBuild) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return nil, nil
	}
	follows := c == f.last+1
	if idle {
		follows = c == f.last
	}
	if !follows || !covers(f.reads, reads) {
		f.days, f.build = nil, nil // another process's cycle came between, or new events are read
	}
	f.last = c
	var built *TrackFilterBuild
	if b := f.build; b != nil && b.done {
		f.build = nil
		built = &TrackFilterBuild{Keys: b.days.size(), Took: b.took, Err: b.err}
		if b.err == nil {
			f.days, f.from = b.days, b.from
		}
	}
	switch {
	case f.days != nil:
		if len(f.days) > 0 {
			if k := keep(dayStart(slices.Max(slices.Collect(maps.Keys(f.days))) + 1)); k > f.from {
				for d := range f.days {
					if d < k {
						delete(f.days, d)
					}
				}
				f.from = k
			}
		}
		f.add(f.days, tracks)
		if f.days.size() > maxTrackFilterIDs {
			f.days, f.off = nil, true
		}
		return f.days, built
	case f.build != nil:
		f.add(f.build.days, tracks)
		return nil, built
	}
	if len(reads) == 0 || !f.started.IsZero() && time.Since(f.started) < f.every {
		return nil, built // no history to read, or a build too recent
	}
	f.reads = slices.Sorted(slices.Values(reads))
	f.reads = slices.Compact(f.reads)
	f.started = time.Now()
	f.build = &trackBuild{days: trackDays{}, from: math.MinInt64, began: f.started}
	f.add(f.build.days, tracks) // the build sees them too; harmless twice
	start(f.build, slices.Clone(f.reads))
	return nil, built
}

// due says whether a cycle that takes no queue rows should advance the
// filter for definitions that read reads: a build has ended and waits to
// be taken up, or one would start (the filter is not built, or not for
// these events, and none began within every).
func (f *trackFilter) due(reads []string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.off || len(reads) == 0:
		return false
	case f.build != nil:
		return f.build.done
	case f.days != nil && covers(f.reads, reads):
		return false
	}
	return f.started.IsZero() || time.Since(f.started) >= f.every
}

// TrackFilterBuild says how a build of the filter of tracked days ended
// (see trackFilter): the (id, day) keys it holds, how long it read the
// events, and why it failed, if it did.
type TrackFilterBuild struct {
	Keys int
	Took time.Duration
	Err  error
}

// covers says whether the sorted events have holds every one of want.
func covers(have, want []string) bool {
	for _, e := range want {
		if _, ok := slices.BinarySearch(have, e); !ok {
			return false
		}
	}
	return true
}

// buildTracks reads every stored track event of the events reads into b,
// on a connection of the pool's own, in batches (each added under the
// filter's mu, while b is still the filter's build). It runs until done,
// the build is dropped, or the process closes the store.
func (db *DB) buildTracks(b *trackBuild, reads []string) {
	f := db.tracks
	defer f.wg.Done()
	// A server restarted on 10,000,000 events reads them all here, while
	// it ingests and aggregates: each row is hashed from its raw bytes,
	// with no allocation, and its day read from the binary timestamptz.
	const batch = 8192
	type key struct {
		day    int64
		h1, h2 uint64
	}
	keys := make([]key, 0, batch)
	flush := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, k := range keys {
			d := b.days[k.day]
			if d == nil {
				d = &dayBloom{}
				b.days[k.day] = d
			}
			d.add(k.h1, k.h2)
		}
		keys = keys[:0]
		return f.build == b && b.days.size() <= maxTrackFilterIDs
	}
	ctx, cancel := context.WithCancel(f.quit)
	defer cancel()
	err := func() error {
		from := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
		if b.from != math.MinInt64 {
			from = pgtype.Timestamptz{Time: dayStart(b.from), Valid: true}
		}
		rows, err := db.pool.Query(ctx, `SELECT unit_type, unit_id, ts FROM events
			WHERE type = 'track' AND event = ANY($1) AND ts >= $2`, reads, from)
		if err != nil {
			return err
		}
		defer rows.Close()
		fd := rows.FieldDescriptions()
		binaryTS := len(fd) == 3 && fd[2].Format == pgx.BinaryFormatCode && fd[2].DataTypeOID == pgtype.TimestamptzOID
		var ts time.Time
		chunk := time.Now()
		for rows.Next() {
			v := rows.RawValues()
			var k key
			switch {
			case binaryTS && len(v[2]) == 8: // microseconds since 2000-01-01 UTC
				k.day = floorDiv(int64(binary.BigEndian.Uint64(v[2]))+pgEpochMicros, 86_400_000_000)
			default:
				if err := rows.Scan(nil, nil, &ts); err != nil {
					return err
				}
				k.day = dayOf(ts)
			}
			k.h1, k.h2 = idHashBytes(f.seed, v[0], v[1])
			if keys = append(keys, k); len(keys) < batch {
				continue
			}
			if !flush() {
				return errTrackBuildDropped
			}
			// Paced: a build takes about a quarter of a core, not all of
			// one, from the cycles of a server that has just started.
			if pace := time.Since(chunk) * trackBuildPace; pace > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(pace):
				}
			}
			chunk = time.Now()
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !flush() {
			return errTrackBuildDropped
		}
		return nil
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	b.done, b.err, b.took = true, err, time.Since(b.began)
	if err == nil && b.days.size() > maxTrackFilterIDs {
		b.err, f.off = errTrackBuildDropped, true
	}
}

// pgEpochMicros is PostgreSQL's epoch, 2000-01-01 UTC, in microseconds
// since 1970-01-01 UTC.
const pgEpochMicros = 946_684_800_000_000

// floorDiv is a / b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// idHashBytes is idHash of the id's bytes: maphash hashes a string and
// its bytes alike.
func idHashBytes(seed maphash.Seed, typ, id []byte) (h1, h2 uint64) {
	h1 = maphash.Bytes(seed, id) ^ bits.RotateLeft64(maphash.Bytes(seed, typ), 17)
	return h1, h1>>33 | 1
}

type trackBuildError string

func (e trackBuildError) Error() string { return string(e) }

const errTrackBuildDropped = trackBuildError("the track filter's build was dropped")

// trackKeep is the first day a filter of tracked days needs to hold at
// now: two days before the longest CUPED period of the ready definitions.
// New exposures are near now, and their windows start after it. Only a
// unit exposed earlier looks further back, and it looks up every day
// before the filter's first.
func trackKeep(ready []aggDef, now time.Time) int64 {
	lower := 0
	for _, d := range ready {
		if d.metric != nil {
			lower = max(lower, d.metric.CUPEDHours)
		}
	}
	return dayOf(now.Add(-time.Duration(lower)*time.Hour)) - 2
}

// trackHorizon is the first day a new filter of tracked days reads: the
// trackKeep of now, or of the end of the latest partition with an event
// (visibleEventsEnd) if that is sooner (events stamped ahead of time do
// not move it); every day (math.MinInt64) when there is no such end (the
// default partition holds events, or none is seen).
func trackHorizon(ctx context.Context, tx pgx.Tx, ready []aggDef, now time.Time) int64 {
	end, err := visibleEventsEnd(ctx, tx)
	if err != nil || end.InfinityModifier != pgtype.Finite {
		return math.MinInt64 // an error aborts the cycle's transaction: its next statement reports it
	}
	if end.Time.Before(now) {
		now = end.Time
	}
	return trackKeep(ready, now)
}

// startTracks starts a build of the track filter in the background, of
// the days from b.from on.
func (db *DB) startTracks(b *trackBuild, reads []string) {
	if err := db.tracks.quit.Err(); err != nil { // closed: Close waits for no more builds
		b.done, b.err = true, err
		return
	}
	db.tracks.wg.Add(1)
	go db.buildTracks(b, reads)
}

// trackWindow is the ids whose events a history step looks up, each with
// the times to look them up between (an id may have several ranges).
type trackWindow struct {
	owners, types, ids []string
	from, to           []pgtype.Timestamptz
	probed             int // ids looked up
	quiet              int // ids left out: the filter holds no event of theirs in their window
}

func (w *trackWindow) add(owner, typ, id string, from, to pgtype.Timestamptz) {
	w.owners, w.types, w.ids = append(w.owners, owner), append(w.types, typ), append(w.ids, id)
	w.from, w.to = append(w.from, from), append(w.to, to)
}

// look adds an id (of owner) to look up in [from, to), where to may be
// +infinity: the whole window for nil held, else each run of consecutive
// days of it that held may hold events of the id in (every day before the
// filter's first may), or nothing when there is none. A false positive
// of the filter costs the lookup of its own day, not of the days between
// it and the id's events.
func (w *trackWindow) look(f *trackFilter, days []int64, held trackDays, owner, typ, id string, from, to pgtype.Timestamptz) {
	if held == nil {
		w.add(owner, typ, id, from, to)
		w.probed++
		return
	}
	h1, h2 := idHash(f.seed, typ, id)
	lo, hi := dayOf(from.Time), int64(1<<62)
	if to.InfinityModifier == pgtype.Finite {
		hi = dayOf(to.Time.Add(-time.Microsecond))
	}
	n := len(w.ids)
	emit := func(first, last int64) { // the days first to last
		a, b := from, to
		if s := dayStart(first); s.After(a.Time) {
			a.Time = s
		}
		if e := dayStart(last + 1); b.InfinityModifier != pgtype.Finite || e.Before(b.Time) {
			b = pgtype.Timestamptz{Time: e, Valid: true}
		}
		w.add(owner, typ, id, a, b)
	}
	var first, last int64
	open := lo < f.from // the days before the filter's first may hold events
	if open {
		first, last = lo, min(hi, f.from-1)
	}
	i := sort.Search(len(days), func(i int) bool { return days[i] >= max(lo, f.from) })
	for ; i < len(days) && days[i] <= hi; i++ {
		d := days[i]
		if !held[d].has(h1, h2) {
			continue
		}
		if open && d == last+1 {
			last = d
			continue
		}
		if open {
			emit(first, last)
		}
		first, last, open = d, d, true
	}
	if open {
		emit(first, last)
	}
	if len(w.ids) == n {
		w.quiet++
	} else {
		w.probed++
	}
}
