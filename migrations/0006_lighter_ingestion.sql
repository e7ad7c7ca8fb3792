-- +goose Up
-- Ingestion no longer rewrites a unit's exposure row for every repeat
-- exposure: the row keeps what results read (first exposure, its variant
-- and attributes, whether the unit saw two variants), and a repeat that
-- changes none of it writes nothing. The last exposure time and the count
-- of exposures, which nothing read, go: both are in events.
ALTER TABLE exposures DROP COLUMN last_ts, DROP COLUMN exposures;

-- The queue's track arrays are compressed on every ingestion group: lz4 is
-- several times cheaper than the default pglz. A server built without lz4
-- keeps pglz.
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE agg_queue
        ALTER COLUMN unit_types SET COMPRESSION lz4,
        ALTER COLUMN unit_ids SET COMPRESSION lz4,
        ALTER COLUMN track_types SET COMPRESSION lz4,
        ALTER COLUMN track_ids SET COMPRESSION lz4,
        ALTER COLUMN track_ts SET COMPRESSION lz4,
        ALTER COLUMN track_events SET COMPRESSION lz4,
        ALTER COLUMN track_values SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE agg_queue
    ALTER COLUMN unit_types SET COMPRESSION default,
    ALTER COLUMN unit_ids SET COMPRESSION default,
    ALTER COLUMN track_types SET COMPRESSION default,
    ALTER COLUMN track_ids SET COMPRESSION default,
    ALTER COLUMN track_ts SET COMPRESSION default,
    ALTER COLUMN track_events SET COMPRESSION default,
    ALTER COLUMN track_values SET COMPRESSION default;
ALTER TABLE exposures ADD COLUMN last_ts timestamptz, ADD COLUMN exposures bigint NOT NULL DEFAULT 1;
UPDATE exposures SET last_ts = first_ts;
ALTER TABLE exposures ALTER COLUMN last_ts SET NOT NULL;
