//! The `signature_replays` table: every accepted signature until its window closes.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::domain::ids::KeyId;

/// Remembers a signature; `false` when it was already remembered (a replay).
pub async fn remember(
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

/// Forgets signatures whose window has closed; they would be refused as expired anyway.
pub async fn prune(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM signature_replays WHERE expires_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(result.rows_affected())
}
