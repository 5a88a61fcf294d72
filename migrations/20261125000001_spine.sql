-- Tenants, keys (customer API keys and keyward's own service tokens) and the audit trail.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL CONSTRAINT tenants_slug_key UNIQUE
                CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z0-9-]{3,40}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id              text PRIMARY KEY,
    tenant_id       uuid REFERENCES tenants (id),
    kind            text NOT NULL CHECK (kind IN ('customer', 'service')),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    environment     text NOT NULL CHECK (environment IN ('live', 'test')),
    prefix          text NOT NULL,
    start           text NOT NULL,
    -- SHA-256 of the whole token; nothing else from which the token could be recovered is kept.
    token_hash      bytea NOT NULL CONSTRAINT api_keys_token_hash_key UNIQUE
                    CHECK (octet_length(token_hash) = 32),
    scopes          text[] NOT NULL DEFAULT '{}',
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    owner_id        text,
    created_at      timestamptz NOT NULL,
    created_by      text,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    revoked_reason  text,
    enabled         boolean NOT NULL DEFAULT true,
    last_used_at    timestamptz,
    rotated_from    text REFERENCES api_keys (id),
    CONSTRAINT api_keys_customer_has_tenant CHECK (kind = 'service' OR tenant_id IS NOT NULL)
);

CREATE INDEX api_keys_tenant_kind_id ON api_keys (tenant_id, kind, id);
CREATE INDEX api_keys_platform_service_id ON api_keys (id) WHERE tenant_id IS NULL;
CREATE INDEX api_keys_tenant_owner ON api_keys (tenant_id, owner_id) WHERE owner_id IS NOT NULL;

CREATE TABLE audit_events (
    id           bigserial PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    tenant_id    uuid REFERENCES tenants (id),
    actor_kind   text NOT NULL CHECK (actor_kind IN ('user', 'service', 'system')),
    actor_id     text NOT NULL,
    action       text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target_kind  text,
    target_id    text,
    outcome      text NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
    request_id   text,
    ip           inet,
    user_agent   text,
    details      jsonb NOT NULL DEFAULT '{}',
    -- Hash chain per tenant (NULL tenant: the platform chain).
    prev_hash    bytea,
    hash         bytea NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE INDEX audit_events_tenant_id ON audit_events (tenant_id, id);
CREATE INDEX audit_events_platform_id ON audit_events (id) WHERE tenant_id IS NULL;

-- The audit trail is append-only: the database itself refuses to change or remove it.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
