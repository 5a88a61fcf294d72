-- A key and its successors (rotation) are one family for usage limits: they share one
-- `remaining` counter (kept on the newest key of the family) and one rate-limit window (counted
-- under the family's id, the id of its first key).
ALTER TABLE api_keys ADD COLUMN limit_family text;
WITH RECURSIVE chain AS (
    SELECT id, id AS root FROM api_keys WHERE rotated_from IS NULL
    UNION ALL
    SELECT k.id, c.root FROM api_keys k JOIN chain c ON k.rotated_from = c.id
)
UPDATE api_keys k SET limit_family = chain.root FROM chain WHERE chain.id = k.id;
UPDATE api_keys SET limit_family = id WHERE limit_family IS NULL;
ALTER TABLE api_keys ALTER COLUMN limit_family SET NOT NULL;

CREATE INDEX api_keys_limit_family ON api_keys (limit_family);
-- "Has this key a successor?" is asked on every rotation, expiry change and limited verify.
CREATE INDEX api_keys_rotated_from ON api_keys (rotated_from) WHERE rotated_from IS NOT NULL;
