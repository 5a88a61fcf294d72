-- Signed checkpoints of the audit chains (issue 11): keyward signs the head of each chain
-- (tenant, newest event id, events in the chain, that event's hash, time) with an Ed25519
-- audit key. The public keys are kept so that a checkpoint signed before a rotation stays
-- verifiable. Both tables are append-only, like audit_events.

CREATE TABLE audit_signing_keys (
    -- The first 8 bytes of SHA-256 of the raw public key, hex.
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    public_key  bytea NOT NULL UNIQUE CHECK (octet_length(public_key) = 32),
    first_used  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_checkpoints (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid REFERENCES tenants (id),
    event_id     bigint NOT NULL,
    event_count  bigint NOT NULL CHECK (event_count > 0),
    hash         bytea NOT NULL CHECK (octet_length(hash) = 32),
    signed_at    timestamptz NOT NULL,
    key_id       text NOT NULL REFERENCES audit_signing_keys (id),
    signature    bytea NOT NULL CHECK (octet_length(signature) = 64)
);

CREATE INDEX audit_checkpoints_tenant_id ON audit_checkpoints (tenant_id, id);
CREATE INDEX audit_checkpoints_platform_id ON audit_checkpoints (id) WHERE tenant_id IS NULL;

CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_signing_keys_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_signing_keys
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
