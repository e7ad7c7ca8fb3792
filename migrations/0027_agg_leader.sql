-- +goose Up
-- agg_leader names the server whose aggregation cycle ended last, and
-- when (store/aggregate_leader.go). The other servers' background
-- aggregators leave the cycles to it while that is recent: a server keeps
-- copies (its definitions' unit rows, its filters of linked ids and of
-- tracked days) that another server's cycle makes it drop or rebuild.
CREATE TABLE agg_leader (
    id     int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    server text NOT NULL,
    at     timestamptz NOT NULL
);

-- +goose Down
DROP TABLE agg_leader;
