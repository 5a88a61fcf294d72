//! The `users`, `memberships`, `invites`, `refresh_tokens` and `login_failures` tables.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use std::net::IpAddr;
use uuid::Uuid;

use super::bad_column;
use crate::domain::ids::TenantId;
use crate::domain::token::TokenHash;
use crate::domain::user::{Membership, Role, User, UserId};

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

#[derive(sqlx::FromRow)]
struct MembershipRow {
    tenant_id: Uuid,
    role: String,
}

pub async fn memberships(db: impl PgExecutor<'_>, user: UserId) -> Result<Vec<Membership>, sqlx::Error> {
    sqlx::query_as::<_, MembershipRow>("SELECT tenant_id, role FROM memberships WHERE user_id = $1 ORDER BY tenant_id")
        .bind(user.0)
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|row| {
            Ok(Membership {
                tenant_id: TenantId(row.tenant_id),
                role: Role::parse(&row.role).ok_or_else(|| bad_column("memberships.role", &row.role))?,
            })
        })
        .collect()
}

/// A member of a tenant as the members API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// Whether the user has set a password yet.
    pub active: bool,
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
            role: Role::parse(&row.role).ok_or_else(|| bad_column("memberships.role", &row.role))?,
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

pub async fn add_membership(
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

pub async fn remove_membership(conn: &mut PgConnection, tenant: TenantId, user: UserId) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant.0)
        .bind(user.0)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

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

pub async fn insert_invite(conn: &mut PgConnection, invite: NewInvite<'_>) -> Result<(), sqlx::Error> {
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

/// Why an invitation stopped being acceptable before anyone accepted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoidReason {
    /// An inviter cancelled it.
    Cancelled,
    /// A newer invitation to the same person in the same tenant replaced it.
    Replaced,
    /// The person's role changed, or they were removed, after it was sent.
    MemberChanged,
    /// Too many failed attempts to accept it.
    TooManyFailures,
}

impl VoidReason {
    fn as_str(self) -> &'static str {
        match self {
            VoidReason::Cancelled => "cancelled",
            VoidReason::Replaced => "replaced",
            VoidReason::MemberChanged => "member_changed",
            VoidReason::TooManyFailures => "too_many_failures",
        }
    }
}

/// A pending invitation as inviters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
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
            role: Role::parse(&row.role).ok_or_else(|| bad_column("invites.role", &row.role))?,
            created_at: row.created_at,
            created_by: row.created_by,
            expires_at: row.expires_at,
        })
    }
}

const PENDING: &str = "accepted_at IS NULL AND voided_at IS NULL";

