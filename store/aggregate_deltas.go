package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// New track events applied as deltas to the values of the units that own
// them (store/aggregate.go describes the whole).

// queueTracks are the track events of one queue row, as its columns.
type queueTracks struct {
	types, ids, events []string
	ts                 []time.Time
	vals               []pgtype.Float8
}

// unitKey is a unit: its type and id.
type unitKey struct{ typ, id string }

// stagedGroup is the staged events of one owner type and event name, as
// columns (a row of agg_staged_tracks holds a chunk of them).
type stagedGroup struct {
	owners []string
	ts     []time.Time
	vals   []pgtype.Float8
}

func (g *stagedGroup) add(owner string, ts time.Time, v pgtype.Float8) {
	g.owners, g.ts, g.vals = append(g.owners, owner), append(g.ts, ts), append(g.vals, v)
}

// stagedCycle is what a cycle staged, kept in memory for the folds that
// follow it in the same process (they need not read it back), by owner
// type and event name.
type stagedCycle struct {
	cycle  int64
	groups map[[2]string]*stagedGroup

	mu     sync.Mutex
	owners map[string]*sharedOwners // byOwner's, by key
}

// sharedOwners is a cycle's staged events by owner, built once for the
// folds that read them (stagedCycle.byOwner).
type sharedOwners struct {
	once    sync.Once
	byOwner map[string][]foldEvent
	err     error
}

// byOwner returns what build returns, built once for each key: the folds
// of a cycle run in parallel, and those of an experiment's definitions
// that read the same events need the same map, which none changes. A
// fold that finds it building waits for it.
func (s *stagedCycle) byOwner(key string, build func() (map[string][]foldEvent, error)) (map[string][]foldEvent, error) {
	s.mu.Lock()
	if s.owners == nil {
		s.owners = map[string]*sharedOwners{}
	}
	o := s.owners[key]
	if o == nil {
		o = &sharedOwners{}
		s.owners[key] = o
	}
	s.mu.Unlock()
	o.once.Do(func() { o.byOwner, o.err = build() })
	return o.byOwner, o.err
}

// stagedChunk is the most events one row of agg_staged_tracks holds: a
// chunk of a few megabytes, however many events a cycle stages.
const stagedChunk = 50_000

