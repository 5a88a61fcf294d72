-- Least privilege (issue 11): in the two-role setup, migrations run as the owner of every
-- table (KEYWARD_MIGRATION_DATABASE_URL) and the server connects as a role that may only read
-- and append to the audit trail. keyward calls this function as the owner after migrating,
-- with the server's role; it is idempotent, so each start also covers tables added since.
--
-- The server role gets, after every earlier privilege is revoked: on the append-only tables
-- (those carrying a trigger that refuses changes, so a new audit table is covered without
-- being listed) SELECT and INSERT, on the owner-only ones (anchors: only the owner archives)
-- SELECT; SELECT, INSERT, UPDATE and DELETE on every other table; USAGE and SELECT on the
-- sequences (not UPDATE: no setval). Nothing else: no TRUNCATE, no TRIGGER (it cannot disable
-- the triggers), no CREATE in the schema, no migrations.
--
-- A server role that could get the owner's power another way is refused: the owner itself, a
-- superuser or a member of one, a member of the owner or of pg_write_all_data, a role that may
-- create roles (it could grant itself the owner), the owner of the schema, of the database or
-- of any table.
-- `schema_name`: the schema of keyward's tables, the caller's current_schema().
CREATE FUNCTION keyward_grant_server_role(server regrole, schema_name name) RETURNS void
LANGUAGE plpgsql
-- Only the catalog's functions and operators: a role that could create objects in the schema
-- must not be able to slip its own in front of them, run as the owner.
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_only CONSTANT name[] := ARRAY['audit_anchors'];
    t record;
BEGIN
    -- Two replicas starting together would otherwise update the same catalog rows at once.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('keyward_grant_server_role'));
    IF server::oid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'the server role % is the owner role: give DATABASE_URL another role', server;
    END IF;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = server::oid) THEN
        RAISE EXCEPTION 'the server role % is a superuser: give DATABASE_URL a role without SUPERUSER', server;
    END IF;
    IF (SELECT rolcreaterole FROM pg_catalog.pg_roles WHERE oid = server::oid) THEN
        RAISE EXCEPTION 'the server role % may create roles (CREATEROLE), so it could grant itself the owner role', server;
    END IF;
    IF pg_catalog.pg_has_role(server::oid, current_user, 'MEMBER') THEN
        RAISE EXCEPTION 'the server role % is a member of the owner role %: it would have its privileges', server, current_user;
    END IF;
    FOR t IN SELECT r.rolname FROM pg_catalog.pg_roles r
             WHERE (r.rolsuper OR r.rolname = 'pg_write_all_data') AND r.oid <> server::oid
               AND pg_catalog.pg_has_role(server::oid, r.oid, 'MEMBER') LIMIT 1 LOOP
        RAISE EXCEPTION 'the server role % is a member of %, which may change the audit tables', server, t.rolname;
    END LOOP;
    IF (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = schema_name) = server::oid
       OR (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) = server::oid THEN
        RAISE EXCEPTION 'the server role % owns the schema % or the database: it could drop the audit tables', server, schema_name;
    END IF;
    FOR t IN SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = schema_name AND c.relowner = server::oid LIMIT 1 LOOP
        RAISE EXCEPTION 'the server role % owns %: the owner role must own every table (ALTER TABLE % OWNER TO ...)',
            server, t.relname, t.relname;
    END LOOP;
    EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM %s', schema_name, server);
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %s', schema_name, server);
    FOR t IN SELECT c.relname,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_proc p ON p.oid = g.tgfoid
                            WHERE g.tgrelid = c.oid
                              AND p.proname IN ('audit_events_refuse_change', 'audit_refuse_change_unless_archived'))
                      AS append_only
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = schema_name AND c.relkind IN ('r', 'p') LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %I.%I FROM %s', schema_name, t.relname, server);
        IF t.relname = '_sqlx_migrations' THEN
            NULL;
        ELSIF t.relname = ANY (owner_only) THEN
            EXECUTE pg_catalog.format('GRANT SELECT ON %I.%I TO %s', schema_name, t.relname, server);
        ELSIF t.append_only THEN
            EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON %I.%I TO %s', schema_name, t.relname, server);
        ELSE
            EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %s', schema_name, t.relname, server);
        END IF;
    END LOOP;
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %s', schema_name, server);
    EXECUTE pg_catalog.format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %s', schema_name, server);
END
$$;

REVOKE EXECUTE ON FUNCTION keyward_grant_server_role(regrole, name) FROM PUBLIC;
