-- +goose Up
-- agg_units_unit finds the experiments a unit is in: a cycle's pairs step
-- (store/aggregate.go) reads the units definition's rows (metric '') by
-- unit. Indexed for that definition only, it is a third of the size with
-- two metrics, and a new unit's metric rows write no entry in it: each
-- was a random leaf of a large index. Erasure finds a unit's rows of every
-- definition by primary key (store/aggregate_build.go).
DROP INDEX agg_units_unit;
CREATE INDEX agg_units_unit ON agg_units (unit_id) WHERE metric = '';

-- +goose Down
DROP INDEX agg_units_unit;
CREATE INDEX agg_units_unit ON agg_units (unit_id);
