-- +goose Up
-- Per-day contributions of each unit to each metric (store/aggregate.go):
-- the unit's events in the metric's window, summed by UTC day of the event.
-- The timeseries of results is computed from these rows instead of the
-- events. Rows are appended by the aggregator (a recomputed unit's rows are
-- replaced, new events add rows), so several rows may share a unit and day.
CREATE TABLE agg_unit_days (
    experiment  text             NOT NULL,
    metric      text             NOT NULL,
    unit_id     text             NOT NULL,
    day         date             NOT NULL,
    n           double precision NOT NULL, -- events
    v           double precision NOT NULL, -- sum of their values
    num         double precision NOT NULL, -- ratio: numerator events' values (1 when none)
    den         double precision NOT NULL  -- ratio: denominator events' values (1 when none)
);
-- unit_id first: a cycle looks up the units it names, erasure a unit's ids.
CREATE INDEX agg_unit_days_unit ON agg_unit_days (unit_id, experiment, metric);

-- +goose Down
DROP TABLE agg_unit_days;
