-- +goose Up
-- How many changes each queue row carries (the exposures and identity links
-- it changed, its track events, a consent change), so that results can say
-- how many acknowledged events are not counted yet (pending_events).
ALTER TABLE agg_queue ADD COLUMN events integer NOT NULL DEFAULT 0;
UPDATE agg_queue SET events = cardinality(unit_ids) + cardinality(track_ids);

-- +goose Down
ALTER TABLE agg_queue DROP COLUMN events;