// stageTracks writes the cycle's new track events (tracks: of the queue
// rows, those that a metric reads) to agg_staged_tracks under a new cycle
// number, each with the units that own it: the unit itself (for
// experiments on its unit type) and its identity root (for customer
// experiments), for units not recomputed whole in this cycle (dirty: a
// unit's window sums only grow by the event's contribution, and a
// conversion only turns on, so its history need not be read again). Each
// definition adds them later, on a connection of its own (foldStaged).
// leftovers says that staged events of earlier cycles are still to be
// added by some definition: then every unit this cycle recomputed is
// recorded, since its recomputation counted them.
//
// The owners are resolved here, in Go, and the events written as a few
// rows of arrays: the statements look up only what the events cannot say
// (the identity link of each distinct unit that links may hold, by index)
// and write no row per event. It returns what it staged, or nil.
func stageTracks(ctx context.Context, tx pgx.Tx, rep *AggregateReport, oldest time.Time, leftovers bool, last *time.Time,
	tracks []queueTracks, dirty map[unitKey]struct{}, links *linkFilter) (*stagedCycle, error) {
	if rep.Tracks == 0 && !(leftovers && rep.Pairs > 0) {
		return nil, nil
	}
	// The distinct units of the events (each looked up once), and each
	// event's unit: its index in units, or -1 for a unit recomputed whole.
	n := 0
	for _, q := range tracks {
		n += len(q.ids)
	}
	index := make(map[unitKey]int32, n/2)
	units := make([]trackUnit, 0, n/2)
	at := make([][]int32, len(tracks))
	for r, q := range tracks {
		at[r] = make([]int32, len(q.ids))
		for i := range q.ids {
			k := unitKey{q.types[i], q.ids[i]}
			j, ok := index[k]
			if !ok {
				j = int32(len(units))
				if _, recomputed := dirty[k]; recomputed {
					j = -1
				} else {
					units = append(units, trackUnit{key: k})
				}
				index[k] = j
			}
			at[r][i] = j
		}
	}
	var cycle int64
	if err := tx.QueryRow(ctx, `SELECT nextval('agg_cycle')`).Scan(&cycle); err != nil {
		return nil, err
	}
	staged := &stagedCycle{cycle: cycle, groups: map[[2]string]*stagedGroup{}}
	count := int64(0)
	if len(units) > 0 {
		if err := resolveRoots(ctx, tx, units, index, links); err != nil {
			return nil, err
		}
		// A cycle's events have a few names and owner types: the groups
		// are found by a scan of the few, not a map lookup an event. A
		// first pass counts each group's events, so that the second
		// fills columns of the right size.
		var groups []*stagedGroup
		var groupKeys [][2]string
		var sizes []int
		group := func(ownerType, event string) int {
			for i, k := range groupKeys {
				if k[1] == event && k[0] == ownerType {
					return i
				}
			}
			groups, groupKeys, sizes = append(groups, &stagedGroup{}), append(groupKeys, [2]string{ownerType, event}), append(sizes, 0)
			return len(groups) - 1
		}
		each := func(f func(g int, owner string, q *queueTracks, i int)) {
			for r := range tracks {
				q := &tracks[r]
				for i, e := range q.events {
					j := at[r][i]
					if j < 0 {
						continue
					}
					u := &units[j]
					if u.key.typ != "customer" {
						f(group(u.key.typ, e), u.key.id, q, i)
					}
					if u.root != "" {
						f(group("customer", e), u.root, q, i)
					}
				}
			}
		}
		each(func(g int, _ string, _ *queueTracks, _ int) { sizes[g]++ })
		for i, g := range groups {
			g.owners, g.ts, g.vals = make([]string, 0, sizes[i]), make([]time.Time, 0, sizes[i]), make([]pgtype.Float8, 0, sizes[i])
			staged.groups[groupKeys[i]] = g
			count += int64(sizes[i])
		}
		each(func(g int, owner string, q *queueTracks, i int) { groups[g].add(owner, q.ts[i], q.vals[i]) })
		if err := writeStaged(ctx, tx, staged); err != nil {
			return nil, err
		}
	}
	// The units recomputed whole: those that own a staged event (of this
	// cycle, or of any with leftovers).
	pairs := int64(0)
	if rep.Pairs > 0 && (count > 0 || leftovers) {
		sql := `INSERT INTO agg_staged_pairs (experiment, unit_id, cycle) SELECT experiment, unit_id, $1 FROM a_pairs`
		args := []any{cycle}
		if !leftovers {
			// Every unit with a staged event owns it, or its root does.
			owners := make(map[string]bool, len(units))
			for _, u := range units {
				if u.key.typ != "customer" {
					owners[u.key.id] = true
				}
				if u.root != "" {
					owners[u.root] = true
				}
			}
			var exps, ids []string
			rows, err := tx.Query(ctx, `SELECT experiment, unit_id FROM a_pairs`)
			if err != nil {
				return nil, err
			}
			var exp, id string
			if _, err := pgx.ForEachRow(rows, []any{&exp, &id}, func() error {
				if owners[id] {
					exps, ids = append(exps, exp), append(ids, id)
				}
				return nil
			}); err != nil {
				return nil, err
			}
			sql = `INSERT INTO agg_staged_pairs (experiment, unit_id, cycle) SELECT e, u, $1 FROM unnest($2::text[], $3::text[]) AS k(e, u)`
			args = append(args, exps, ids)
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		pairs = tag.RowsAffected()
	}
	// A cycle that staged nothing (every track event's unit recomputed
	// whole) leaves the definitions nothing to fold.
	if count == 0 && pairs == 0 {
		rep.lap("track owners", last)
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO agg_staged_cycles (cycle, at, events) VALUES ($1, $2, $3)`, cycle, oldest, count); err != nil {
		return nil, err
	}
	rep.lap("track owners", last)
	return staged, nil
}

// trackRoots resolves the ids $1, $2 (unit types and ids, in key order) to
// their identity roots (walkByProbe): each id's own link looked up by
// index, and only the linked ones walk on. It returns the linked ids, with their root
// (NULL where the end of the chain is itself merged away: a cycle of
// links, or one deeper than the walk goes).
var trackRoots = fmt.Sprintf(walkByProbe, `(SELECT * FROM unnest($1::text[], $2::text[]) AS k(unit_type, unit_id))`) + `,
ends AS (
    SELECT DISTINCT ON (unit_type, unit_id) unit_type, unit_id, root FROM walk ORDER BY unit_type, unit_id, depth DESC
)
SELECT unit_type, unit_id,
    CASE WHEN NOT EXISTS (SELECT 1 FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = e.root AND a.customer_id <> e.root OFFSET 0)
         THEN root END
FROM ends e`

// trackUnit is a unit with staged events, and its identity root.
type trackUnit struct {
	key  unitKey
	root string // "" none
}

// resolveRoots sets the identity root of each of units (index: each
// one's place): a customer without a link is its own; a linked id has the
// root its chain of links ends at; other ids have none. Only the ids that
// links may hold are looked up.
func resolveRoots(ctx context.Context, tx pgx.Tx, units []trackUnit, index map[unitKey]int32, links *linkFilter) error {
	// The ids in key order (type, then id), for the index lookups.
	byType := map[string][]string{}
	links.mu.Lock()
	for i := range units {
		k := units[i].key
		if k.typ == "customer" {
			units[i].root = k.id
		}
		if links.may(k.typ, k.id) {
			byType[k.typ] = append(byType[k.typ], k.id)
		}
	}
	links.mu.Unlock()
	if len(byType) == 0 {
		return nil
	}
	typeOrder := slices.Sorted(maps.Keys(byType))
	types, ids := make([]string, 0, len(units)), make([]string, 0, len(units))
	for _, t := range typeOrder {
		sortIDs(byType[t])
		for _, id := range byType[t] {
			types, ids = append(types, t), append(ids, id)
		}
	}
	typesArr, idsArr := newBinArray(oidText, len(types)*14), newBinArray(oidText, len(ids)*16)
	for i := range types {
		typesArr.text(types[i])
		idsArr.text(ids[i])
	}
	p := &wireParams{}
	p.array(typesArr)
	p.array(idsArr)
	return queryPrepared(ctx, tx, "flywheel_track_roots", trackRoots, p, func(vals [][]byte) error {
		typ, id := string(vals[0]), string(vals[1])
		j, ok := index[unitKey{typ, id}]
		if !ok || j < 0 {
			return fmt.Errorf("track owners: the walk returned %s %q, which it was not given", typ, id)
		}
		units[j].root = ""
		if vals[2] != nil {
			units[j].root = string(vals[2])
		}
		return nil
	})
}

// writeStaged writes a cycle's staged events to agg_staged_tracks, in
// chunks of at most stagedChunk events, a statement each, their arrays in
// binary (binArray).
func writeStaged(ctx context.Context, tx pgx.Tx, s *stagedCycle) error {
	const insert = `INSERT INTO agg_staged_tracks (cycle, owner_type, event, owners, ts, vals) VALUES ($1, $2, $3, $4, $5, $6)`
	keys := slices.Collect(maps.Keys(s.groups))
	slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1])) })
	cycle := binary.BigEndian.AppendUint64(nil, uint64(s.cycle))
	// A statement a chunk, each Bind in a buffer of its size
	// (queryPrepared): chunks sent as one pgconn.Batch grew its buffer to
	// the whole cycle's tens of megabytes by copies (BENCHMARKS.md, "pgx's
	// write buffer sized once").
	for _, k := range keys {
		g := s.groups[k]
		for i := 0; i < len(g.owners); i += stagedChunk {
			j := min(i+stagedChunk, len(g.owners))
			owners, ts, vals := newBinArray(oidText, (j-i)*16), newBinArray(oidTimestamptz, (j-i)*12), newBinArray(oidFloat8, (j-i)*12)
			for k := i; k < j; k++ {
				owners.text(g.owners[k])
				ts.timestamptz(g.ts[k])
				if g.vals[k].Valid {
					vals.float8(g.vals[k].Float64)
				} else {
					vals.null()
				}
			}
			p := &wireParams{}
			p.add(cycle, 1)
			p.text(k[0])
			p.text(k[1])
			p.array(owners)
			p.array(ts)
			p.array(vals)
			if err := queryPrepared(ctx, tx, "flywheel_write_staged", insert, p, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// collectStaged removes what every definition has folded from the staging
// tables, and says whether staged events remain that some definition has
// not (leftovers: a definition's fold failed, or its process stopped,
// after the cycle that staged them). Only the aggregation, under its lock,
// reads these tables, so emptying them whole is safe.
func collectStaged(ctx context.Context, tx pgx.Tx) (leftovers bool, err error) {
	var latest, folded *int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT max(cycle) FROM agg_staged_cycles),
		(SELECT min(folded_cycle) FROM agg_defs WHERE metric <> '')`).Scan(&latest, &folded); err != nil {
		return false, err
	}
	switch {
	case latest == nil:
		return false, nil
	case folded == nil || *folded >= *latest:
		_, err = tx.Exec(ctx, `TRUNCATE agg_staged_tracks, agg_staged_pairs; DELETE FROM agg_staged_cycles`)
		return false, err
	}
	for _, table := range []string{"agg_staged_tracks", "agg_staged_pairs", "agg_staged_cycles"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE cycle <= $1`, *folded); err != nil {
			return false, err
		}
	}
	return true, nil
}

// stagedFolds is what the definitions of a cycle still have to fold: each
// definition behind the latest staged cycle, with the cycle it has folded.
type stagedFolds struct {
	latest int64
	pairs  bool // agg_staged_pairs has rows: folds check each event's owner
	defs   []stagedFold
}

type stagedFold struct {
	def    aggDef
	folded int64
}

// pendingFolds returns the definitions of ready behind the latest staged
// cycle (every definition in agg_defs is ready or was just built, at the
// latest cycle, when the cycle's transaction ends).
func pendingFolds(ctx context.Context, tx pgx.Tx, ready []aggDef) (stagedFolds, error) {
	var f stagedFolds
	var latest *int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT max(cycle) FROM agg_staged_cycles),
		EXISTS (SELECT 1 FROM agg_staged_pairs)`).Scan(&latest, &f.pairs); err != nil || latest == nil {
		return f, err
	}
	f.latest = *latest
	rows, err := tx.Query(ctx, `SELECT experiment, metric, folded_cycle FROM agg_defs
		WHERE metric <> '' AND folded_cycle < $1 ORDER BY experiment, metric`, f.latest)
	if err != nil {
		return f, err
	}
	type behind struct {
		exp, metric string
		folded      int64
	}
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (b behind, err error) {
		err = r.Scan(&b.exp, &b.metric, &b.folded)
		return b, err
	})
	if err != nil {
		return f, err
	}
	for _, b := range bs {
		i := slices.IndexFunc(ready, func(d aggDef) bool { return d.exp.Key == b.exp && d.key() == b.metric })
		if i < 0 || ready[i].metric == nil {
			return f, fmt.Errorf("definition %s/%s has staged events to fold but is not aggregated", b.exp, b.metric)
		}
		f.defs = append(f.defs, stagedFold{def: ready[i], folded: b.folded})
	}
	return f, nil
}

