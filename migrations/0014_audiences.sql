-- +goose Up
-- Saved audiences: named targeting conditions that experiments reference
-- by key ({"$audience": key}). The key never changes and a row is never
-- deleted, only archived, so a reference never dangles.
CREATE TABLE audiences (
    key         text PRIMARY KEY,
    name        text        NOT NULL,
    condition   jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    archived_at timestamptz
);

-- The audit log of audiences, as experiment_history is for experiments.
CREATE TABLE audience_history (
    audience_key text        NOT NULL REFERENCES audiences (key),
    id           bigserial,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL, -- the API key's name
    action       text        NOT NULL, -- create, update, archive
    changes      jsonb       NOT NULL, -- {"field": {"from": .., "to": ..}}
    -- the running experiments whose targeting used the audience then
    affected_experiments jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (audience_key, id)
);

-- +goose Down
-- Experiments whose targeting references an audience keep the reference
-- and no longer compile on the older server: archive them first.
DROP TABLE audience_history;
DROP TABLE audiences;
