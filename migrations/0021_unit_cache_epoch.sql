-- +goose Up
-- A definition's epoch changes in every transaction that changes its unit
-- rows (agg_units) other than by folding staged track events in the
-- process that keeps them in memory: a cycle that recomputes units, a
-- rebuild (a new row), an erasure, and the folds themselves. An aggregator
-- that keeps a definition's unit rows in memory between cycles
-- (store/aggregate_fold.go) uses its copy only while the epoch is the one it
-- last wrote or saw, so that another process's cycles, or an erasure, can
-- never leave it folding into stale values. Servers from before this
-- migration do not move it: stop them before starting newer ones.
CREATE SEQUENCE agg_epoch;
ALTER TABLE agg_defs ADD COLUMN epoch bigint NOT NULL DEFAULT nextval('agg_epoch');

-- +goose Down
ALTER TABLE agg_defs DROP COLUMN epoch;
DROP SEQUENCE agg_epoch;
