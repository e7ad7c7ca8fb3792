-- +goose Up
-- agg_units_first serves the count of maturing units (store/results_agg.go),
-- which reads the units definition's rows (metric '') alone. Indexed for
-- that definition only, it is a third of the size, a metric's new unit
-- row writes no entry in it, and a lookup of a metric's unit row can use
-- only the primary key: the fold's write (store/aggregate_fold.go) looks
-- each row up by its key, so that PostgreSQL prunes the row's page first.
DROP INDEX agg_units_first;
CREATE INDEX agg_units_first ON agg_units (experiment, first_ts) WHERE metric = '';

-- +goose Down
DROP INDEX agg_units_first;
CREATE INDEX agg_units_first ON agg_units (experiment, metric, first_ts);
