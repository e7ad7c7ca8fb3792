-- +goose Up
-- Each unit row holds its latest day with events in the window (last_day,
-- with that day's sums last_n, last_v, last_num, last_den), and
-- agg_unit_days only the days before it. Events mostly arrive on a unit's
-- latest day, so the tracks step adds them to the unit row it writes
-- anyway, and writes a day row only when a unit's latest day moves on
-- (store/aggregate_fold.go): the day rows' upserts were about 40 % of its
-- time (BENCHMARKS.md, "A unit's last day in its row"). Whether a unit's
-- new events are late (before a day it has) is read off the row too, so
-- agg_defs.max_day, which told when to look, goes.
ALTER TABLE agg_units
    ADD COLUMN last_day date,
    ADD COLUMN last_n   double precision NOT NULL DEFAULT 0,
    ADD COLUMN last_v   double precision NOT NULL DEFAULT 0,
    ADD COLUMN last_num double precision NOT NULL DEFAULT 0,
    ADD COLUMN last_den double precision NOT NULL DEFAULT 0;
UPDATE agg_units a SET last_day = d.day, last_n = d.n, last_v = d.v, last_num = d.num, last_den = d.den
FROM (SELECT DISTINCT ON (unit_id, experiment, metric) unit_id, experiment, metric, day, n, v, num, den
      FROM agg_unit_days ORDER BY unit_id, experiment, metric, day DESC) d
WHERE a.experiment = d.experiment AND a.metric = d.metric AND a.unit_id = d.unit_id;
DELETE FROM agg_unit_days d USING agg_units a
WHERE a.experiment = d.experiment AND a.metric = d.metric AND a.unit_id = d.unit_id AND d.day >= a.last_day;
ALTER TABLE agg_defs DROP COLUMN max_day;

-- +goose Down
INSERT INTO agg_unit_days (experiment, metric, unit_id, day, n, v, num, den)
SELECT experiment, metric, unit_id, last_day, last_n, last_v, last_num, last_den FROM agg_units WHERE last_day IS NOT NULL;
ALTER TABLE agg_units DROP COLUMN last_day, DROP COLUMN last_n, DROP COLUMN last_v, DROP COLUMN last_num, DROP COLUMN last_den;
ALTER TABLE agg_defs ADD COLUMN max_day date;
UPDATE agg_defs SET max_day = '-infinity' WHERE metric <> '';
UPDATE agg_defs d SET max_day = m.day
FROM (SELECT experiment, metric, max(day) AS day FROM agg_unit_days GROUP BY 1, 2) m
WHERE d.experiment = m.experiment AND d.metric = m.metric;
