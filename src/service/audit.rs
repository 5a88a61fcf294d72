//! Reading the audit trail.

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use super::{Context, Error, Result};
use crate::crypto::audit_key;
use crate::domain::audit::{AuditEvent, AuditPublicKey, Checkpoint, Outcome};
use crate::domain::audit_check::{Broken, ChainCheck, Checked};
use crate::domain::ids::TenantId;
use crate::domain::page::{check_cursor, check_limit, Page};
use crate::domain::permissions::{authorize, Action, Caller};
use crate::domain::validation::{check_filter, check_time, ValidationErrors};
use crate::repo::{self, audit::AuditFilter};

/// Query of `GET /v1/audit` and `GET /v1/tenants/{tenant_id}/audit`.
#[derive(Debug, Default)]
pub struct AuditQuery {
    /// Platform listing only: events of this tenant.
    pub tenant_id: Option<TenantId>,
    /// Actor id, e.g. a service token id.
    pub actor: Option<String>,
    /// Dotted action, e.g. `key.created`.
    pub action: Option<String>,
    /// Target id, e.g. a key id.
    pub target: Option<String>,
    /// Text the target id or the details contain (case-insensitive).
    pub q: Option<String>,
    pub outcome: Option<Outcome>,
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events before this time.
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// Events newest first. `tenant` is the tenant of the route (`None`: the platform route).
pub async fn list(
    ctx: &Context,
    caller: &Caller,
    tenant: Option<TenantId>,
    query: AuditQuery,
) -> Result<Page<AuditEvent>> {
    let (filter, limit) = filter(caller, tenant, query)?;
    check_tenant(ctx, tenant).await?;
    let rows = repo::audit::list(&ctx.pool, &filter).await?;
    Ok(Page::from_rows(rows, limit, |e| e.id.to_string()))
}

/// Every matching event, oldest first, delivered through the returned channel as it is read.
pub async fn export(
    ctx: &Context,
    caller: &Caller,
    tenant: Option<TenantId>,
    query: AuditQuery,
) -> Result<tokio::sync::mpsc::Receiver<Result<AuditEvent, sqlx::Error>>> {
    let (filter, _) = filter(caller, tenant, query)?;
    check_tenant(ctx, tenant).await?;
    let (sink, events) = tokio::sync::mpsc::channel(256);
    let pool = ctx.pool.clone();
    tokio::spawn(async move { repo::audit::export(&pool, &filter, sink).await });
    Ok(events)
}

async fn check_tenant(ctx: &Context, tenant: Option<TenantId>) -> Result<()> {
    if let Some(id) = tenant {
        repo::tenants::get(&ctx.pool, id)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
    }
    Ok(())
}

fn filter(caller: &Caller, tenant: Option<TenantId>, query: AuditQuery) -> Result<(AuditFilter, i64)> {
    authorize(caller, Action::ReadAudit, tenant)?;
    let mut errors = ValidationErrors::default();
    if tenant.is_some() && query.tenant_id.is_some() {
        errors.add(
            "tenant_id",
            "only on the platform listing; the path names the tenant here",
        );
    }
    let limit = check_limit(&mut errors, query.limit);
    let before_id = check_cursor(&mut errors, query.cursor.as_deref(), |text| text.parse::<i64>().ok());
    check_filter(&mut errors, "actor", query.actor.as_deref(), 256);
    check_filter(&mut errors, "action", query.action.as_deref(), 256);
    check_filter(&mut errors, "target", query.target.as_deref(), 256);
    check_filter(&mut errors, "q", query.q.as_deref(), 256);
    if query.q.as_deref().is_some_and(|q| q.chars().count() < 3) {
        errors.add("q", "must be at least 3 characters");
    }
    check_time(&mut errors, "since", query.since);
    check_time(&mut errors, "until", query.until);
    errors.finish(())?;
    let filter = AuditFilter {
        tenant: tenant.or(query.tenant_id),
        actor_id: query.actor,
        action: query.action,
        target_id: query.target,
        text: query.q,
        outcome: query.outcome,
        since: query.since,
        until: query.until,
        before_id,
        limit: limit + 1,
    };
    Ok((filter, limit))
}

/// Query of the checkpoint listings.
#[derive(Debug, Default)]
pub struct CheckpointQuery {
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// One chain's signed checkpoints, newest first (`tenant`: `None` for the platform chain).
pub async fn checkpoints(
    ctx: &Context,
    caller: &Caller,
    tenant: Option<TenantId>,
    query: CheckpointQuery,
) -> Result<Page<Checkpoint>> {
    authorize(caller, Action::ReadAudit, tenant)?;
    let mut errors = ValidationErrors::default();
    let limit = check_limit(&mut errors, query.limit);
    let before_id = check_cursor(&mut errors, query.cursor.as_deref(), |text| text.parse::<i64>().ok());
    errors.finish(())?;
    check_tenant(ctx, tenant).await?;
    let rows = repo::checkpoints::list(&ctx.pool, tenant, before_id, limit + 1).await?;
    Ok(Page::from_rows(rows, limit, |c| c.id.to_string()))
}

/// Every public key that has signed checkpoints, and the current one (always the one in
/// memory, never a row claiming its id): anyone may read them.
pub async fn public_keys(ctx: &Context) -> Result<Vec<AuditPublicKey>> {
    let mut keys: Vec<StoredKey> = ctx.stored_audit_keys.get(&ctx.pool).await?;
    if let Some(current) = &ctx.audit_key {
        keys.retain(|(id, _)| id != current.id());
        keys.push((current.id().to_owned(), current.public_key().to_vec()));
    }
    Ok(keys
        .into_iter()
        .filter_map(|(key_id, public)| {
            let raw: [u8; 32] = public.as_slice().try_into().ok()?;
            Some(AuditPublicKey {
                key_id,
                algorithm: "ed25519",
                public_key_pem: audit_key::public_pem(&raw)?,
                public_key: hex::encode(raw),
            })
        })
        .collect())
}

/// The public keys stored in the database, read at most once a minute: anyone may ask for
/// them, so a flood of anonymous requests costs one query a minute, not one each. A key
/// another replica starts signing with is served within the minute (each replica serves its
/// own current key from memory at once).
#[derive(Debug, Default)]
pub struct StoredAuditKeys {
    read: tokio::sync::Mutex<Option<(tokio::time::Instant, Vec<StoredKey>)>>,
}

/// A stored audit key: its id and raw public key.
type StoredKey = (String, Vec<u8>);

impl StoredAuditKeys {
    const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);

