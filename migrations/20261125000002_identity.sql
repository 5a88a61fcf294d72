-- People: users with argon2id passwords, their tenant memberships, invitations and sessions.

CREATE TABLE users (
    id               uuid PRIMARY KEY,
    email            text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    -- argon2id PHC string; NULL until the user accepts an invitation.
    password_hash    text,
    platform_admin   boolean NOT NULL DEFAULT false,
    disabled_at      timestamptz,
    -- Bumped whenever access must be re-checked (roles, removal, disabling, password change):
    -- access tokens carry it and are refused once it moves on.
    session_version  integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE memberships (
    user_id     uuid NOT NULL REFERENCES users (id),
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'auditor')),
    created_at  timestamptz NOT NULL,
    CONSTRAINT memberships_pkey PRIMARY KEY (user_id, tenant_id)
);

CREATE INDEX memberships_tenant ON memberships (tenant_id, user_id);

CREATE TABLE invites (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    user_id      uuid NOT NULL REFERENCES users (id),
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz
);

-- Refresh tokens rotate on every use; all tokens descended from one login share a family, which
-- is revoked as a whole when a spent token is presented again.
CREATE TABLE refresh_tokens (
    id           uuid PRIMARY KEY,
    family_id    uuid NOT NULL,
    user_id      uuid NOT NULL REFERENCES users (id),
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Failed logins, for throttling per account and per address across every replica.
CREATE TABLE login_failures (
    id           bigserial PRIMARY KEY,
    email        text NOT NULL,
    ip           inet,
    occurred_at  timestamptz NOT NULL
);

CREATE INDEX login_failures_email ON login_failures (email, occurred_at);
CREATE INDEX login_failures_ip ON login_failures (ip, occurred_at);
