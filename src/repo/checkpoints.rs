//! The `audit_checkpoints` and `audit_signing_keys` tables.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::audit::Checkpoint;
use crate::domain::ids::TenantId;

/// A chain's newest event and the running count, where it has events its last checkpoint
/// does not cover.
#[derive(Debug, sqlx::FromRow)]
pub struct DueHead {
    pub tenant_id: Option<Uuid>,
    pub event_id: i64,
    pub hash: Vec<u8>,
    pub event_count: i64,
    /// The event and hash of the chain's last checkpoint (`None`: it has none).
    pub signed_event_id: Option<i64>,
    pub signed_hash: Option<Vec<u8>>,
}

/// Every chain whose newest event is after its last checkpoint, with what to sign. The count
/// is the last checkpoint's plus the events after it (an index range per chain). Tenant
/// chains and the platform chain are read apart, each on its own index.
pub async fn due_heads(conn: &mut PgConnection) -> Result<Vec<DueHead>, sqlx::Error> {
    let tenants = due_heads_sql("SELECT id AS tenant_id FROM tenants", "{t}.tenant_id = c.tenant_id");
    let platform = due_heads_sql("SELECT NULL::uuid AS tenant_id", "{t}.tenant_id IS NULL");
    // The platform chain first: a round that signs only so many heads never leaves it out.
    let mut heads = sqlx::query_as::<_, DueHead>(&platform).fetch_all(&mut *conn).await?;
    heads.extend(sqlx::query_as::<_, DueHead>(&tenants).fetch_all(&mut *conn).await?);
    Ok(heads)
}

/// The due-heads query over `chains` (rows of `tenant_id`), `same_chain` relating a table
/// aliased `{t}` to the chain `c`.
fn due_heads_sql(chains: &str, same_chain: &str) -> String {
    let on = |alias: &str| same_chain.replace("{t}", alias);
    format!(
        "SELECT c.tenant_id, head.id AS event_id, head.hash, cp.event_id AS signed_event_id, cp.hash AS signed_hash,
                COALESCE(cp.event_count, 0)
                  + (SELECT count(*) FROM audit_events n
                      WHERE {n} AND n.id > COALESCE(cp.event_id, 0) AND n.id <= head.id) AS event_count
         FROM ({chains}) c
         CROSS JOIN LATERAL (SELECT e.id, e.hash FROM audit_events e WHERE {e} ORDER BY e.id DESC LIMIT 1) head
         LEFT JOIN LATERAL (SELECT p.event_id, p.event_count, p.hash FROM audit_checkpoints p
                             WHERE {p} ORDER BY p.id DESC LIMIT 1) cp ON true
         WHERE head.id > COALESCE(cp.event_id, 0)",
        n = on("n"),
        e = on("e"),
        p = on("p"),
    )
}

/// Records a checkpoint (its key recorded first, by [`record_key`]).
pub async fn insert(
    conn: &mut PgConnection,
    head: &DueHead,
    signed_at: DateTime<Utc>,
    key_id: &str,
    signature: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (tenant_id, event_id, event_count, hash, signed_at, key_id, signature)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(head.tenant_id)
    .bind(head.event_id)
    .bind(head.event_count)
    .bind(&head.hash)
    .bind(signed_at)
    .bind(key_id)
    .bind(signature)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records the signing key's public half (once; the table's check ties the id to the key).
pub async fn record_key(conn: &mut PgConnection, key_id: &str, public_key: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_signing_keys (id, public_key) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(key_id)
        .bind(public_key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    id: i64,
    tenant_id: Option<Uuid>,
    event_id: i64,
    event_count: i64,
    hash: Vec<u8>,
    signed_at: DateTime<Utc>,
    key_id: String,
    signature: Vec<u8>,
}

impl From<CheckpointRow> for Checkpoint {
    fn from(row: CheckpointRow) -> Self {
        Checkpoint {
            id: row.id,
            tenant_id: row.tenant_id.map(TenantId),
            event_id: row.event_id,
            event_count: row.event_count,
            hash: hex::encode(row.hash),
            signed_at: row.signed_at,
            key_id: row.key_id,
            signature: hex::encode(row.signature),
        }
    }
}

/// One chain's checkpoints (`None`: the platform's), newest first, before `before_id`.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant: Option<TenantId>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let sql = format!(
        "SELECT id, tenant_id, event_id, event_count, hash, signed_at, key_id, signature
         FROM audit_checkpoints
         WHERE {} AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        super::audit::chain_condition(tenant.is_none())
    );
    let rows = sqlx::query_as::<_, CheckpointRow>(&sql)
        .bind(tenant.map(|t| t.0))
        .bind(before_id)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Checkpoint::from).collect())
}

