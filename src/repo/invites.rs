//! The `invites` table: invitations into a tenant, pending until accepted, voided or expired.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::role_column;
use crate::domain::ids::TenantId;
use crate::domain::member::{Invitation, VoidReason};
use crate::domain::token::TokenHash;
use crate::domain::user::{Role, UserId};

pub struct NewInvite<'a> {
    pub id: Uuid,
    pub tenant: TenantId,
    pub user: UserId,
    /// The address as the inviter typed it.
    pub email: &'a str,
    pub role: Role,
    pub hash: &'a TokenHash,
    pub created_by: &'a str,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut PgConnection, invite: NewInvite<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO invites (id, tenant_id, user_id, email, role, token_hash, created_at, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(invite.id)
    .bind(invite.tenant.0)
    .bind(invite.user.0)
    .bind(invite.email)
    .bind(invite.role.as_str())
    .bind(invite.hash.as_bytes().as_slice())
    .bind(invite.now)
    .bind(invite.created_by)
    .bind(invite.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: Uuid,
    email: String,
    role: String,
    created_at: DateTime<Utc>,
    created_by: String,
    expires_at: DateTime<Utc>,
}

impl TryFrom<InvitationRow> for Invitation {
    type Error = sqlx::Error;

    fn try_from(row: InvitationRow) -> Result<Self, Self::Error> {
        Ok(Invitation {
            id: row.id,
            email: row.email,
            role: role_column("invites.role", &row.role)?,
            created_at: row.created_at,
            created_by: row.created_by,
            expires_at: row.expires_at,
        })
    }
}

const INVITATION_COLUMNS: &str = "id, email, role, created_at, created_by, expires_at";

const PENDING: &str = "accepted_at IS NULL AND voided_at IS NULL";

/// The tenant's invitations that can still be accepted, oldest first.
pub async fn list_pending(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    now: DateTime<Utc>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Invitation>, sqlx::Error> {
    sqlx::query_as::<_, InvitationRow>(&format!(
        "SELECT {INVITATION_COLUMNS} FROM invites
         WHERE tenant_id = $1 AND {PENDING} AND expires_at > $2 AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4"
    ))
    .bind(tenant.0)
    .bind(now)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Invitation::try_from)
    .collect()
}

/// Voids one pending invitation of the tenant; `None` if there is no such pending invitation.
pub async fn void(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    reason: VoidReason,
    now: DateTime<Utc>,
) -> Result<Option<Invitation>, sqlx::Error> {
    sqlx::query_as::<_, InvitationRow>(&format!(
        "UPDATE invites SET voided_at = $3, voided_reason = $4
         WHERE tenant_id = $1 AND id = $2 AND {PENDING} AND expires_at > $3
         RETURNING {INVITATION_COLUMNS}"
    ))
    .bind(tenant.0)
    .bind(id)
    .bind(now)
    .bind(reason.as_str())
    .fetch_optional(conn)
    .await?
    .map(Invitation::try_from)
    .transpose()
}

/// Voids every pending invitation of `user` into `tenant`; returns how many.
pub async fn void_pending_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    reason: VoidReason,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(&format!(
        "UPDATE invites SET voided_at = $3, voided_reason = $4 WHERE tenant_id = $1 AND user_id = $2 AND {PENDING}"
    ))
    .bind(tenant.0)
    .bind(user.0)
    .bind(now)
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

#[derive(Debug, sqlx::FromRow)]
pub struct InviteRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub voided_at: Option<DateTime<Utc>>,
}

impl InviteRow {
    /// Whether the invitation can still be accepted at `now`.
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        self.accepted_at.is_none() && self.voided_at.is_none() && self.expires_at > now
    }
}

pub async fn find_for_update(conn: &mut PgConnection, hash: &TokenHash) -> Result<Option<InviteRow>, sqlx::Error> {
    sqlx::query_as::<_, InviteRow>(
        "SELECT id, tenant_id, user_id, role, expires_at, accepted_at, voided_at FROM invites
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(conn)
    .await
}

pub async fn mark_accepted(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE invites SET accepted_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts a failed attempt to accept a pending invitation; at `max` failures it is voided.
/// Returns whether it was voided now. An invitation that stopped being pending meanwhile
/// (accepted, cancelled, replaced) is left as it is.
pub async fn record_failed_accept(
    conn: &mut PgConnection,
    id: Uuid,
    max: i32,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let failed: Option<i32> = sqlx::query_scalar(&format!(
        "UPDATE invites SET failed_attempts = failed_attempts + 1,
             voided_at = CASE WHEN failed_attempts + 1 >= $2 THEN $3 ELSE voided_at END,
             voided_reason = CASE WHEN failed_attempts + 1 >= $2 THEN $4 ELSE voided_reason END
         WHERE id = $1 AND {PENDING} RETURNING failed_attempts"
    ))
    .bind(id)
    .bind(max)
    .bind(now)
    .bind(VoidReason::TooManyFailures.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(failed.is_some_and(|failed| failed >= max))
}

/// Voids every pending invitation into `tenant` that `created_by` (an actor id) sent.
pub async fn void_pending_sent_by(
    conn: &mut PgConnection,
    tenant: TenantId,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(&format!(
        "UPDATE invites SET voided_at = $3, voided_reason = $4
         WHERE tenant_id = $1 AND created_by = $2 AND {PENDING}"
    ))
    .bind(tenant.0)
    .bind(created_by)
    .bind(now)
    .bind(VoidReason::MemberChanged.as_str())
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
