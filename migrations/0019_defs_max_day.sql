-- +goose Up
-- The latest day of any unit's day row of each metric definition (an upper
-- bound: it only grows). The tracks step asks whether a unit already has a
-- day after its new events' first (late) only when that day is before this
-- one: events that arrive in order, on the latest day, need no lookup in
-- agg_unit_days at all (store/aggregate_deltas.go). NULL: not known, always
-- look.
ALTER TABLE agg_defs ADD COLUMN max_day date;
UPDATE agg_defs SET max_day = '-infinity' WHERE metric <> '';
UPDATE agg_defs d SET max_day = m.day
FROM (SELECT experiment, metric, max(day) AS day FROM agg_unit_days GROUP BY 1, 2) m
WHERE d.experiment = m.experiment AND d.metric = m.metric;

-- +goose Down
ALTER TABLE agg_defs DROP COLUMN max_day;
