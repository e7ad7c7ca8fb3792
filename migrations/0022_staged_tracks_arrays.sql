-- +goose Up
-- A cycle's staged track events are stored as columns, one row per chunk
-- of up to 50,000 events of one owner type and event name, instead of one
-- row per event: the cycle resolves their owners in Go and writes a few
-- rows, and each definition reads only the chunks of the events it counts
-- (store/aggregate_deltas.go). At 50,000 events/s the row per event cost
-- more than a third of the track-owners step. Servers from before this
-- migration write agg_staged, which is gone: stop them before starting
-- newer ones.
CREATE TABLE agg_staged_tracks (
    cycle       bigint             NOT NULL,
    owner_type  text               NOT NULL,
    event       text               NOT NULL,
    owners      text[]             NOT NULL, -- the unit each event adds to
    ts          timestamptz[]      NOT NULL,
    vals        double precision[] NOT NULL  -- NULL where the event has no value
);
CREATE INDEX ON agg_staged_tracks (cycle);

-- The arrays are written once and read once or twice: lz4 where the server
-- has it, else stored uncompressed (pglz would cost more than it saves).
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE agg_staged_tracks
        ALTER COLUMN owners SET COMPRESSION lz4,
        ALTER COLUMN ts SET COMPRESSION lz4,
        ALTER COLUMN vals SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE agg_staged_tracks
        ALTER COLUMN owners SET STORAGE EXTERNAL,
        ALTER COLUMN ts SET STORAGE EXTERNAL,
        ALTER COLUMN vals SET STORAGE EXTERNAL;
END
$$;
-- +goose StatementEnd

INSERT INTO agg_staged_tracks (cycle, owner_type, event, owners, ts, vals)
SELECT cycle, owner_type, event, array_agg(owner), array_agg(ts), array_agg(value)
FROM agg_staged GROUP BY cycle, owner_type, event;
DROP TABLE agg_staged;

-- +goose Down
CREATE TABLE agg_staged (
    cycle       bigint           NOT NULL,
    owner_type  text             NOT NULL,
    owner       text             NOT NULL,
    ts          timestamptz      NOT NULL,
    event       text             NOT NULL,
    value       double precision
);
INSERT INTO agg_staged (cycle, owner_type, owner, ts, event, value)
SELECT s.cycle, s.owner_type, k.owner, k.ts, s.event, k.value
FROM agg_staged_tracks s, unnest(s.owners, s.ts, s.vals) AS k(owner, ts, value);
DROP TABLE agg_staged_tracks;
