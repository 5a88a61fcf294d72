-- Request signing: per-key signing secrets (encrypted), per-tenant settings, replay protection.

ALTER TABLE tenants ADD COLUMN settings jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object');

-- AES-256-GCM of the signing secret under master key `signing_secret_version`, with the key id
-- as associated data: a dump of this table alone cannot be used to forge a signature.
ALTER TABLE api_keys
    ADD COLUMN signing_secret bytea,
    ADD COLUMN signing_secret_version integer,
    ADD CONSTRAINT api_keys_signing_secret_pair
        CHECK ((signing_secret IS NULL) = (signing_secret_version IS NULL));

-- Each accepted signature, until its validity window closes: a second use is a replay, on any
-- replica.
CREATE TABLE signature_replays (
    key_id            text NOT NULL,
    signature_digest  bytea NOT NULL CHECK (octet_length(signature_digest) = 32),
    expires_at        timestamptz NOT NULL,
    CONSTRAINT signature_replays_pkey PRIMARY KEY (key_id, signature_digest)
);

CREATE INDEX signature_replays_expires ON signature_replays (expires_at);
