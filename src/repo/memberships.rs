//! The `memberships` table: who belongs to which tenant, in which role.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::role_column;
use crate::domain::ids::TenantId;
use crate::domain::member::Member;
use crate::domain::user::{Membership, Role, UserId};

#[derive(sqlx::FromRow)]
struct MembershipRow {
    tenant_id: Uuid,
    role: String,
}

pub async fn of_user(db: impl PgExecutor<'_>, user: UserId) -> Result<Vec<Membership>, sqlx::Error> {
    sqlx::query_as::<_, MembershipRow>("SELECT tenant_id, role FROM memberships WHERE user_id = $1 ORDER BY tenant_id")
        .bind(user.0)
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|row| {
            Ok(Membership {
                tenant_id: TenantId(row.tenant_id),
                role: role_column("memberships.role", &row.role)?,
            })
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: Uuid,
    email: String,
    role: String,
    created_at: DateTime<Utc>,
    active: bool,
}

impl TryFrom<MemberRow> for Member {
    type Error = sqlx::Error;

    fn try_from(row: MemberRow) -> Result<Self, Self::Error> {
        Ok(Member {
            user_id: UserId(row.user_id),
            email: row.email,
            role: role_column("memberships.role", &row.role)?,
            joined_at: row.created_at,
            active: row.active,
        })
    }
}

const MEMBER_SELECT: &str = "SELECT m.user_id, u.email, m.role, m.created_at, u.password_hash IS NOT NULL AS active
     FROM memberships m JOIN users u ON u.id = m.user_id";

pub async fn list_members(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    after: Option<UserId>,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as::<_, MemberRow>(&format!(
        "{MEMBER_SELECT} WHERE m.tenant_id = $1 AND ($2::uuid IS NULL OR m.user_id > $2) ORDER BY m.user_id LIMIT $3"
    ))
    .bind(tenant.0)
    .bind(after.map(|u| u.0))
    .bind(limit)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Member::try_from)
    .collect()
}

pub async fn get_member(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<Member>, sqlx::Error> {
    sqlx::query_as::<_, MemberRow>(&format!("{MEMBER_SELECT} WHERE m.tenant_id = $1 AND m.user_id = $2"))
        .bind(tenant.0)
        .bind(user.0)
        .fetch_optional(db)
        .await?
        .map(Member::try_from)
        .transpose()
}

pub async fn add(
    conn: &mut PgConnection,
    user: UserId,
    tenant: TenantId,
    role: Role,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(user.0)
        .bind(tenant.0)
        .bind(role.as_str())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks the tenant's owner rows and counts them, so two demotions cannot both pass the
/// "last owner" check.
pub async fn lock_owners(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<UserId>, sqlx::Error> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT user_id FROM memberships WHERE tenant_id = $1 AND role = 'owner' FOR UPDATE")
            .bind(tenant.0)
            .fetch_all(conn)
            .await?;
    Ok(ids.into_iter().map(UserId).collect())
}

pub async fn set_role(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    role: Role,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("UPDATE memberships SET role = $3 WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant.0)
        .bind(user.0)
        .bind(role.as_str())
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn remove(conn: &mut PgConnection, tenant: TenantId, user: UserId) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant.0)
        .bind(user.0)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}