    async fn get(&self, pool: &sqlx::PgPool) -> Result<Vec<StoredKey>> {
        // Held while reading: concurrent misses wait for one query instead of each sending one.
        let mut read = self.read.lock().await;
        if let Some((at, keys)) = read.as_ref() {
            if at.elapsed() < Self::FRESH_FOR {
                return Ok(keys.clone());
            }
        }
        let keys = repo::checkpoints::public_keys(pool).await?;
        *read = Some((tokio::time::Instant::now(), keys.clone()));
        Ok(keys)
    }
}

/// How many chain heads one round signs at most; the rest wait for the next round.
const HEADS_PER_ROUND: usize = 10_000;

/// Signs the head of every chain with events after its last checkpoint; returns how many.
/// One replica at a time (a transaction-scoped advisory lock; the others skip the round).
pub async fn sign_checkpoints(ctx: &Context) -> Result<usize> {
    let Some(key) = &ctx.audit_key else {
        return Ok(0);
    };
    let mut tx = ctx.pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended('audit:checkpoints', 0))")
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    let heads = repo::checkpoints::due_heads(&mut tx).await?;
    if heads.is_empty() {
        return Ok(0);
    }
    repo::checkpoints::record_key(&mut tx, key.id(), &key.public_key()).await?;
    let signed_at = ctx.clock.now();
    let mut signed = 0;
    for head in heads.iter().take(HEADS_PER_ROUND) {
        // Never sign a head the chain does not lead to: rows rewritten since the last
        // checkpoint stay unsigned, and `keyward audit verify` names them.
        if let Err(broken) = check_unsigned_segment(&mut tx, head).await? {
            let chain = head.tenant_id.map_or("platform".to_owned(), |t| t.to_string());
            tracing::error!(%chain, %broken, "the audit chain does not verify since its last checkpoint: not signing its head");
            continue;
        }
        signed += 1;
        let hash = hex::encode(&head.hash);
        let message = Checkpoint::message(
            head.tenant_id.map(TenantId),
            head.event_id,
            head.event_count,
            &hash,
            signed_at,
        );
        let signature = key.sign(message.as_bytes());
        repo::checkpoints::insert(&mut tx, head, signed_at, key.id(), &signature).await?;
    }
    tx.commit().await?;
    Ok(signed)
}

