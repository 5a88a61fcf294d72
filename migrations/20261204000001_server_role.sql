-- Least privilege (issue 11): in the two-role setup, migrations run as the owner of every
-- table (KEYWARD_MIGRATION_DATABASE_URL) and the server connects as a role that may only read
-- and append to the audit trail. keyward calls this function as the owner after migrating,
-- with the server's role; it is idempotent, so each start also covers tables added since.
--
-- The server role gets SELECT and INSERT on every table, UPDATE and DELETE on every table but
-- the append-only ones, the sequences it inserts through, and nothing else: no TRUNCATE, no
-- TRIGGER (it cannot disable the triggers that refuse changes), no ownership, no migrations.
CREATE FUNCTION keyward_grant_server_role(server regrole) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    append_only CONSTANT text[] := ARRAY['audit_events', 'audit_checkpoints', 'audit_signing_keys'];
    schema_name CONSTANT text := current_schema();
    t record;
BEGIN
    IF server = (SELECT oid FROM pg_roles WHERE rolname = current_user)::regrole THEN
        RAISE EXCEPTION 'the server role % is the owner role: give DATABASE_URL another role', server;
    END IF;
    IF (SELECT rolsuper FROM pg_roles WHERE oid = server) THEN
        RAISE EXCEPTION 'the server role % is a superuser: give DATABASE_URL a role without SUPERUSER', server;
    END IF;
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = schema_name AND c.relowner = server LIMIT 1 LOOP
        RAISE EXCEPTION 'the server role % owns %: the owner role must own every table (ALTER TABLE % OWNER TO ...)',
            server, t.relname, t.relname;
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', schema_name, server);
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = schema_name AND tablename <> '_sqlx_migrations' LOOP
        IF t.tablename = ANY (append_only) THEN
            EXECUTE format('REVOKE ALL ON %I FROM %s', t.tablename, server);
            EXECUTE format('GRANT SELECT, INSERT ON %I TO %s', t.tablename, server);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %s', t.tablename, server);
        END IF;
    END LOOP;
    EXECUTE format('REVOKE ALL ON _sqlx_migrations FROM %s', server);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %s', schema_name, server);
END
$$;

REVOKE EXECUTE ON FUNCTION keyward_grant_server_role(regrole) FROM PUBLIC;
