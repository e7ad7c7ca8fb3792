package store_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
)

// BenchmarkWriteEvents times WriteEvents alone, one connection, on groups
// of 2,000 new events in the mix of `flywheel bench ingest` (10 %
// exposures with attributes, 85 % tracks with a value, 5 % identifies,
// over 200,000 customers; time-ordered ids, as UUIDv7 are), so that a
// change to the write path can be compared without the HTTP server, the
// clients and a second writer sharing the two cores. The same events in
// the same order every run: two builds compare with -benchtime=Nx. The
// events' indexes grow as it runs, as a day's partition does.
func BenchmarkWriteEvents(b *testing.B) {
	const group = 2000
	ctx := context.Background()
	db := newDB(b)
	e := &flywheel.Experiment{Key: "bench-write", UnitType: "customer", Traffic: 1, Status: flywheel.StatusRunning,
		Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5}}}
	e.Normalize()
	if _, err := db.CreateExperiment(ctx, e, 0, "bench"); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	var n uint64
	next := func() flywheel.Event {
		n++
		unit := "c-" + strconv.FormatUint(n*7919%200_000, 10)
		ts := now.Add(time.Duration(n) * time.Millisecond)
		var ev flywheel.Event
		switch n % 20 {
		case 0, 1:
			ev = exposure("customer", unit, e.Key, []string{"control", "treatment"}[n%3%2], ts, `{"device":"mobile"}`)
		case 2:
			ev = identify("device", "d-"+strconv.FormatUint(n, 10), unit, ts)
		default:
			ev = track(unit, "purchase", ts)
			v := float64(n%10000) / 100
			ev.Value = &v
		}
		ev.ID = benchID(now, n)
		ev.ReceivedAt = ts
		return ev
	}
	events := make([]flywheel.Event, group)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := range events {
			events[i] = next()
		}
		b.StartTimer()
		acc, err := db.WriteEvents(ctx, events)
		if err != nil {
			b.Fatal(err)
		}
		if len(acc) != group {
			b.Fatalf("%d of %d events accepted", len(acc), group)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*group), "ns/event")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEventIndexes times COPYing groups of 2,000 track rows (over
// 200,000 customers, time-ordered ids) into plain tables with events'
// columns that differ only in their index: none, the UUIDv7 id's primary
// key (what issue 13's ceiling pays), the hash index on unit_id that
// events has (migration 0017), a B-tree on unit_id, and a B-tree on
// hashtext(unit_id). One connection, each table growing as a day's
// partition does: run it with
// -benchtime=2000x (4,000,000 rows a table) and compare the ns/row of each
// index with "none" from the same run (BENCHMARKS.md, "What the unit
// index costs").
func BenchmarkEventIndexes(b *testing.B) {
	const group = 2000
	ctx := context.Background()
	db := newDB(b)
	for _, c := range []struct{ name, index string }{
		{"none", ""},
		{"id-pkey", "ALTER TABLE %s ADD PRIMARY KEY (id)"},
		{"unit-hash", "CREATE INDEX ON %s USING hash (unit_id)"},
		{"unit-btree", "CREATE INDEX ON %s (unit_id)"},
		{"unit-hashtext", "CREATE INDEX ON %s ((hashtext(unit_id)))"},
	} {
		b.Run(c.name, func(b *testing.B) {
			table := "bench_idx_" + strings.ReplaceAll(c.name, "-", "_")
			if _, err := db.Pool().Exec(ctx, "DROP TABLE IF EXISTS "+table+"; CREATE TABLE "+table+" (LIKE events)"); err != nil {
				b.Fatal(err)
			}
			if c.index != "" {
				if _, err := db.Pool().Exec(ctx, fmt.Sprintf(c.index, table)); err != nil {
					b.Fatal(err)
				}
			}
			cols := []string{"unit_type", "unit_id", "id", "type", "ts", "received_at", "event", "value"}
			now := time.Now().UTC().Truncate(time.Hour)
			rows := make([][]any, group)
			var n uint64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for i := range rows {
					n++
					ts := now.Add(time.Duration(n) * time.Millisecond)
					rows[i] = []any{"customer", "c-" + strconv.FormatUint(n*7919%200_000, 10), benchID(now, n), "track", ts, ts,
						"purchase", float64(n%10000) / 100}
				}
				b.StartTimer()
				copied, err := db.Pool().CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
				if err != nil {
					b.Fatal(err)
				}
				if copied != group {
					b.Fatalf("copied %d of %d rows", copied, group)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*group), "ns/row")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchID is the benchmarks' n-th event id: a UUIDv7 of the time now, n in
// its low bits, so that ids grow as a client's v7 ids do.
func benchID(now time.Time, n uint64) [16]byte {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], uint64(now.UnixMilli())<<16|0x7000) // version 7
	binary.BigEndian.PutUint64(id[8:], 0x8000_0000_0000_0000|n)
	return id
}