/// The events of `head`'s chain since its last checkpoint, checked link by link up to the head.
async fn check_unsigned_segment(
    conn: &mut sqlx::PgConnection,
    head: &repo::checkpoints::DueHead,
) -> Result<std::result::Result<(), Broken>> {
    let tenant = head.tenant_id.map(TenantId);
    let start = head.signed_event_id.zip(head.signed_hash.as_ref().map(hex::encode));
    let after = start.as_ref().map_or(0, |(id, _)| *id);
    let mut check = ChainCheck::continuing(start);
    let mut last_hash = None;
    let mut pages = repo::audit::ChainPages::new(tenant, after, Some(head.event_id), CHECK_PAGE);
    while let Some(page) = pages.next(&mut *conn).await? {
        for event in page {
            last_hash = Some(event.hash.clone());
            if let Err(broken) = check.push(event) {
                return Ok(Err(broken));
            }
        }
    }
    if last_hash.as_deref() != Some(hex::encode(&head.hash).as_str()) {
        return Ok(Err(Broken::Altered(head.event_id)));
    }
    Ok(Ok(()))
}

/// Events read from the database per page when checking a chain.
const CHECK_PAGE: i64 = 1000;

/// Checks a stored chain (`None`: the platform's) against its checkpoints, with `keys` (raw
/// public keys by id; `None`: the keys the database holds, which whoever can write it could
/// have replaced, so an auditor passes the key they trust).
pub async fn check_stored_chain(
    ctx: &Context,
    tenant: Option<TenantId>,
    keys: Option<&HashMap<String, Vec<u8>>>,
) -> Result<std::result::Result<Checked, Broken>> {
    let stored_keys: HashMap<String, Vec<u8>>;
    let keys = match keys {
        Some(keys) => keys,
        None => {
            stored_keys = repo::checkpoints::public_keys(&ctx.pool).await?.into_iter().collect();
            &stored_keys
        }
    };
    let checkpoints = repo::checkpoints::all_of_chain(&ctx.pool, tenant).await?;
    let mut check = match ChainCheck::new(&checkpoints, keys, audit_key::verifies) {
        Ok(check) => check,
        Err(broken) => return Ok(Err(broken)),
    };
    // After an archive, the chain goes on from its anchor.
    let anchor = repo::checkpoints::anchor(&ctx.pool, tenant).await?;
    if let Some((checkpoint, _)) = anchor {
        if let Err(broken) = check.resume_at(checkpoint) {
            return Ok(Err(broken));
        }
    }
    let after = anchor.map_or(0, |(_, event)| event);
    let mut pages = repo::audit::ChainPages::new(tenant, after, None, CHECK_PAGE);
    while let Some(page) = pages.next(&ctx.pool).await? {
        for event in page {
            if let Err(broken) = check.push(event) {
                return Ok(Err(broken));
            }
        }
    }
    Ok(check.finish(ctx.clock.now()))
}

/// The chains to check: the platform's (`None`) and every tenant's.
pub async fn chains(ctx: &Context) -> Result<Vec<Option<TenantId>>> {
    Ok(repo::checkpoints::chains(&ctx.pool).await?)
}
