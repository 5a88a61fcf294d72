-- Retention that keeps the proof (issue 11): `keyward audit archive --before DATE --out FILE`
-- writes a chain's events up to a signed checkpoint to a file, then removes them. The
-- checkpoint stays as the chain's anchor: the events after it link to its hash and its count,
-- so the remaining chain still verifies from it, and the archive verifies on its own.
--
-- An anchor is the only way rows leave the trail: the triggers let a DELETE through only for
-- events at or before an anchor of their chain, and checkpoints before it; UPDATE and
-- TRUNCATE stay refused. The server role may only read anchors (keyward_grant_server_role), so
-- in the two-role setup only the owner role can archive.
CREATE TABLE audit_anchors (
    id             bigserial PRIMARY KEY,
    tenant_id      uuid REFERENCES tenants (id),
    checkpoint_id  bigint NOT NULL UNIQUE REFERENCES audit_checkpoints (id),
    event_id       bigint NOT NULL,
    archived_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_anchors_chain ON audit_anchors (tenant_id, event_id);

CREATE TRIGGER audit_anchors_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_anchors
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_anchors_no_truncate
    BEFORE TRUNCATE ON audit_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

CREATE FUNCTION audit_refuse_change_unless_archived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One branch per table: PL/pgSQL prepares a condition whole, and OLD has the fields of
    -- its own table only.
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' THEN
        IF EXISTS (SELECT 1 FROM audit_anchors a
                   WHERE a.tenant_id IS NOT DISTINCT FROM OLD.tenant_id AND OLD.id <= a.event_id) THEN
            RETURN OLD;
        END IF;
    ELSIF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_checkpoints' THEN
        IF EXISTS (SELECT 1 FROM audit_anchors a
                   WHERE a.tenant_id IS NOT DISTINCT FROM OLD.tenant_id AND OLD.event_id < a.event_id) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused (only events archived under an anchor may be removed)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER audit_events_no_update_delete ON audit_events;
CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change_unless_archived();
DROP TRIGGER audit_checkpoints_no_update_delete ON audit_checkpoints;
CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change_unless_archived();

-- The server role reads anchors and writes none.
CREATE OR REPLACE FUNCTION keyward_grant_server_role(server regrole) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    append_only CONSTANT text[] := ARRAY['audit_events', 'audit_checkpoints', 'audit_signing_keys'];
    read_only CONSTANT text[] := ARRAY['audit_anchors'];
    schema_name CONSTANT text := current_schema();
    t record;
BEGIN
    IF server = (SELECT oid FROM pg_roles WHERE rolname = current_user)::regrole THEN
        RAISE EXCEPTION 'the server role % is the owner role: give DATABASE_URL another role', server;
    END IF;
    IF (SELECT rolsuper FROM pg_roles WHERE oid = server) THEN
        RAISE EXCEPTION 'the server role % is a superuser: give DATABASE_URL a role without SUPERUSER', server;
    END IF;
    IF pg_has_role(server, current_user, 'MEMBER') THEN
        RAISE EXCEPTION 'the server role % is a member of the owner role %: it would have its privileges', server, current_user;
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
        ELSIF t.tablename = ANY (read_only) THEN
            EXECUTE format('REVOKE ALL ON %I FROM %s', t.tablename, server);
            EXECUTE format('GRANT SELECT ON %I TO %s', t.tablename, server);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %s', t.tablename, server);
        END IF;
    END LOOP;
    EXECUTE format('REVOKE ALL ON _sqlx_migrations FROM %s', server);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %s', schema_name, server);
END
$$;

REVOKE EXECUTE ON FUNCTION keyward_grant_server_role(regrole) FROM PUBLIC;
