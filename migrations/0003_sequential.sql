-- +goose Up
-- The mSPRT state of each comparison of a sequential experiment, carried
-- from one results computation to the next (always-valid p-values take the
-- running minimum over looks). float8 holds the ±Infinity of open bounds.
CREATE TABLE sequential_state (
    experiment  text             NOT NULL,
    metric      text             NOT NULL,
    variant     text             NOT NULL,
    tau2        double precision NOT NULL,
    alpha       double precision NOT NULL,
    look        integer          NOT NULL,
    diff        double precision NOT NULL,
    v           double precision NOT NULL,
    log_lambda  double precision NOT NULL,
    lambda      double precision NOT NULL,
    p           double precision NOT NULL,
    reject      boolean          NOT NULL,
    ci_lower    double precision NOT NULL,
    ci_upper    double precision NOT NULL,
    updated_at  timestamptz      NOT NULL,
    PRIMARY KEY (experiment, metric, variant)
);

-- +goose Down
DROP TABLE sequential_state;
