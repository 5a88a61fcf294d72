//! The `refresh_tokens` table: sessions (a login and its refreshes form a family) and their
//! one-time refresh tokens.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::token::TokenHash;
use crate::domain::user::UserId;

pub struct NewRefreshToken<'a> {
    pub family: Uuid,
    pub user: UserId,
    pub hash: &'a TokenHash,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut PgConnection, token: NewRefreshToken<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(token.family)
    .bind(token.user.0)
    .bind(token.hash.as_bytes().as_slice())
    .bind(token.now)
    .bind(token.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct RefreshRow {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn find_for_update(conn: &mut PgConnection, hash: &TokenHash) -> Result<Option<RefreshRow>, sqlx::Error> {
    sqlx::query_as::<_, RefreshRow>(
        "SELECT id, family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(conn)
    .await
}

pub async fn mark_used(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn revoke_family(conn: &mut PgConnection, family: Uuid, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

/// Ends one session of `user` (every refresh token of the family); returns whether it was live.
pub async fn revoke_session(
    conn: &mut PgConnection,
    user: UserId,
    family: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $3 WHERE family_id = $2 AND user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user.0)
    .bind(family)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Revokes every session (refresh-token family) a user holds.
pub async fn revoke_all(conn: &mut PgConnection, user: UserId, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user.0)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}
