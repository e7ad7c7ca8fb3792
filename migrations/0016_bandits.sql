-- +goose Up
-- Bandit experiments: the allocation (fixed or bandit) and the bandit's
-- settings ({"floor", "period", "burn_in"}) of each experiment.
ALTER TABLE experiments
    ADD COLUMN allocation text NOT NULL DEFAULT 'fixed' CHECK (allocation IN ('fixed', 'bandit')),
    ADD COLUMN bandit     jsonb;

-- The weight epochs of bandit experiments: epoch 0 starts with the
-- experiment at its initial weights, each update starts the next. A unit
-- belongs to the epoch active at its first exposure (the results stratify
-- by it). posterior is the summary per variant that gave the weights;
-- revision the configuration revision that carried them to the SDKs.
CREATE TABLE bandit_epochs (
    experiment_key text        NOT NULL REFERENCES experiments (key),
    epoch          integer     NOT NULL CHECK (epoch >= 0),
    started_at     timestamptz NOT NULL,
    weights        jsonb       NOT NULL,
    posterior      jsonb,
    revision       bigint      NOT NULL,
    PRIMARY KEY (experiment_key, epoch)
);
CREATE INDEX bandit_epochs_started ON bandit_epochs (experiment_key, started_at);

-- +goose Down
-- The older server knows no bandits: a bandit experiment carries on as a
-- fixed experiment at its last weights, and its epochs are dropped (its
-- results then pool the epochs, which the README warns against).
DROP TABLE bandit_epochs;
ALTER TABLE experiments DROP COLUMN bandit, DROP COLUMN allocation;
