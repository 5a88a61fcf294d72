-- Verification outcomes, counted instead of logged per call: one row per tenant, key (NULL when
-- the token matched no key), code and minute, added to in batches by every replica. A refused
-- call grows a count, never the table; rows older than the retention are pruned.
CREATE TABLE verification_counts (
    -- NULL: a platform-wide caller presented a token that matched no key.
    tenant_id  uuid,
    key_id     text,
    code       text NOT NULL,
    minute     timestamptz NOT NULL CHECK (date_trunc('minute', minute) = minute),
    count      bigint NOT NULL CHECK (count > 0),
    CONSTRAINT verification_counts_one_row UNIQUE NULLS NOT DISTINCT (tenant_id, minute, key_id, code)
);

CREATE INDEX verification_counts_key ON verification_counts (key_id, minute) WHERE key_id IS NOT NULL;
CREATE INDEX verification_counts_minute ON verification_counts (minute);
