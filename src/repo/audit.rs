//! The `audit_events` table: append (extending the tenant's hash chain) and filtered reads.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::bad_column;
use crate::domain::audit::{ActorKind, AuditEvent, NewAuditEvent, Outcome};
use crate::domain::ids::TenantId;

/// Appends `event` to its tenant's chain. Must run inside the transaction of the change it
/// records: the advisory lock serialises appends to one chain until that transaction ends.
pub async fn append(conn: &mut PgConnection, event: &NewAuditEvent) -> Result<(), sqlx::Error> {
    append_all(conn, std::slice::from_ref(event)).await
}

/// Rows per INSERT: 14 bound values each, well under PostgreSQL's 65535 parameters.
const ROWS_PER_INSERT: usize = 1000;

/// Appends events in their order, each extending its own tenant's chain: per chain one lock,
/// one read of the last hash and multi-row inserts. Chains are locked in a fixed order, so
/// concurrent writers cannot deadlock on them.
pub async fn append_all(conn: &mut PgConnection, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
    let mut chains: BTreeMap<Option<Uuid>, Vec<&NewAuditEvent>> = BTreeMap::new();
    for event in events {
        chains.entry(event.tenant_id.map(|t| t.0)).or_default().push(event);
    }
    for (tenant, chain_events) in chains {
        let chain = match tenant {
            Some(id) => format!("audit:{id}"),
            None => "audit:platform".to_owned(),
        };
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(chain)
            .execute(&mut *conn)
            .await?;
        let last_hash = format!(
            "SELECT hash FROM audit_events WHERE {} ORDER BY id DESC LIMIT 1",
            chain_condition(tenant.is_none())
        );
        let mut prev_hash: Option<Vec<u8>> = sqlx::query_scalar(&last_hash)
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
        let mut rows = Vec::with_capacity(chain_events.len());
        for event in chain_events {
            let hash = event.chain_hash(prev_hash.as_deref()).to_vec();
            rows.push((event, prev_hash.replace(hash.clone()), hash));
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
                "INSERT INTO audit_events (occurred_at, tenant_id, actor_kind, actor_id, action, target_kind,
                     target_id, outcome, request_id, ip, user_agent, details, prev_hash, hash) ",
            );
            q.push_values(chunk, |mut row, (event, prev, hash)| {
                row.push_bind(event.stored_time())
                    .push_bind(tenant)
                    .push_bind(event.actor.kind.as_str())
                    .push_bind(event.actor.id.clone())
                    .push_bind(event.action.as_str())
                    .push_bind(event.target_kind)
                    .push_bind(event.target_id.clone())
                    .push_bind(event.outcome.as_str())
                    .push_bind(event.meta.request_id.clone())
                    .push_bind(event.meta.ip.map(|ip| ip.to_string()))
                    .push_unseparated("::inet")
                    .push_bind(event.meta.user_agent.clone())
                    .push_bind(event.details.clone())
                    .push_bind(prev.clone())
                    .push_bind(hash.clone());
            });
            // VALUES rows take their ids in order, so the chain follows id order.
            q.build().execute(&mut *conn).await?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `Some`: that tenant's events only. `None`: every event (platform review).
    pub tenant: Option<TenantId>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    /// Text the target id or the details contain (case-insensitive).
    pub text: Option<String>,
    pub outcome: Option<Outcome>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: only events with a smaller id (newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Sends every event matching `filter` (oldest first, no limit) down `sink`, page by page: each
/// page is one short query, so a slow reader of a large export never holds a pooled connection.
pub async fn export(
    pool: &sqlx::PgPool,
    filter: &AuditFilter,
    sink: tokio::sync::mpsc::Sender<Result<AuditEvent, sqlx::Error>>,
) {
    const PAGE: i64 = 500;
    let mut after: Option<i64> = None;
    loop {
        let mut q = filtered(filter);
        if let Some(after) = after {
            q.push(" AND id > ").push_bind(after);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(PAGE);
        let page = match q.build_query_as::<AuditRow>().fetch_all(pool).await {
            Ok(rows) => rows,
            Err(error) => {
                let _ = sink.send(Err(error)).await;
                return;
            }
        };
        let full = page.len() as i64 == PAGE;
        for row in page {
            after = Some(row.id);
            let item = AuditEvent::try_from(row);
            let failed = item.is_err();
            if sink.send(item).await.is_err() || failed {
                return;
            }
        }
        if !full {
            return;
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    occurred_at: DateTime<Utc>,
    tenant_id: Option<Uuid>,
    actor_kind: String,
    actor_id: String,
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    outcome: String,
    request_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    details: serde_json::Value,
    prev_hash: Option<Vec<u8>>,
    hash: Vec<u8>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = sqlx::Error;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        Ok(AuditEvent {
            id: row.id,
            occurred_at: row.occurred_at,
            tenant_id: row.tenant_id.map(TenantId),
            actor_kind: ActorKind::parse(&row.actor_kind)
                .ok_or_else(|| bad_column("audit_events.actor_kind", &row.actor_kind))?,
            actor_id: row.actor_id,
            action: row.action,
            target_kind: row.target_kind,
            target_id: row.target_id,
            outcome: Outcome::parse(&row.outcome).ok_or_else(|| bad_column("audit_events.outcome", &row.outcome))?,
            request_id: row.request_id,
            // As the hash had it (RFC 5952 text): PostgreSQL writes some addresses otherwise
            // (`::0.1.0.0` for `::1:0`).
            ip: row
                .ip
                .map(|text| text.parse::<std::net::IpAddr>().map_or(text, |ip| ip.to_string())),
            user_agent: row.user_agent,
            details: row.details,
            prev_hash: row.prev_hash.map(hex::encode),
            hash: hex::encode(row.hash),
        })
    }
}

pub async fn list(db: impl PgExecutor<'_>, filter: &AuditFilter) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let mut q = filtered(filter);
    q.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
    q.build_query_as::<AuditRow>()
        .fetch_all(db)
        .await?
        .into_iter()
        .map(AuditEvent::try_from)
        .collect()
}

/// `text` with LIKE's wildcards and escape character taken literally.
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// How PostgreSQL runs [`list`] with `filter`: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`, so
/// the query runs. For operators checking that a listing stays on an index (the pages it
/// touched are in the plan), and for the test that does.
pub async fn plan(db: impl PgExecutor<'_>, filter: &AuditFilter) -> Result<serde_json::Value, sqlx::Error> {
    let mut q = QueryBuilder::new("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ");
    q.push(LIST_SQL);
    push_filters(&mut q, filter);
    q.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
    q.build_query_scalar().fetch_one(db).await
}

const LIST_SQL: &str =
    "SELECT id, occurred_at, tenant_id, actor_kind, actor_id, action, target_kind, target_id, outcome,
             request_id, host(ip) AS ip, user_agent, details, prev_hash, hash
         FROM audit_events WHERE true";

fn filtered(filter: &AuditFilter) -> QueryBuilder<'static, Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(LIST_SQL);
    push_filters(&mut q, filter);
    q
}

fn push_filters(q: &mut QueryBuilder<'_, Postgres>, filter: &AuditFilter) {
    if let Some(tenant) = filter.tenant {
        q.push(" AND tenant_id = ").push_bind(tenant.0);
    }
    if let Some(actor) = &filter.actor_id {
        q.push(" AND actor_id = ").push_bind(actor.clone());
    }
    if let Some(action) = &filter.action {
        q.push(" AND action = ").push_bind(action.clone());
    }
    if let Some(target) = &filter.target_id {
        q.push(" AND target_id = ").push_bind(target.clone());
    }
    if let Some(text) = &filter.text {
        // On the trigram index `audit_events_search`: the same expression, LIKE-escaped.
        q.push(" AND (COALESCE(target_id, '') || ' ' || details::text) ILIKE ")
            .push_bind(format!("%{}%", like_escaped(text)));
    }
    if let Some(outcome) = filter.outcome {
        q.push(" AND outcome = ").push_bind(outcome.as_str());
    }
    if let Some(since) = filter.since {
        q.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND occurred_at < ").push_bind(until);
    }
    if let Some(before) = filter.before_id {
        q.push(" AND id < ").push_bind(before);
    }
}

/// The rows of one chain, its tenant bound as `$1` (`NULL` for the platform chain): a condition
/// of its own for each kind of chain, so that each is planned on its own index (one condition
/// for both, `$1 IS NULL AND … OR tenant_id = $1`, is planned for neither).
pub(crate) fn chain_condition(platform: bool) -> &'static str {
    match platform {
        true => "tenant_id IS NULL AND $1::uuid IS NULL",
        false => "tenant_id = $1",
    }
}

/// One chain's events (`None`: the platform's) after `after_id`, oldest first, at most `limit`.
pub async fn chain_page(
    db: impl PgExecutor<'_>,
    tenant: Option<TenantId>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let chain = chain_condition(tenant.is_none());
    let sql = format!(
        "SELECT id, occurred_at, tenant_id, actor_kind, actor_id, action, target_kind, target_id, outcome,
                request_id, host(ip) AS ip, user_agent, details, prev_hash, hash
         FROM audit_events WHERE {chain} AND id > $2 ORDER BY id LIMIT $3"
    );
    sqlx::query_as::<_, AuditRow>(&sql)
        .bind(tenant.map(|t| t.0))
        .bind(after_id)
        .bind(limit)
        .fetch_all(db)
        .await?
        .into_iter()
        .map(AuditEvent::try_from)
        .collect()
}

/// A chain's events (`None`: the platform's) read a page at a time, oldest first: those after
/// `after`, and up to `until` (inclusive) when given.
pub struct ChainPages {
    tenant: Option<TenantId>,
    after: i64,
    until: Option<i64>,
    page: i64,
}

impl ChainPages {
    pub fn new(tenant: Option<TenantId>, after: i64, until: Option<i64>, page: i64) -> Self {
        ChainPages {
            tenant,
            after,
            until,
            page,
        }
    }

    /// The next page, `None` at the end.
    pub async fn next(&mut self, db: impl PgExecutor<'_>) -> Result<Option<Vec<AuditEvent>>, sqlx::Error> {
        if self.until.is_some_and(|until| self.after >= until) {
            return Ok(None);
        }
        let mut events = chain_page(db, self.tenant, self.after, self.page).await?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(None);
        };
        self.after = last;
        if let Some(until) = self.until {
            events.retain(|e| e.id <= until);
        }
        Ok((!events.is_empty()).then_some(events))
    }
}
