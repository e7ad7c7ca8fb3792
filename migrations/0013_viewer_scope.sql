-- +goose Up
-- A third key scope, viewer: reads experiments, metrics, results, history
-- and the power calculator, nothing else (the web UI for people who must
-- not change anything).
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check CHECK (scope IN ('admin', 'sdk', 'viewer'));

-- +goose Down
-- The older schema has no viewer keys: they are deleted (their holders
-- lose read access), since no other scope grants less.
DELETE FROM api_keys WHERE scope = 'viewer';
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check CHECK (scope IN ('admin', 'sdk'));
