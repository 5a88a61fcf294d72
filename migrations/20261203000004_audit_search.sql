-- Review that scales (issue 11): every common filter of the audit listings on an index, and a
-- text search (`q`) over target ids and details on a trigram index.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX audit_events_search ON audit_events
    USING gin ((COALESCE(target_id, '') || ' ' || details::text) gin_trgm_ops);
CREATE INDEX audit_events_tenant_action ON audit_events (tenant_id, action, id);
CREATE INDEX audit_events_tenant_actor ON audit_events (tenant_id, actor_id, id);
CREATE INDEX audit_events_target ON audit_events (target_id, id);
CREATE INDEX audit_events_action ON audit_events (action, id);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at);
