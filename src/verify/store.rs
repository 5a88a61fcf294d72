//! Verify's SQL, all of it: the lookups behind the cache, the limit counters, the replay
//! store, `last_used_at`, and the pruning of what has run out.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{PgExecutor, PgPool};

use super::cache::{id_fingerprint, KnownKeys};
use super::replays::Signature;
use std::collections::HashSet;

use crate::domain::ids::KeyId;
use crate::domain::key::Key;
use crate::domain::tenant::{TenantSettings, TenantStatus};
use crate::domain::token::TokenHash;
use crate::repo::bad_column;
use crate::repo::keys::{KeyRow, VERIFY_COLUMNS};

#[derive(sqlx::FromRow)]
struct KeyWithTenantRow {
    #[sqlx(flatten)]
    key: KeyRow,
    tenant_status: Option<String>,
}

/// Every key whose token hashes to one of `hashes` (either kind), with the hash and its tenant's
/// status: a batch of lookups in one statement (see `lookups`).
pub async fn find_by_hashes(
    db: impl PgExecutor<'_>,
    hashes: &[TokenHash],
) -> Result<Vec<(TokenHash, Key, Option<TenantStatus>)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        found: KeyWithTenantRow,
        token_hash: Vec<u8>,
    }
    let hashes: Vec<&[u8]> = hashes.iter().map(|hash| hash.as_bytes().as_slice()).collect();
    let rows = sqlx::query_as::<_, Row>(&format!(
        "SELECT {VERIFY_COLUMNS}, t.status AS tenant_status, k.token_hash
         FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id
         WHERE k.token_hash = ANY($1)"
    ))
    .bind(hashes)
    .fetch_all(db)
    .await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let hash = <[u8; 32]>::try_from(row.token_hash.as_slice())
            .map_err(|_| bad_column("api_keys.token_hash", &hex::encode(&row.token_hash)))?;
        let status = match row.found.tenant_status {
            Some(text) => Some(TenantStatus::parse(&text).ok_or_else(|| bad_column("tenants.status", &text))?),
            None => None,
        };
        found.push((TokenHash::from_bytes(hash), Key::try_from(row.found.key)?, status));
    }
    Ok(found)
}

/// The customer key with this id, with its tenant's status and settings (signed requests
/// name their key by id).
pub async fn find_customer_by_id(
    db: impl PgExecutor<'_>,
    id: &KeyId,
) -> Result<Option<(Key, TenantStatus, TenantSettings)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        key: KeyRow,
        tenant_status: String,
        tenant_settings: serde_json::Value,
    }
    let row = sqlx::query_as::<_, Row>(&format!(
        "SELECT {VERIFY_COLUMNS}, t.status AS tenant_status, t.settings AS tenant_settings
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.id = $1 AND k.kind = 'customer'"
    ))
    .bind(id.as_str())
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status =
        TenantStatus::parse(&row.tenant_status).ok_or_else(|| bad_column("tenants.status", &row.tenant_status))?;
    let settings = serde_json::from_value(row.tenant_settings).unwrap_or_default();
    Ok(Some((Key::try_from(row.key)?, status, settings)))
}

/// The fingerprints of every key and service token, read in one pass.
pub async fn known_keys(db: &PgPool) -> Result<KnownKeys, sqlx::Error> {
    let mut known = KnownKeys::default();
    let mut rows =
        sqlx::query_as::<_, (Vec<u8>, String)>("SELECT substring(token_hash FROM 1 FOR 8), id FROM api_keys").fetch(db);
    while let Some((prefix, id)) = rows.try_next().await? {
        let Ok(bytes) = <[u8; 8]>::try_from(prefix.as_slice()) else {
            return Err(bad_column("api_keys.token_hash", "shorter than 8 bytes"));
        };
        known.tokens.insert(u64::from_be_bytes(bytes));
        known.ids.insert(id_fingerprint(&id));
    }
    Ok(known)
}

/// What asking a limit family's `remaining` counter for a slice gave.
#[derive(Debug, PartialEq, Eq)]
pub enum BudgetSlice {
    /// `took` verifications were taken; `left` remain in the counter, under `epoch`.
    Taken { took: i64, left: i64, epoch: i64 },
    /// None was left.
    Exhausted,
    /// The family's newest key has no usage limit.
    Unlimited,
}

/// Takes up to `want` of a limit family's remaining verifications in one statement. The counter
/// lives on the family's newest key (the one without a successor), which its predecessors draw
/// from during their grace period; `epoch` moves on whenever someone sets the counter, so that
/// a slice taken before is not given back into the new value.
pub async fn take_budget(db: impl PgExecutor<'_>, family: &KeyId, want: i64) -> Result<BudgetSlice, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        took: Option<i64>,
        rest: Option<i64>,
        epoch: Option<i64>,
        unlimited: Option<bool>,
    }
    let row = sqlx::query_as::<_, Row>(
        "WITH head AS (
             SELECT k.id, k.remaining FROM api_keys k
             WHERE k.limit_family = $1 AND NOT EXISTS (SELECT 1 FROM api_keys s WHERE s.rotated_from = k.id)
             ORDER BY k.created_at DESC LIMIT 1
             FOR UPDATE
         ), taken AS (
             UPDATE api_keys SET remaining = api_keys.remaining - LEAST($2, api_keys.remaining) FROM head
             WHERE api_keys.id = head.id AND api_keys.remaining > 0
             RETURNING head.remaining - api_keys.remaining AS took, api_keys.remaining AS rest,
                       api_keys.limit_epoch AS epoch
         )
         SELECT (SELECT took FROM taken) AS took, (SELECT rest FROM taken) AS rest,
                (SELECT epoch FROM taken) AS epoch, (SELECT remaining IS NULL FROM head) AS unlimited",
    )
    .bind(family.as_str())
    .bind(want.max(1))
    .fetch_one(db)
    .await?;
    Ok(match (row.took, row.rest, row.epoch, row.unlimited) {
        (Some(took), Some(left), Some(epoch), _) => BudgetSlice::Taken { took, left, epoch },
        (_, _, _, Some(true)) => BudgetSlice::Unlimited,
        _ => BudgetSlice::Exhausted,
    })
}

