-- +goose Up
-- Ingestion: raw events (append-only, partitioned by day of event time),
-- the ids already seen (exactly-once), first exposures, identity links,
-- consent, and an audit log of privacy operations.
--
-- Distribution: every key carries the unit or the experiment column, so the
-- tables can later be distributed (events, event_ids, aliases, consent by
-- unit_id; exposures by experiment) without a rewrite.

CREATE TABLE events (
    unit_type   text        NOT NULL,
    unit_id     text        NOT NULL,
    id          uuid        NOT NULL,
    type        text        NOT NULL CHECK (type IN ('exposure', 'track', 'identify')),
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    experiment  text,
    variant     text,
    event       text,
    value       double precision,
    customer_id text,
    attributes  jsonb,
    properties  jsonb
) PARTITION BY RANGE (ts);
-- Events outside every daily partition (very old ones) land here.
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_unit ON events (unit_type, unit_id);

-- Every id ever accepted (within retention): a retry of an accepted event is
-- a duplicate. id leads the key so that time-ordered (v7) ids append to the
-- right edge of the index.
CREATE TABLE event_ids (
    id          uuid        NOT NULL,
    unit_id     text        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (id, unit_id)
);

-- The first exposure of each unit to each experiment: it starts the unit's
-- analysis window and carries its segment attributes. multiple is set when
-- the unit was exposed to more than one variant (it is then excluded).
CREATE TABLE exposures (
    experiment  text        NOT NULL,
    unit_id     text        NOT NULL,
    unit_type   text        NOT NULL,
    variant     text        NOT NULL,
    first_ts    timestamptz NOT NULL,
    last_ts     timestamptz NOT NULL,
    attributes  jsonb,
    multiple    boolean     NOT NULL DEFAULT false,
    exposures   bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (experiment, unit_id)
);
CREATE INDEX exposures_unit ON exposures (unit_id);

-- Identity links: a device (or any non-customer id) belongs to a customer.
-- The earliest link by event time wins, so the answer does not depend on
-- arrival order; a customer linked to another customer is merged into it.
CREATE TABLE aliases (
    unit_type   text        NOT NULL,
    unit_id     text        NOT NULL,
    customer_id text        NOT NULL,
    ts          timestamptz NOT NULL,
    PRIMARY KEY (unit_type, unit_id)
);
CREATE INDEX aliases_customer ON aliases (customer_id);

CREATE TABLE consent (
    unit_type   text        NOT NULL,
    unit_id     text        NOT NULL,
    analytics   boolean     NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (unit_type, unit_id)
);
CREATE INDEX consent_updated ON consent (updated_at);

-- Audit of operations that are not experiment changes (erasure, consent).
-- It never holds the erased ids.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    details jsonb       NOT NULL
);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE consent;
DROP TABLE aliases;
DROP TABLE exposures;
DROP TABLE event_ids;
DROP TABLE events;
