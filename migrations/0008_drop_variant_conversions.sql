-- +goose Up
-- agg_variants.conversions always equalled sum (conversions are the sum of
-- the units' 0/1 values, rounded when read) and nothing read it.
ALTER TABLE agg_variants DROP COLUMN conversions;

-- +goose Down
ALTER TABLE agg_variants ADD COLUMN conversions numeric NOT NULL DEFAULT 0;
UPDATE agg_variants SET conversions = sum;
ALTER TABLE agg_variants ALTER COLUMN conversions DROP DEFAULT;
