//! The `api_keys` table: customer keys and service tokens. Lookups for verification go by the
//! SHA-256 of the token, through its unique index.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::bad_column;
use crate::crypto::secrets::Sealed;
use crate::domain::ids::{KeyId, KeyKind, TenantId};
use crate::domain::key::{Environment, Grants, Key, KeyPatch, KeyStatus, RateLimit};
use crate::domain::permissions::TenantScope;
use crate::domain::token::TokenHash;

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: String,
    tenant_id: Option<Uuid>,
    kind: String,
    name: String,
    environment: String,
    prefix: String,
    start: String,
    scopes: Vec<String>,
    metadata: serde_json::Value,
    owner_id: Option<String>,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_reason: Option<String>,
    enabled: bool,
    last_used_at: Option<DateTime<Utc>>,
    rotated_from: Option<String>,
    limit_family: String,
    signing_secret: Option<Vec<u8>>,
    signing_secret_version: Option<i32>,
    remaining: Option<i64>,
    rate_limit: Option<i32>,
    rate_limit_window_seconds: Option<i32>,
}

impl TryFrom<KeyRow> for Key {
    type Error = sqlx::Error;

    fn try_from(row: KeyRow) -> Result<Self, Self::Error> {
        let kind = KeyKind::parse(&row.kind).ok_or_else(|| bad_column("api_keys.kind", &row.kind))?;
        let (grants, refused) = Grants::parse(kind, &row.scopes);
        if !refused.is_empty() {
            tracing::warn!(key = %row.id, ?refused, "stored scopes or permissions that are no longer valid are not granted");
        }
        Ok(Key {
            id: KeyId::from_trusted(row.id),
            tenant_id: row.tenant_id.map(TenantId),
            name: row.name,
            environment: Environment::parse(&row.environment)
                .ok_or_else(|| bad_column("api_keys.environment", &row.environment))?,
            prefix: row.prefix,
            start: row.start,
            grants,
            metadata: row.metadata,
            owner_id: row.owner_id,
            created_at: row.created_at,
            created_by: row.created_by,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            revoked_reason: row.revoked_reason,
            enabled: row.enabled,
            last_used_at: row.last_used_at,
            rotated_from: row.rotated_from.map(KeyId::from_trusted),
            limit_family: KeyId::from_trusted(row.limit_family),
            signing_secret: match (row.signing_secret, row.signing_secret_version) {
                (Some(blob), Some(version)) => Some(Sealed { version, blob }),
                _ => None,
            },
            remaining: row.remaining,
            rate_limit: match (row.rate_limit, row.rate_limit_window_seconds) {
                (Some(limit), Some(window_seconds)) => Some(RateLimit { limit, window_seconds }),
                _ => None,
            },
        })
    }
}

/// A key's columns for `KeyRow`, with `$last_used` as its `last_used_at`.
macro_rules! key_columns {
    ($last_used:literal) => {
        concat!(
            "k.id, k.tenant_id, k.kind, k.name, k.environment, k.prefix, k.start, k.scopes, \
             k.metadata, k.owner_id, k.created_at, k.created_by, k.expires_at, k.revoked_at, k.revoked_reason, \
             k.enabled, ",
            $last_used,
            ", k.rotated_from, k.limit_family, k.signing_secret, k.signing_secret_version, \
             k.remaining, k.rate_limit, k.rate_limit_window_seconds"
        )
    };
}

/// A key as shown. Its last use is the newer of `api_keys.last_used_at` (service tokens, and
/// what the pruner folded in) and the newest successful verification counted for it
/// (`verification_counts`, one index probe): verifying a key writes no `api_keys` row.
pub(crate) const COLUMNS: &str = key_columns!(
    "GREATEST(k.last_used_at, (SELECT c.last_at FROM verification_counts c \
      WHERE c.key_id = k.id AND c.code = 'VALID' ORDER BY c.minute DESC LIMIT 1)) AS last_used_at"
);

/// A key as verification reads it: its last use is not needed there, and not looked up.
pub(crate) const VERIFY_COLUMNS: &str = key_columns!("k.last_used_at");

/// Whether anyone can act at all: a service token or a user exists (a fresh deployment has
/// neither until the first is made with the command line).
pub async fn any_credential(db: impl PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE kind = 'service') OR EXISTS (SELECT 1 FROM users)")
        .fetch_one(db)
        .await
}

