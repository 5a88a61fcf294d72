//! The `users` table: accounts, their password hashes and session versions.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::user::{User, UserId};

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    platform_admin: bool,
    disabled_at: Option<DateTime<Utc>>,
    session_version: i32,
    created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: UserId(row.id),
            email: row.email,
            platform_admin: row.platform_admin,
            disabled_at: row.disabled_at,
            session_version: row.session_version,
            created_at: row.created_at,
        }
    }
}

const USER_COLUMNS: &str = "id, email, platform_admin, disabled_at, session_version, created_at";

pub async fn insert(conn: &mut PgConnection, user: &User, password_hash: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, platform_admin, disabled_at, session_version, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(user.id.0)
    .bind(&user.email)
    .bind(password_hash)
    .bind(user.platform_admin)
    .bind(user.disabled_at)
    .bind(user.session_version)
    .bind(user.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user with this email (compared case-insensitively) and their password hash.
pub async fn find_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<(User, Option<String>)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        password_hash: Option<String>,
    }
    let row = sqlx::query_as::<_, Row>(&format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
    ))
    .bind(email)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user.into(), r.password_hash)))
}

pub async fn get(db: impl PgExecutor<'_>, id: UserId) -> Result<Option<User>, sqlx::Error> {
    Ok(
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(db)
            .await?
            .map(User::from),
    )
}

/// Inserts `user` unless a user with that email exists (two invitations racing); returns the
/// stored user either way.
pub async fn insert_if_absent(conn: &mut PgConnection, user: &User) -> Result<User, sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, platform_admin, session_version, created_at) VALUES ($1, $2, false, 0, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(user.id.0)
    .bind(&user.email)
    .bind(user.created_at)
    .execute(&mut *conn)
    .await?;
    find_by_email(&mut *conn, &user.email)
        .await?
        .map(|(user, _)| user)
        .ok_or(sqlx::Error::RowNotFound)
}

/// Sets the first password of an account that has none; `false` if it already has one.
pub async fn set_first_password(conn: &mut PgConnection, id: UserId, hash: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash IS NULL")
        .bind(id.0)
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The stored password hash of a user, locked for the transaction.
pub async fn password_hash_for_update(conn: &mut PgConnection, id: UserId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map(Option::flatten)
}

pub async fn set_password(conn: &mut PgConnection, id: UserId, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(id.0)
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Invalidates every access token the user holds.
pub async fn bump_session_version(conn: &mut PgConnection, id: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET session_version = session_version + 1 WHERE id = $1")
        .bind(id.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user, and whether their session `family` (a login and its refreshes) is still live.
pub async fn get_with_session(
    db: impl PgExecutor<'_>,
    id: UserId,
    family: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<(User, bool)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        session_live: bool,
    }
    let row = sqlx::query_as::<_, Row>(&format!(
        "SELECT {USER_COLUMNS}, EXISTS (
             SELECT 1 FROM refresh_tokens r
             WHERE r.family_id = $2 AND r.user_id = users.id AND r.revoked_at IS NULL AND r.expires_at > $3
         ) AS session_live
         FROM users WHERE id = $1"
    ))
    .bind(id.0)
    .bind(family)
    .bind(now)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user.into(), r.session_live)))
}

/// Disables (`Some(at)`) or enables (`None`) a user; a change of state ends their access tokens.
pub async fn set_disabled(conn: &mut PgConnection, id: UserId, at: Option<DateTime<Utc>>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET disabled_at = $2, session_version = session_version + 1 WHERE id = $1")
        .bind(id.0)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}
