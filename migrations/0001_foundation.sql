-- +goose Up
-- Foundation: API keys, metric and experiment definitions, their audit log,
-- and the configuration revision that SDKs poll.
--
-- Every table's key carries the experiment or the unit it belongs to, so the
-- schema can later be distributed (e.g. by Citus) without a rewrite.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    name         text        NOT NULL,
    scope        text        NOT NULL CHECK (scope IN ('admin', 'sdk')),
    key_hash     bytea       NOT NULL UNIQUE, -- SHA-256 of the whole key; the key itself is never stored
    prefix       text        NOT NULL,        -- first characters, to tell keys apart in listings
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE metrics (
    key            text PRIMARY KEY,
    name           text        NOT NULL DEFAULT '',
    description    text        NOT NULL DEFAULT '',
    type           text        NOT NULL CHECK (type IN ('conversion', 'mean', 'count', 'ratio', 'retention')),
    event          text        NOT NULL DEFAULT '',
    numerator      text        NOT NULL DEFAULT '',
    denominator    text        NOT NULL DEFAULT '',
    window_hours   integer     NOT NULL DEFAULT 0 CHECK (window_hours >= 0),
    from_hours     integer     NOT NULL DEFAULT 0,
    to_hours       integer     NOT NULL DEFAULT 0,
    cuped_hours    integer     NOT NULL DEFAULT 336,
    direction      text        NOT NULL DEFAULT 'increase' CHECK (direction IN ('increase', 'decrease')),
    cap_value      double precision,
    cap_percentile double precision,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE experiments (
    key          text PRIMARY KEY,
    name         text        NOT NULL DEFAULT '',
    hypothesis   text        NOT NULL DEFAULT '',
    unit_type    text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('draft', 'running', 'stopped', 'archived')),
    variants     jsonb       NOT NULL,
    traffic      double precision NOT NULL CHECK (traffic >= 0 AND traffic <= 1),
    layer        text        NOT NULL DEFAULT '',
    layer_from   integer,
    layer_to     integer,
    salt         text        NOT NULL,
    targeting    jsonb,
    overrides    jsonb       NOT NULL DEFAULT '{}',
    metrics      jsonb       NOT NULL DEFAULT '{}',
    analysis     text        NOT NULL DEFAULT 'fixed' CHECK (analysis IN ('fixed', 'sequential')),
    revision     bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    stopped_at   timestamptz,
    archived_at  timestamptz,
    CHECK ((layer = '') = (layer_from IS NULL)),
    CHECK (layer_from IS NULL OR (layer_from >= 0 AND layer_from < layer_to AND layer_to <= 10000)),
    -- Experiments of one layer that can still enrol units never share a bucket.
    EXCLUDE USING gist (layer WITH =, int4range(layer_from, layer_to) WITH &&)
        WHERE (layer <> '' AND status IN ('draft', 'running'))
);
CREATE INDEX experiments_status_key ON experiments (status, key);

CREATE TABLE experiment_history (
    experiment_key text        NOT NULL,
    id             bigserial,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL, -- the API key's name
    action         text        NOT NULL, -- create, update, start, stop, archive
    changes        jsonb       NOT NULL, -- {"field": {"from": .., "to": ..}}
    PRIMARY KEY (experiment_key, id)
);

-- One row: bumped by every change that SDKs must see; the ETag of /v1/sdk/config.
CREATE TABLE config_state (
    id       integer PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL
);
INSERT INTO config_state (id, revision) VALUES (1, 1);

-- +goose Down
DROP TABLE config_state;
DROP TABLE experiment_history;
DROP TABLE experiments;
DROP TABLE metrics;
DROP TABLE api_keys;
-- Up created it (if missing): without this, the database is not as Up found
-- it. The drop fails, changing nothing, if another schema's objects use it.
DROP EXTENSION IF EXISTS btree_gist;
