-- +goose Up
-- Erasure requests (store/erase.go): recorded before they are carried out,
-- so that an erasure that must wait for a running aggregation cycle (the
-- first build of a large experiment) is finished in the background, and
-- its caller can see when (GET /v1/erasures/{id}). unit_id is the stored id
-- while pending, NULL once done: a done request keeps only the unit type
-- and the counts.
CREATE TABLE erasure_requests (
    id           uuid        PRIMARY KEY,
    unit_type    text        NOT NULL,
    unit_id      text,
    actor        text        NOT NULL,
    requested_at timestamptz NOT NULL,
    done_at      timestamptz,
    erased       jsonb,
    CHECK ((done_at IS NULL) = (unit_id IS NOT NULL)),
    CHECK ((done_at IS NULL) = (erased IS NULL))
);
CREATE INDEX erasure_requests_pending ON erasure_requests (requested_at) WHERE done_at IS NULL;

-- +goose Down
DROP TABLE erasure_requests;