/// Gives back `unused` verifications of a slice taken under `epoch`; nothing when the counter
/// was set (or removed) since.
pub async fn return_budget(
    db: impl PgExecutor<'_>,
    family: &KeyId,
    epoch: i64,
    unused: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys k SET remaining = k.remaining + $3
         WHERE k.limit_family = $1 AND k.limit_epoch = $2 AND k.remaining IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM api_keys s WHERE s.rotated_from = k.id)",
    )
    .bind(family.as_str())
    .bind(epoch)
    .bind(unused)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes up to `want` slots of a limit family's rate limit in the bucket starting at `bucket`:
/// as many as keep the slots counted in the buckets from `since` to `bucket` (inclusive) within
/// `limit`. Families are taken one at a time (a transaction-scoped advisory lock), so two
/// replicas never both take the last slot. Returns the slots taken (0: rate limited) and the
/// slots counted in those buckets after taking them.
pub async fn take_rate_slots(
    db: &PgPool,
    family: &KeyId,
    since: DateTime<Utc>,
    bucket: DateTime<Utc>,
    limit: i32,
    want: i32,
) -> Result<(i32, i32), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('keyward.rate:' || $1, 0))")
        .bind(family.as_str())
        .execute(&mut *tx)
        .await?;
    let taken: Option<(i32, i32)> = sqlx::query_as(
        "WITH used AS (
             SELECT COALESCE(sum(hits), 0)::integer AS hits FROM key_rate_windows
             WHERE key_id = $1 AND window_start >= $2 AND window_start <= $3
         ), slots AS (
             SELECT LEAST($5, $4 - hits) AS n FROM used WHERE hits < $4
         )
         INSERT INTO key_rate_windows (key_id, window_start, hits)
         SELECT $1, $3, n FROM slots
         ON CONFLICT (key_id, window_start) DO UPDATE SET hits = key_rate_windows.hits + EXCLUDED.hits
         RETURNING (SELECT n FROM slots), (SELECT hits FROM used) + (SELECT n FROM slots)",
    )
    .bind(family.as_str())
    .bind(since)
    .bind(bucket)
    .bind(limit)
    .bind(want.max(1))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(taken.unwrap_or((0, limit)))
}

/// Gives back slots taken in the bucket starting at `bucket` and not used.
pub async fn return_rate_slots(
    db: impl PgExecutor<'_>,
    family: &KeyId,
    bucket: DateTime<Utc>,
    unused: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE key_rate_windows SET hits = GREATEST(hits - $3, 0) WHERE key_id = $1 AND window_start = $2")
        .bind(family.as_str())
        .bind(bucket)
        .bind(unused)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets rate windows that started before `before`.
pub async fn prune_rate_windows(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM key_rate_windows WHERE window_start < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(result.rows_affected())
}

/// Records when keys were last used, in one statement for many keys; never moves a time back.
pub async fn record_last_used(db: impl PgExecutor<'_>, uses: &[(KeyId, DateTime<Utc>)]) -> Result<u64, sqlx::Error> {
    let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
    let times: Vec<DateTime<Utc>> = uses.iter().map(|(_, at)| *at).collect();
    let result = sqlx::query(
        "UPDATE api_keys k SET last_used_at = u.at
         FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
         WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
    )
    .bind(ids)
    .bind(times)
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}

// The `signature_replays` table: every accepted signature until its window closes.

/// Remembers a signature; `false` when it was already remembered (a replay).
pub async fn remember_signature(
    db: impl PgExecutor<'_>,
    key: &KeyId,
    digest: &[u8; 32],
    expires_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO signature_replays (key_id, signature_digest, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (key_id, signature_digest) DO NOTHING",
    )
    .bind(key.as_str())
    .bind(digest.as_slice())
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Remembers many signatures in one statement; returns those stored now (the rest were
/// remembered before: replays).
pub async fn remember_signatures(
    db: impl PgExecutor<'_>,
    signatures: &[&Signature],
) -> Result<HashSet<(KeyId, [u8; 32])>, sqlx::Error> {
    let keys: Vec<&str> = signatures.iter().map(|s| s.key.as_str()).collect();
    let digests: Vec<&[u8]> = signatures.iter().map(|s| s.digest.as_slice()).collect();
    let expiries: Vec<DateTime<Utc>> = signatures.iter().map(|s| s.expires_at).collect();
    let stored: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "INSERT INTO signature_replays (key_id, signature_digest, expires_at)
         SELECT * FROM unnest($1::text[], $2::bytea[], $3::timestamptz[])
         ON CONFLICT (key_id, signature_digest) DO NOTHING
         RETURNING key_id, signature_digest",
    )
    .bind(keys)
    .bind(digests)
    .bind(expiries)
    .fetch_all(db)
    .await?;
    Ok(stored
        .into_iter()
        .filter_map(|(key, digest)| Some((KeyId::from_trusted(key), <[u8; 32]>::try_from(digest).ok()?)))
        .collect())
}

/// Forgets signatures whose window has closed; they would be refused as expired anyway.
pub async fn prune_replays(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM signature_replays WHERE expires_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(result.rows_affected())
}
