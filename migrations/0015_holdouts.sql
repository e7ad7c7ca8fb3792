-- +goose Up
-- Holdouts: a small, stable share of units kept out of a program of
-- experiments (listed, or every experiment of a listed layer) to measure
-- the program's total effect. Their exposures are recorded under the
-- experiment key "holdout:" + key (no experiment key holds a ':'), so
-- aggregation and results treat each one as a two-arm experiment.
CREATE TABLE holdouts (
    key         text PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    unit_type   text        NOT NULL,
    fraction    float8      NOT NULL CHECK (fraction > 0 AND fraction <= 0.1),
    experiments jsonb       NOT NULL DEFAULT '[]',
    layers      jsonb       NOT NULL DEFAULT '[]',
    metrics     jsonb       NOT NULL DEFAULT '{}',
    status      text        NOT NULL CHECK (status IN ('draft', 'running', 'stopped', 'archived')),
    revision    bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    started_at  timestamptz,
    stopped_at  timestamptz,
    archived_at timestamptz
);

-- The audit log of holdouts, as experiment_history is for experiments.
CREATE TABLE holdout_history (
    holdout_key text        NOT NULL REFERENCES holdouts (key),
    id          bigserial,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL, -- the API key's name
    action      text        NOT NULL, -- create, update, start, stop, archive
    changes     jsonb       NOT NULL, -- {"field": {"from": .., "to": ..}}
    PRIMARY KEY (holdout_key, id)
);

-- +goose Down
-- The exposures recorded under "holdout:" + key stay; they are no
-- experiment's and nothing reads them on the older server.
DROP TABLE holdout_history;
DROP TABLE holdouts;