/// The tenant's invitations that can still be accepted, oldest first.
pub async fn list_pending_invites(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    now: DateTime<Utc>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Invitation>, sqlx::Error> {
    sqlx::query_as::<_, InvitationRow>(&format!(
        "SELECT id, email, role, created_at, created_by, expires_at FROM invites
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
pub async fn void_invite(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    reason: VoidReason,
    now: DateTime<Utc>,
) -> Result<Option<Invitation>, sqlx::Error> {
    sqlx::query_as::<_, InvitationRow>(&format!(
        "UPDATE invites SET voided_at = $3, voided_reason = $4
         WHERE tenant_id = $1 AND id = $2 AND {PENDING} AND expires_at > $3
         RETURNING id, email, role, created_at, created_by, expires_at"
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
pub async fn void_pending_invites_of(
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

pub async fn find_invite_for_update(
    conn: &mut PgConnection,
    hash: &TokenHash,
) -> Result<Option<InviteRow>, sqlx::Error> {
    sqlx::query_as::<_, InviteRow>(
        "SELECT id, tenant_id, user_id, role, expires_at, accepted_at, voided_at FROM invites
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(conn)
    .await
}

pub async fn mark_invite_accepted(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
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
             voided_reason = CASE WHEN failed_attempts + 1 >= $2 THEN 'too_many_failures' ELSE voided_reason END
         WHERE id = $1 AND {PENDING} RETURNING failed_attempts"
    ))
    .bind(id)
    .bind(max)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(failed.is_some_and(|failed| failed >= max))
}

/// Voids every pending invitation into `tenant` that `created_by` (an actor id) sent.
pub async fn void_pending_invites_sent_by(
    conn: &mut PgConnection,
    tenant: TenantId,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(&format!(
        "UPDATE invites SET voided_at = $3, voided_reason = 'member_changed'
         WHERE tenant_id = $1 AND created_by = $2 AND {PENDING}"
    ))
    .bind(tenant.0)
    .bind(created_by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

pub struct NewRefreshToken<'a> {
    pub family: Uuid,
    pub user: UserId,
    pub hash: &'a TokenHash,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_refresh_token(conn: &mut PgConnection, token: NewRefreshToken<'_>) -> Result<(), sqlx::Error> {
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

pub async fn find_refresh_for_update(
    conn: &mut PgConnection,
    hash: &TokenHash,
) -> Result<Option<RefreshRow>, sqlx::Error> {
    sqlx::query_as::<_, RefreshRow>(
        "SELECT id, family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(conn)
    .await
}

pub async fn mark_refresh_used(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn revoke_refresh_family(
    conn: &mut PgConnection,
    family: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

/// Records a failed (or not yet successful) login attempt; returns its id. `email` is `None` for
/// an attempt whose email could not be any account's (it is never stored: it may be a secret).
pub async fn record_login_failure(
    db: impl PgExecutor<'_>,
    email: Option<&str>,
    ip: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO login_failures (email, ip, occurred_at) VALUES (lower(coalesce($1, '')), $2::inet, $3) RETURNING id",
    )
    .bind(email)
    .bind(ip.map(|ip| ip.to_string()))
    .bind(now)
    .fetch_one(db)
    .await
}

/// Forgets one recorded attempt (one that a throttle refused before it was tried).
pub async fn forget_login_failure(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Failures since `since` from the address's network, and of the account from that network,
/// with the oldest of each.
#[derive(Debug, Default, sqlx::FromRow)]
pub struct FailureCounts {
    pub account: i64,
    pub account_oldest: Option<DateTime<Utc>>,
    pub address: i64,
    pub address_oldest: Option<DateTime<Utc>>,
}

/// The network an address's failures are counted over: one IPv4 address, or the /64 that one
/// IPv6 client typically holds. (Addresses arrive normalised: IPv4-mapped IPv6 is IPv4.)
fn network_bits(ip: Option<IpAddr>) -> i32 {
    if ip.is_some_and(|ip| ip.is_ipv6()) {
        64
    } else {
        32
    }
}

pub async fn count_login_failures(
    db: impl PgExecutor<'_>,
    email: Option<&str>,
    ip: Option<IpAddr>,
    since: DateTime<Utc>,
) -> Result<FailureCounts, sqlx::Error> {
    // Two spellings, so that the planner can use `login_failures_ip` when there is an address.
    let near = match ip {
        Some(_) => "ip <<= network(set_masklen($2::inet, $4))",
        None => "ip IS NULL AND $2::inet IS NULL AND $4::int IS NOT NULL",
    };
    sqlx::query_as::<_, FailureCounts>(&format!(
        "WITH near AS (
             SELECT email, occurred_at FROM login_failures WHERE occurred_at > $3 AND {near}
         )
         SELECT
             count(*) FILTER (WHERE $1::text IS NOT NULL AND email = lower($1)) AS account,
             min(occurred_at) FILTER (WHERE $1::text IS NOT NULL AND email = lower($1)) AS account_oldest,
             count(*) AS address,
             min(occurred_at) AS address_oldest
         FROM near"
    ))
    .bind(email)
    .bind(ip.map(|ip| ip.to_string()))
    .bind(since)
    .bind(network_bits(ip))
    .fetch_one(db)
    .await
}

/// Clears an account's failures from one address's network (after a successful login there).
pub async fn clear_login_failures(db: impl PgExecutor<'_>, email: &str, ip: Option<IpAddr>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM login_failures WHERE email = lower($1)
           AND (ip <<= network(set_masklen($2::inet, $3)) OR (ip IS NULL AND $2::inet IS NULL))",
    )
    .bind(email)
    .bind(ip.map(|ip| ip.to_string()))
    .bind(network_bits(ip))
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes failures older than `before` (the throttles never look at them again).
pub async fn prune_login_failures(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM login_failures WHERE occurred_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(result.rows_affected())
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

/// Disables (`Some(at)`) or enables (`None`) a user; a change of state ends their access tokens.
pub async fn set_disabled(conn: &mut PgConnection, id: UserId, at: Option<DateTime<Utc>>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET disabled_at = $2, session_version = session_version + 1 WHERE id = $1")
        .bind(id.0)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every session (refresh-token family) a user holds.
pub async fn revoke_all_refresh_tokens(
    conn: &mut PgConnection,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user.0)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}
