//! The `audit_sinks` and `audit_sink_cursors` tables: which replica delivers to a sink, and how
//! far each chain has been delivered.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::domain::ids::TenantId;

/// The cursor key of a chain: the tenant's id, the nil UUID for the platform chain.
fn chain_key(tenant: Option<TenantId>) -> Uuid {
    tenant.map_or(Uuid::nil(), |t| t.0)
}

/// Takes or renews the lease on `sink` for `holder` for `lease_secs`: true when `holder` holds
/// it now (it did, or nobody's lease was running). Makes the sink's row on first use.
pub async fn claim(db: impl PgExecutor<'_>, sink: &str, holder: Uuid, lease_secs: f64) -> Result<bool, sqlx::Error> {
    let held: Option<bool> = sqlx::query_scalar(
        "INSERT INTO audit_sinks AS s (name, holder, lease_until)
         VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until
           WHERE s.holder = EXCLUDED.holder OR s.lease_until < now()
         RETURNING true",
    )
    .bind(sink)
    .bind(holder)
    .bind(lease_secs)
    .fetch_optional(db)
    .await?;
    Ok(held.unwrap_or(false))
}

/// Whether another replica holds a running lease on `sink`.
pub async fn held_by_another(db: impl PgExecutor<'_>, sink: &str, holder: Uuid) -> Result<bool, sqlx::Error> {
    let held: Option<bool> = sqlx::query_scalar(
        "SELECT holder IS NOT NULL AND holder <> $2 AND lease_until > now() FROM audit_sinks WHERE name = $1",
    )
    .bind(sink)
    .bind(holder)
    .fetch_optional(db)
    .await?;
    Ok(held.unwrap_or(false))
}

/// Gives up the lease on `sink` if `holder` has it.
pub async fn release(db: impl PgExecutor<'_>, sink: &str, holder: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE audit_sinks SET holder = NULL, lease_until = '-infinity' WHERE name = $1 AND holder = $2")
        .bind(sink)
        .bind(holder)
        .execute(db)
        .await?;
    Ok(())
}

/// Gives up every lease `holder` has, so that another replica takes over at once.
pub async fn release_all(db: impl PgExecutor<'_>, holder: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE audit_sinks SET holder = NULL, lease_until = '-infinity' WHERE holder = $1")
        .bind(holder)
        .execute(db)
        .await?;
    Ok(())
}

/// A chain with events `sink` has not taken: those after `after` (an event id, 0: all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub tenant: Option<TenantId>,
    pub after: i64,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    tenant_id: Option<Uuid>,
    after: i64,
}

/// Every chain whose newest event is after `sink`'s cursor, the platform chain first: one index
/// probe per chain, each kind of chain on its own index.
pub async fn pending(conn: &mut sqlx::PgConnection, sink: &str) -> Result<Vec<Pending>, sqlx::Error> {
    let platform = pending_sql("SELECT NULL::uuid AS tenant_id", "{t}.tenant_id IS NULL");
    let tenants = pending_sql("SELECT id AS tenant_id FROM tenants", "{t}.tenant_id = c.tenant_id");
    let mut rows = sqlx::query_as::<_, PendingRow>(&platform)
        .bind(sink)
        .fetch_all(&mut *conn)
        .await?;
    rows.extend(
        sqlx::query_as::<_, PendingRow>(&tenants)
            .bind(sink)
            .fetch_all(&mut *conn)
            .await?,
    );
    Ok(rows
        .into_iter()
        .map(|row| Pending {
            tenant: row.tenant_id.map(TenantId),
            after: row.after,
        })
        .collect())
}

/// The pending-chains query over `chains` (rows of `tenant_id`), `same_chain` relating a table
/// aliased `{t}` to the chain `c`.
fn pending_sql(chains: &str, same_chain: &str) -> String {
    format!(
        "SELECT c.tenant_id, COALESCE(cur.event_id, 0) AS after
         FROM ({chains}) c
         CROSS JOIN LATERAL (SELECT e.id FROM audit_events e WHERE {e} ORDER BY e.id DESC LIMIT 1) head
         LEFT JOIN audit_sink_cursors cur
           ON cur.sink = $1 AND cur.chain = COALESCE(c.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)
         WHERE head.id > COALESCE(cur.event_id, 0)",
        e = same_chain.replace("{t}", "e"),
    )
}

/// Records that `sink` took the chain's events up to `event_id`, while `holder` holds its lease
/// (renewed for `lease_secs`); false when the lease was lost, and then nothing is recorded. A
/// cursor never moves back.
pub async fn advance(
    db: impl PgExecutor<'_>,
    sink: &str,
    tenant: Option<TenantId>,
    event_id: i64,
    holder: Uuid,
    lease_secs: f64,
) -> Result<bool, sqlx::Error> {
    let advanced: Option<bool> = sqlx::query_scalar(
        "WITH lease AS (
             UPDATE audit_sinks SET lease_until = now() + make_interval(secs => $5)
             WHERE name = $1 AND holder = $4
             RETURNING name
         )
         INSERT INTO audit_sink_cursors (sink, chain, event_id)
         SELECT name, $2, $3 FROM lease
         ON CONFLICT (sink, chain) DO UPDATE SET event_id = GREATEST(audit_sink_cursors.event_id, EXCLUDED.event_id)
         RETURNING true",
    )
    .bind(sink)
    .bind(chain_key(tenant))
    .bind(event_id)
    .bind(holder)
    .bind(lease_secs)
    .fetch_optional(db)
    .await?;
    Ok(advanced.unwrap_or(false))
}