pub async fn insert(conn: &mut PgConnection, key: &Key, hash: &TokenHash) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, kind, name, environment, prefix, start, token_hash, scopes,
             metadata, owner_id, created_at, created_by, expires_at, enabled, rotated_from, signing_secret,
             signing_secret_version, remaining, rate_limit, rate_limit_window_seconds, limit_family)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                 $22)",
    )
    .bind(key.id.as_str())
    .bind(key.tenant_id.map(|t| t.0))
    .bind(key.kind().as_str())
    .bind(&key.name)
    .bind(key.environment.as_str())
    .bind(&key.prefix)
    .bind(&key.start)
    .bind(hash.as_bytes().as_slice())
    .bind(key.grants.names())
    .bind(&key.metadata)
    .bind(key.owner_id.as_deref())
    .bind(key.created_at)
    .bind(key.created_by.as_deref())
    .bind(key.expires_at)
    .bind(key.enabled)
    .bind(key.rotated_from.as_ref().map(KeyId::as_str))
    .bind(key.signing_secret.as_ref().map(|s| s.blob.as_slice()))
    .bind(key.signing_secret.as_ref().map(|s| s.version))
    .bind(key.remaining)
    .bind(key.rate_limit.map(|r| r.limit))
    .bind(key.rate_limit.map(|r| r.window_seconds))
    .bind(key.limit_family.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// One key of `kind` held by `owner`; `for_update` locks it for the rest of the transaction.
pub async fn get(
    db: impl PgExecutor<'_>,
    owner: TenantScope,
    kind: KeyKind,
    id: &KeyId,
    for_update: bool,
) -> Result<Option<Key>, sqlx::Error> {
    let lock = if for_update { "FOR UPDATE" } else { "" };
    sqlx::query_as::<_, KeyRow>(&format!(
        "SELECT {COLUMNS} FROM api_keys k
         WHERE k.id = $1 AND k.kind = $2 AND k.tenant_id IS NOT DISTINCT FROM $3 {lock}"
    ))
    .bind(id.as_str())
    .bind(kind.as_str())
    .bind(owner.tenant_id().map(|t| t.0))
    .fetch_optional(db)
    .await?
    .map(Key::try_from)
    .transpose()
}

#[derive(Debug, Clone)]
pub struct KeyListFilter {
    pub owner: TenantScope,
    pub kind: KeyKind,
    pub status: Option<KeyStatus>,
    pub environment: Option<Environment>,
    pub owner_id: Option<String>,
    /// Keyset cursor: only keys with a smaller id (newest first).
    pub before: Option<KeyId>,
    pub limit: i64,
}

/// Keys newest first, filtered; status is judged at `now`.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &KeyListFilter,
    now: DateTime<Utc>,
) -> Result<Vec<Key>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT {COLUMNS} FROM api_keys k WHERE k.kind = "));
    q.push_bind(filter.kind.as_str());
    match filter.owner {
        TenantScope::Platform => q.push(" AND k.tenant_id IS NULL"),
        TenantScope::Tenant(t) => q.push(" AND k.tenant_id = ").push_bind(t.0),
    };
    if let Some(status) = filter.status {
        let live = "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ";
        match status {
            KeyStatus::Revoked => q.push(" AND k.revoked_at IS NOT NULL"),
            KeyStatus::Expired => q.push(" AND k.revoked_at IS NULL AND k.expires_at <= ").push_bind(now),
            KeyStatus::Disabled => q.push(" AND ").push(live).push_bind(now).push(") AND NOT k.enabled"),
            KeyStatus::Active => q.push(" AND ").push(live).push_bind(now).push(") AND k.enabled"),
        };
    }
    if let Some(environment) = filter.environment {
        q.push(" AND k.environment = ").push_bind(environment.as_str());
    }
    if let Some(owner_id) = &filter.owner_id {
        q.push(" AND k.owner_id = ").push_bind(owner_id.clone());
    }
    if let Some(before) = &filter.before {
        q.push(" AND k.id < ").push_bind(before.as_str().to_owned());
    }
    q.push(" ORDER BY k.id DESC LIMIT ").push_bind(filter.limit);
    q.build_query_as::<KeyRow>()
        .fetch_all(db)
        .await?
        .into_iter()
        .map(Key::try_from)
        .collect()
}

pub async fn update(conn: &mut PgConnection, id: &KeyId, patch: &KeyPatch) -> Result<Key, sqlx::Error> {
    let scopes: Option<Vec<String>> = patch
        .scopes
        .as_ref()
        .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect());
    let rate_limit = patch.rate_limit.flatten();
    sqlx::query_as::<_, KeyRow>(&format!(
        "UPDATE api_keys k SET
             name = COALESCE($2, k.name),
             scopes = COALESCE($3, k.scopes),
             metadata = COALESCE($4, k.metadata),
             owner_id = CASE WHEN $5 THEN $6 ELSE k.owner_id END,
             expires_at = CASE WHEN $7 THEN $8 ELSE k.expires_at END,
             enabled = COALESCE($9, k.enabled),
             remaining = CASE WHEN $10 THEN $11 ELSE k.remaining END,
             limit_epoch = CASE WHEN $10 THEN k.limit_epoch + 1 ELSE k.limit_epoch END,
             rate_limit = CASE WHEN $12 THEN $13 ELSE k.rate_limit END,
             rate_limit_window_seconds = CASE WHEN $12 THEN $14 ELSE k.rate_limit_window_seconds END
         WHERE k.id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id.as_str())
    .bind(patch.name.as_deref())
    .bind(scopes)
    .bind(patch.metadata.as_ref())
    .bind(patch.owner_id.is_some())
    .bind(patch.owner_id.clone().flatten())
    .bind(patch.expires_at.is_some())
    .bind(patch.expires_at.flatten())
    .bind(patch.enabled)
    .bind(patch.remaining.is_some())
    .bind(patch.remaining.flatten())
    .bind(patch.rate_limit.is_some())
    .bind(rate_limit.map(|r| r.limit))
    .bind(rate_limit.map(|r| r.window_seconds))
    .fetch_one(conn)
    .await
    .and_then(Key::try_from)
}

