-- +goose Up
-- Erasure of a customer also erases the identify events of other ids that
-- name it (an id linked first to someone else keeps its later links as
-- events). Without an index that lookup read every event; this one holds
-- identify events only, a small share of events.
CREATE INDEX events_identify_customer ON events (customer_id) WHERE type = 'identify';

-- +goose Down
DROP INDEX events_identify_customer;
