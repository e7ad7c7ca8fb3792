-- +goose Up
-- Every aggregation cycle that takes queue rows takes a number of
-- agg_queue_cycle, and records in agg_linked which of the ids its queue
-- rows name have an identity link now. A process that keeps in memory
-- which ids have a link (store/aggregate_links.go) adds, at each of its
-- cycles, the ids recorded since its last one, whichever process's cycle
-- recorded them. Rows older than the last million cycles are removed.
-- Servers from before this migration record nothing: stop them before
-- starting newer ones.
CREATE SEQUENCE agg_queue_cycle;
CREATE TABLE agg_linked (
    cycle     bigint NOT NULL,
    unit_type text   NOT NULL,
    unit_id   text   NOT NULL
);
CREATE INDEX ON agg_linked (cycle);
CREATE INDEX ON agg_linked (unit_id); -- an erasure removes its units' records

-- +goose Down
DROP TABLE agg_linked;
DROP SEQUENCE agg_queue_cycle;