pub async fn set_expires_at(conn: &mut PgConnection, id: &KeyId, at: DateTime<Utc>) -> Result<Key, sqlx::Error> {
    sqlx::query_as::<_, KeyRow>(&format!(
        "UPDATE api_keys k SET expires_at = $2 WHERE k.id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id.as_str())
    .bind(at)
    .fetch_one(conn)
    .await
    .and_then(Key::try_from)
}

pub async fn revoke(
    conn: &mut PgConnection,
    id: &KeyId,
    at: DateTime<Utc>,
    reason: Option<&str>,
) -> Result<Key, sqlx::Error> {
    sqlx::query_as::<_, KeyRow>(&format!(
        "UPDATE api_keys k SET revoked_at = $2, revoked_reason = $3 WHERE k.id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id.as_str())
    .bind(at)
    .bind(reason)
    .fetch_one(conn)
    .await
    .and_then(Key::try_from)
}

/// Revokes every live service token of `tenant` that `created_by` minted; returns their ids.
pub async fn revoke_service_tokens_created_by(
    conn: &mut PgConnection,
    tenant: TenantId,
    created_by: &str,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<KeyId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = $3, revoked_reason = $4
         WHERE tenant_id = $1 AND kind = 'service' AND created_by = $2 AND revoked_at IS NULL
         RETURNING id",
    )
    .bind(tenant.0)
    .bind(created_by)
    .bind(at)
    .bind(reason)
    .fetch_all(&mut *conn)
    .await?;
    ids.into_iter()
        .map(|text| KeyId::parse(KeyKind::Service, &text).ok_or_else(|| super::bad_column("api_keys.id", &text)))
        .collect()
}

/// Keys whose signing secret is sealed under another master key than `current`.
pub async fn sealed_under_other_versions(
    db: impl PgExecutor<'_>,
    current: i32,
    limit: i64,
) -> Result<Vec<Key>, sqlx::Error> {
    sqlx::query_as::<_, KeyRow>(&format!(
        "SELECT {COLUMNS} FROM api_keys k WHERE k.signing_secret_version <> $1 ORDER BY k.id LIMIT $2"
    ))
    .bind(current)
    .bind(limit)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Key::try_from)
    .collect()
}

pub async fn reseal(conn: &mut PgConnection, id: &KeyId, sealed: &Sealed) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_keys SET signing_secret = $2, signing_secret_version = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(sealed.blob.as_slice())
        .bind(sealed.version)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives a family's other keys the limits just set on `head`, so that its predecessors keep
/// drawing from the shared counter and window (`remaining`: they hold the `0` marker when the
/// family is limited). Returns the keys changed.
pub async fn spread_family_limits(
    conn: &mut PgConnection,
    family: &KeyId,
    head: &KeyId,
    remaining: Option<Option<i64>>,
    rate_limit: Option<Option<RateLimit>>,
) -> Result<Vec<KeyId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE api_keys SET
             remaining = CASE WHEN $3 THEN (CASE WHEN $4 THEN 0 END) ELSE remaining END,
             rate_limit = CASE WHEN $5 THEN $6 ELSE rate_limit END,
             rate_limit_window_seconds = CASE WHEN $5 THEN $7 ELSE rate_limit_window_seconds END
         WHERE limit_family = $1 AND id <> $2 AND revoked_at IS NULL
         RETURNING id",
    )
    .bind(family.as_str())
    .bind(head.as_str())
    .bind(remaining.is_some())
    .bind(remaining.is_some_and(|r| r.is_some()))
    .bind(rate_limit.is_some())
    .bind(rate_limit.flatten().map(|r| r.limit))
    .bind(rate_limit.flatten().map(|r| r.window_seconds))
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids.into_iter().map(KeyId::from_trusted).collect())
}

/// The key rotation issued from `id`, if any (a key has at most one).
pub async fn successor_of(db: impl PgExecutor<'_>, id: &KeyId) -> Result<Option<KeyId>, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM api_keys WHERE rotated_from = $1 LIMIT 1")
        .bind(id.as_str())
        .fetch_optional(db)
        .await?;
    Ok(found.map(KeyId::from_trusted))
}

/// Hands a rotated key's remaining verifications to its successor: the old key keeps `0` (it
/// draws from the successor's counter from now on, and a use racing the rotation on the old row
/// finds nothing left instead of spending twice).
pub async fn hand_over_remaining(conn: &mut PgConnection, old: &KeyId) -> Result<(), sqlx::Error> {
    // Slices replicas took from the old key's counter are given back to the successor's.
    sqlx::query(
        "UPDATE api_keys n SET limit_epoch = o.limit_epoch FROM api_keys o WHERE o.id = $1 AND n.rotated_from = $1",
    )
    .bind(old.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE api_keys SET remaining = 0 WHERE id = $1 AND remaining IS NOT NULL")
        .bind(old.as_str())
        .execute(conn)
        .await?;
    Ok(())
}
