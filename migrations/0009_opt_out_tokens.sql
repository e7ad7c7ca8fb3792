-- +goose Up
-- Opt-outs reach SDKs and outlive erasure.
--
-- consent.sdk_token is assign.OptOutToken of the raw id an app knows: the
-- first 8 bytes of SHA-256('flywheel-opt-out:' || unit_type || ':' || id),
-- set when consent is given through the API (which sees the raw id). SDKs
-- fetch the tokens (GET /v1/sdk/opt-outs), never the ids.
ALTER TABLE consent ADD COLUMN sdk_token bigint;
-- Ids stored raw (no FLYWHEEL_ID_HMAC_KEY) get their token now. With a key,
-- the stored id is a digest and this token matches no raw id: such a unit's
-- token is set the next time its consent is given.
UPDATE consent SET sdk_token =
    ('x' || left(encode(sha256(convert_to('flywheel-opt-out:' || unit_type || ':' || unit_id, 'UTF8')), 'hex'), 16))::bit(64)::bigint;

-- An opt-out outlives the erasure of its unit as a tombstone that holds no
-- id: digest is SHA-256(unit_type || ':' || stored unit_id), one-way, so
-- that a unit that comes back is still suppressed (the server's and the
-- SDK's checks), and nothing else about it is kept. Opting back in deletes
-- it.
CREATE TABLE consent_tombstones (
    digest     bytea       PRIMARY KEY,
    unit_type  text        NOT NULL,
    sdk_token  bigint,
    updated_at timestamptz NOT NULL
);
CREATE INDEX consent_tombstones_updated ON consent_tombstones (updated_at);

-- +goose Down
-- Tombstones cannot be turned back into consent rows (they hold no id): the
-- opt-outs of erased units are forgotten.
DROP TABLE consent_tombstones;
ALTER TABLE consent DROP COLUMN sdk_token;
