-- +goose Up
-- A unit's day row is updated by every later event of the unit on the same
-- day (store/aggregate_deltas.go). With full pages each update writes the
-- new version to another page and a new entry to the primary key; room on
-- the page lets the update be HOT (no index write), as agg_units has. Pages
-- written from now on keep the room.
ALTER TABLE agg_unit_days SET (fillfactor = 70);

-- +goose Down
ALTER TABLE agg_unit_days RESET (fillfactor);
