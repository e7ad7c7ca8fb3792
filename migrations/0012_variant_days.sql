-- +goose Up
-- The timeseries read per-variant, per-day statistics kept by the
-- aggregator (store/aggregate_days.go) instead of every unit's days: the
-- change on each day of the cumulative sums of the analysed units, with
-- the definition's fixed cap applied. A timeseries is then a running sum
-- over a few hundred rows, whatever the number of units.
--
-- A unit's days are kept one row per day (upserted), so that its running
-- values are summed in one fixed order, and what a later change subtracts
-- is exactly what was added (the sums are numeric, as in agg_variants).
-- Metric definitions are rebuilt: their hash names this version.
DELETE FROM agg_defs WHERE metric <> '';
TRUNCATE agg_unit_days;
DROP INDEX agg_unit_days_unit;
-- unit_id first: a cycle looks up the units it names, erasure a unit's ids.
ALTER TABLE agg_unit_days ADD PRIMARY KEY (unit_id, experiment, metric, day);

CREATE TABLE agg_variant_days (
    experiment  text    NOT NULL,
    metric      text    NOT NULL,
    variant     text    NOT NULL,
    day         date    NOT NULL,
    units       bigint  NOT NULL, -- analysed units first exposed on the day
    sum         numeric NOT NULL, -- the day's change of the sum of values
    sumsq       numeric NOT NULL, -- ... of their squares
    sumnum      numeric NOT NULL, -- ratio parts, their squares and product
    sumden      numeric NOT NULL,
    sumnumsq    numeric NOT NULL,
    sumdensq    numeric NOT NULL,
    sumnumden   numeric NOT NULL,
    PRIMARY KEY (experiment, metric, variant, day)
);

-- +goose Down
DROP TABLE agg_variant_days;
DELETE FROM agg_defs WHERE metric <> '';
ALTER TABLE agg_unit_days DROP CONSTRAINT agg_unit_days_pkey;
CREATE INDEX agg_unit_days_unit ON agg_unit_days (unit_id, experiment, metric);
