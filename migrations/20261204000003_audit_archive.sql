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

-- The server role reads anchors and makes none: keyward_grant_server_role gives it SELECT only.
