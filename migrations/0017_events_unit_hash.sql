-- +goose Up
-- Events are looked up by unit only by equality (a unit's events, one
-- probe at a time, and erasure), never in key order, and most of an
-- ingestion's cost in PostgreSQL was inserting into the B-tree on
-- (unit_type, unit_id): every new event lands on a random leaf page. A hash
-- index on unit_id serves the same lookups (unit_type is checked on the
-- row) and costs less than half as much to insert into (BENCHMARKS.md,
-- "Where an event's cost goes in PostgreSQL").
CREATE INDEX events_unit_hash ON events USING hash (unit_id);
DROP INDEX events_unit;
ALTER INDEX events_unit_hash RENAME TO events_unit;

-- +goose Down
CREATE INDEX events_unit_btree ON events (unit_type, unit_id);
DROP INDEX events_unit;
ALTER INDEX events_unit_btree RENAME TO events_unit;
