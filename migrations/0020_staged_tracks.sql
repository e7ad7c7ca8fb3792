-- +goose Up
-- A cycle's new track events, staged for each metric definition to add on
-- its own connection (store/aggregate_deltas.go). A cycle's first
-- transaction takes the queue rows and writes their tracks here, with the
-- owners resolved, under a cycle number; each definition then adds the
-- staged rows numbered after its folded_cycle and raises folded_cycle, in
-- one transaction of its own, in parallel with the others. Only the
-- aggregation (under its lock) reads or writes these tables; rows every
-- definition has folded are removed by the next cycle.
CREATE SEQUENCE agg_cycle;

-- Each staged event, with the unit whose value it adds to (owner: the
-- unit itself, or its identity root for customer experiments).
CREATE TABLE agg_staged (
    cycle       bigint           NOT NULL,
    owner_type  text             NOT NULL,
    owner       text             NOT NULL,
    ts          timestamptz      NOT NULL,
    event       text             NOT NULL,
    value       double precision
);

-- The units a cycle recomputed whole, per experiment, that own staged
-- events: a definition leaves out the staged events of a unit that a cycle
-- at or after the events' own recomputed from all of its events.
CREATE TABLE agg_staged_pairs (
    experiment  text             NOT NULL,
    unit_id     text             NOT NULL,
    cycle       bigint           NOT NULL,
    PRIMARY KEY (experiment, unit_id, cycle)
);

-- Each cycle that staged events: the oldest receipt of its queue rows and
-- how many events it staged (results' pending_events and as_of count the
-- cycles some definition has not folded yet).
CREATE TABLE agg_staged_cycles (
    cycle       bigint           PRIMARY KEY,
    at          timestamptz      NOT NULL,
    events      bigint           NOT NULL
);

-- The last cycle whose staged events a definition has added (a definition
-- built from scratch counts every event up to its cycle).
ALTER TABLE agg_defs ADD COLUMN folded_cycle bigint NOT NULL DEFAULT 0;

-- +goose Down
-- A definition that has not folded every staged event is rebuilt from the
-- events (an empty hash never matches).
UPDATE agg_defs SET hash = '' WHERE metric <> ''
    AND folded_cycle < (SELECT COALESCE(max(cycle), 0) FROM agg_staged_cycles);
ALTER TABLE agg_defs DROP COLUMN folded_cycle;
DROP TABLE agg_staged_cycles;
DROP TABLE agg_staged_pairs;
DROP TABLE agg_staged;
DROP SEQUENCE agg_cycle;