/// Every public key that has signed checkpoints, oldest first.
pub async fn public_keys(db: impl PgExecutor<'_>) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT id, public_key FROM audit_signing_keys ORDER BY first_used, id")
        .fetch_all(db)
        .await
}

/// Every checkpoint of one chain (`None`: the platform's), oldest first.
pub async fn all_of_chain(db: impl PgExecutor<'_>, tenant: Option<TenantId>) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let mut all = list(db, tenant, None, i64::MAX).await?;
    all.reverse();
    Ok(all)
}

/// The chains: the platform's (`None`) and every tenant's.
pub async fn chains(db: impl PgExecutor<'_>) -> Result<Vec<Option<TenantId>>, sqlx::Error> {
    let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
        .fetch_all(db)
        .await?;
    Ok(std::iter::once(None)
        .chain(tenants.into_iter().map(|t| Some(TenantId(t))))
        .collect())
}

/// The chain's newest anchor, where its archived events end: `(checkpoint id, event id)`.
pub async fn anchor(db: impl PgExecutor<'_>, tenant: Option<TenantId>) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let sql = format!(
        "SELECT checkpoint_id, event_id FROM audit_anchors WHERE {} ORDER BY event_id DESC LIMIT 1",
        super::audit::chain_condition(tenant.is_none())
    );
    sqlx::query_as(&sql).bind(tenant.map(|t| t.0)).fetch_optional(db).await
}

/// The newest checkpoint of the chain that may become its anchor when archiving before
/// `before`: its event occurred before `before`, it is after the chain's anchor `after_event`,
/// and every sink has taken its events (a sink's cursor on the chain is at or after it).
pub async fn archivable(
    db: impl PgExecutor<'_>,
    tenant: Option<TenantId>,
    before: DateTime<Utc>,
    after_event: i64,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let sql = format!(
        "SELECT p.id, p.tenant_id, p.event_id, p.event_count, p.hash, p.signed_at, p.key_id, p.signature
         FROM audit_checkpoints p JOIN audit_events e ON e.id = p.event_id
         WHERE {chain} AND p.event_id > $3 AND e.occurred_at < $2
           AND NOT EXISTS (
             SELECT 1 FROM audit_sinks s
             LEFT JOIN audit_sink_cursors c
               ON c.sink = s.name AND c.chain = COALESCE($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)
             WHERE COALESCE(c.event_id, 0) < p.event_id)
         ORDER BY p.event_id DESC, p.id DESC LIMIT 1",
        chain = super::audit::chain_condition(tenant.is_none()).replace("tenant_id", "p.tenant_id"),
    );
    let row = sqlx::query_as::<_, CheckpointRow>(&sql)
        .bind(tenant.map(|t| t.0))
        .bind(before)
        .bind(after_event)
        .fetch_optional(db)
        .await?;
    Ok(row.map(Checkpoint::from))
}

/// Makes `anchor` the chain's anchor and removes what it covers: the chain's events up to its
/// event, and its checkpoints before it but earlier anchors' (the triggers let only these
/// through). Returns how
/// many events went.
pub async fn archive_up_to(conn: &mut PgConnection, anchor: &Checkpoint) -> Result<u64, sqlx::Error> {
    let tenant = anchor.tenant_id.map(|t| t.0);
    sqlx::query("INSERT INTO audit_anchors (tenant_id, checkpoint_id, event_id) VALUES ($1, $2, $3)")
        .bind(tenant)
        .bind(anchor.id)
        .bind(anchor.event_id)
        .execute(&mut *conn)
        .await?;
    let chain = super::audit::chain_condition(tenant.is_none());
    let removed = sqlx::query(&format!("DELETE FROM audit_events WHERE {chain} AND id <= $2"))
        .bind(tenant)
        .bind(anchor.event_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    // Earlier anchors' checkpoints stay: their anchors name them.
    sqlx::query(&format!(
        "DELETE FROM audit_checkpoints WHERE {chain} AND event_id < $2
           AND id NOT IN (SELECT checkpoint_id FROM audit_anchors)"
    ))
    .bind(tenant)
    .bind(anchor.event_id)
    .execute(&mut *conn)
    .await?;
    Ok(removed)
}
