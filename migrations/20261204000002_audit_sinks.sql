-- Audit sinks (issue 11): every event is delivered, at least once and in order per chain, to
-- each configured sink (syslog, an HTTPS endpoint). The audit trail itself is the durable queue
-- (its events are written in the transaction of their change); a sink's position in it is one
-- cursor per chain, advanced only after the sink took the events.
--
-- Per chain, not one position for the table: appends to one chain are serialised until their
-- transaction commits, so a chain's events become visible in id order; across chains a lower
-- id may commit after a higher one, and a single position could skip it.

-- One row per sink: which replica delivers to it (the lease), so that replicas do not send
-- every event once each.
CREATE TABLE audit_sinks (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,31}$'),
    holder       uuid,
    lease_until  timestamptz NOT NULL DEFAULT '-infinity'
);

-- The last event of each chain the sink took. `chain` is the tenant's id, or the nil UUID for
-- the platform chain (tenant ids are never nil).
CREATE TABLE audit_sink_cursors (
    sink      text NOT NULL REFERENCES audit_sinks (name) ON DELETE CASCADE,
    chain     uuid NOT NULL,
    event_id  bigint NOT NULL CHECK (event_id > 0),
    PRIMARY KEY (sink, chain)
);
