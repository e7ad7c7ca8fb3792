-- +goose Up
-- Incremental aggregation (store/aggregate.go). Results read these tables
-- instead of rescanning events.
--
-- agg_queue is the outbox of the ingestion path: every transaction that
-- stores events adds one row naming the units it touched, so a unit
-- becomes visible to the aggregator exactly when its events do (commit
-- order, not clock order). The aggregator deletes the rows it folds in.
--
-- unit_* name the units to recompute whole (new exposures, identity links,
-- consent); track_* are the new track events, which the aggregator adds to
-- their owners' values without reading their history again.
CREATE TABLE agg_queue (
    at            timestamptz        NOT NULL, -- the oldest receipt in the row: lag is now - min(at)
    unit_types    text[]             NOT NULL,
    unit_ids      text[]             NOT NULL,
    track_types   text[]             NOT NULL DEFAULT '{}',
    track_ids     text[]             NOT NULL DEFAULT '{}',
    track_ts      timestamptz[]      NOT NULL DEFAULT '{}',
    track_events  text[]             NOT NULL DEFAULT '{}',
    track_values  double precision[] NOT NULL DEFAULT '{}'
);

-- The definitions aggregated for each experiment: the metric '' is the
-- experiment's units themselves (arms, exclusions). hash covers everything
-- that shapes a unit's value; when it changes the aggregate is rebuilt.
CREATE TABLE agg_defs (
    experiment  text             NOT NULL,
    metric      text             NOT NULL,
    hash        text             NOT NULL,
    cap         double precision, -- the fixed cap applied to variant sums
    built_at    timestamptz      NOT NULL,
    PRIMARY KEY (experiment, metric)
);

-- One row per exposed unit and definition: the unit's uncapped value (y),
-- its pre-exposure value (x) and ratio parts, and its state: 0 analysed,
-- 1 exposed to several variants, 2 opted out.
CREATE TABLE agg_units (
    experiment  text             NOT NULL,
    metric      text             NOT NULL,
    unit_id     text             NOT NULL,
    unit_type   text             NOT NULL,
    variant     text             NOT NULL,
    first_ts    timestamptz      NOT NULL,
    state       smallint         NOT NULL,
    y           double precision NOT NULL,
    x           double precision NOT NULL,
    num         double precision NOT NULL,
    den         double precision NOT NULL,
    PRIMARY KEY (experiment, metric, unit_id)
) WITH (fillfactor = 70); -- room for HOT updates: a delta rewrites no index
CREATE INDEX agg_units_first ON agg_units (experiment, metric, first_ts);
CREATE INDEX agg_units_unit ON agg_units (unit_id);

-- The sufficient statistics per definition and variant, over analysed
-- units (state 0), with the definition's fixed cap applied. numeric keeps
-- the running sums exact however many times a unit's value changes.
CREATE TABLE agg_variants (
    experiment  text    NOT NULL,
    metric      text    NOT NULL,
    variant     text    NOT NULL,
    units       bigint  NOT NULL,
    multiple    bigint  NOT NULL,
    opted_out   bigint  NOT NULL,
    conversions numeric NOT NULL,
    sum         numeric NOT NULL,
    sumsq       numeric NOT NULL,
    sumx        numeric NOT NULL,
    sumxsq      numeric NOT NULL,
    sumxy       numeric NOT NULL,
    sumnum      numeric NOT NULL,
    sumden      numeric NOT NULL,
    sumnumsq    numeric NOT NULL,
    sumdensq    numeric NOT NULL,
    sumnumden   numeric NOT NULL,
    PRIMARY KEY (experiment, metric, variant)
);

-- The analysed units of each variant by hour of first exposure: results
-- count the units whose metric window has not passed (maturing) from it,
-- reading agg_units only for the hour at the boundary.
CREATE TABLE agg_first_hours (
    experiment  text        NOT NULL,
    variant     text        NOT NULL,
    hour        timestamptz NOT NULL,
    units       bigint      NOT NULL,
    PRIMARY KEY (experiment, variant, hour)
);

-- Crossover of experiments on devices: per customer (identity root) linked
-- to enrolled units, how many variants those units saw; agg_crossover_totals
-- keeps the counts the results read.
CREATE TABLE agg_crossover (
    experiment  text    NOT NULL,
    root        text    NOT NULL,
    variants    integer NOT NULL,
    PRIMARY KEY (experiment, root)
);
CREATE INDEX agg_crossover_root ON agg_crossover (root);
CREATE TABLE agg_crossover_totals (
    experiment  text    PRIMARY KEY,
    customers   bigint  NOT NULL,
    mixed       bigint  NOT NULL
);

-- The customer a link replaced when a link with an earlier timestamp
-- arrived (ingestion reads it back to queue that customer for
-- aggregation: a statement's snapshot may not show the replaced link when
-- another transaction committed it concurrently). Erasure clears it.
ALTER TABLE aliases ADD COLUMN replaced text;

-- +goose Down
ALTER TABLE aliases DROP COLUMN replaced;
DROP TABLE agg_first_hours;
DROP TABLE agg_crossover_totals;
DROP TABLE agg_crossover;
DROP TABLE agg_variants;
DROP TABLE agg_units;
DROP TABLE agg_defs;
DROP TABLE agg_queue;