// foldStaged adds the staged events after the definition's folded cycle
// to its units' values, in one transaction on a connection of its own, and
// records the latest cycle as folded, reporting what it did in rep.
func (db *DB) foldStaged(ctx context.Context, f stagedFold, latest int64, pairs bool, mem *stagedCycle, rep *Fold) error {
	d, m := f.def, f.def.metric
	// What the fold read and wrote goes into the unit cache only once its
	// transaction has committed; until then the cache has no copy of the
	// definition (take removed it), so a fold that fails leaves none.
	var record func(epoch int64)
	var epoch int64
	err := pgx.BeginFunc(ctx, db.agg, func(tx pgx.Tx) error {
		// The fold sorts its units' days (see Aggregate).
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
			return err
		}
		var read int64 // the epoch the fold read: no other transaction may have moved it since
		var err error
		if record, read, err = db.foldTracks(ctx, tx, d, f.folded, pairs, mem, rep); err != nil {
			return fmt.Errorf("%s/%s: %w", d.exp.Key, m.Key, err)
		}
		err = tx.QueryRow(ctx, `UPDATE agg_defs SET folded_cycle = $3, epoch = nextval('agg_epoch')
			WHERE experiment = $1 AND metric = $2 AND folded_cycle = $4 AND epoch = $5
			RETURNING epoch`, d.exp.Key, m.Key, latest, f.folded, read).Scan(&epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%s/%s: folded cycle or epoch changed during its fold", d.exp.Key, m.Key)
		}
		return err
	})
	if err == nil && record != nil {
		record(epoch)
	}
	return err
}
