-- A key id is what its public key gives (the first 8 bytes of its SHA-256, hex), so that no
-- row can bind the id of the signing key to another public key.
ALTER TABLE audit_signing_keys
    ADD CONSTRAINT audit_signing_keys_id_of_key CHECK (id = left(encode(sha256(public_key), 'hex'), 16));
