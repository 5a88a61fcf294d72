//! A tenant's members: invite by email with a role, list, change roles, remove. A tenant always
//! keeps at least one owner.

use chrono::{DateTime, Duration, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::{actor_of, Context, Error, Result};
use crate::domain::audit::{AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::member::{Invitation, Member, VoidReason};
use crate::domain::page::{check_cursor, check_limit, Page};
use crate::domain::permissions::{authorize, Action, Caller};
use crate::domain::tenant::TenantStatus;
use crate::domain::token::{NewToken, TokenPrefix};
use crate::domain::user::{check_email, Role, User, UserId};
use crate::domain::validation::ValidationErrors;
use crate::repo::invites::NewInvite;
use crate::repo::{self};
use crate::verify::Change;

pub const INVITE_HOURS: i64 = 72;

/// What removing a member did.
pub struct Removed {
    pub revoked_tokens: Vec<KeyId>,
}

pub struct Invited {
    pub id: Uuid,
    /// The address as the inviter typed it: the answer is the same whether or not an account
    /// with that address already existed.
    pub email: String,
    pub role: Role,
    /// For `/v1/auth/accept-invite`; the membership exists once it is accepted.
    pub token: NewToken,
    pub expires_at: DateTime<Utc>,
}

async fn check_tenant(conn: &mut PgConnection, tenant: TenantId) -> Result<()> {
    let found = repo::tenants::get(&mut *conn, tenant)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    if found.status == TenantStatus::Suspended {
        return Err(Error::TenantSuspended("the tenant is suspended; resume it first"));
    }
    Ok(())
}

/// Checks a page request over a tenant's members or invitations (`limit`, and a `cursor` that
/// `parse` reads) and that the tenant exists; returns the connection to read the page on, the
/// page's size and where it starts.
async fn open_page<C>(
    ctx: &Context,
    tenant: TenantId,
    cursor: Option<&str>,
    limit: Option<i64>,
    parse: impl FnOnce(&str) -> Option<C>,
) -> Result<(PoolConnection<Postgres>, i64, Option<C>)> {
    let mut errors = ValidationErrors::default();
    let limit = check_limit(&mut errors, limit);
    let after = check_cursor(&mut errors, cursor, parse);
    errors.finish(())?;
    let mut conn = ctx.pool.acquire().await?;
    repo::tenants::get(&mut *conn, tenant)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    Ok((conn, limit, after))
}

/// Locks the tenant's owners and reads the member the caller acts on, with whether they are its
/// last owner. Nobody acts on a member whose role carries more than the caller holds.
async fn lock_member(
    conn: &mut PgConnection,
    caller: &Caller,
    tenant: TenantId,
    user: UserId,
) -> Result<(Member, bool)> {
    let owners = repo::memberships::lock_owners(&mut *conn, tenant).await?;
    let current = repo::memberships::get_member(&mut *conn, tenant, user)
        .await?
        .ok_or(Error::NotFound("member"))?;
    caller.may_confer(current.role, tenant)?;
    let last_owner = current.role == Role::Owner && owners.len() <= 1;
    Ok((current, last_owner))
}

/// What follows a change of a member's role or their removal: their access tokens stop working,
/// an invitation sent to them earlier cannot undo the change when accepted later, and what they
/// offered others under their old standing (another address of theirs, say) is withdrawn.
async fn member_changed(conn: &mut PgConnection, tenant: TenantId, user: UserId, now: DateTime<Utc>) -> Result<()> {
    repo::users::bump_session_version(&mut *conn, user).await?;
    repo::invites::void_pending_of(&mut *conn, tenant, user, VoidReason::MemberChanged, now).await?;
    repo::invites::void_pending_sent_by(&mut *conn, tenant, &user.to_string(), now).await?;
    Ok(())
}

pub async fn invite(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    email: &str,
    role: Role,
) -> Result<Invited> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    caller.may_confer(role, tenant)?;
    let mut errors = ValidationErrors::default();
    let email = check_email(&mut errors, "email", email);
    errors.finish(())?;
    let now = ctx.clock.now();
    let actor = actor_of(caller);
    let mut tx = ctx.pool.begin().await?;
    check_tenant(&mut tx, tenant).await?;
    let user = match repo::users::find_by_email(&mut *tx, &email).await? {
        Some((user, _)) => user,
        None => {
            let user = User {
                id: UserId::generate(),
                email: email.clone(),
                platform_admin: false,
                disabled_at: None,
                session_version: 0,
                created_at: now,
            };
            repo::users::insert_if_absent(&mut tx, &user).await?
        }
    };
    if repo::memberships::get_member(&mut *tx, tenant, user.id)
        .await?
        .is_some()
    {
        return Err(Error::AlreadyMember("this person is already a member of the tenant"));
    }
    // One pending invitation per person and tenant: the newest replaces any earlier one.
    let replaced = repo::invites::void_pending_of(&mut tx, tenant, user.id, VoidReason::Replaced, now).await?;
    // The invitation only offers the role: a new account sets its first password when
    // accepting, an existing account accepts while logged in, so no inviter can take over or
    // probe an account.
    let id = Uuid::now_v7();
    let token = NewToken::generate(TokenPrefix::Invite);
    let expires_at = now + Duration::hours(INVITE_HOURS);
    let inserted = repo::invites::insert(
        &mut tx,
        NewInvite {
            id,
            tenant,
            user: user.id,
            email: &email,
            role,
            hash: &token.hash(),
            created_by: &actor.id,
            now,
            expires_at,
        },
    )
    .await;
    if let Err(error) = inserted {
        return Err(if repo::unique_violation(&error) == Some("invites_one_pending") {
            Error::ConcurrentChange("another invitation to this person was sent at the same moment")
        } else {
            error.into()
        });
    }
    let event = NewAuditEvent::new(
        now,
        &actor,
        meta,
        Some(tenant),
        AuditAction::MemberInvited,
        Outcome::Success,
    )
    .target("invitation", id)
    .details(serde_json::json!({ "email": email, "role": role.as_str(), "replaced": replaced }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Invited {
        id,
        email,
        role,
        token,
        expires_at,
    })
}

pub async fn list(
    ctx: &Context,
    caller: &Caller,
    tenant: TenantId,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<Page<Member>> {
    authorize(caller, Action::ReadMembers, Some(tenant))?;
    let (mut conn, limit, after) = open_page(ctx, tenant, cursor, limit, UserId::parse).await?;
    let rows = repo::memberships::list_members(&mut *conn, tenant, after, limit + 1).await?;
    Ok(Page::from_rows(rows, limit, |m| m.user_id.to_string()))
}

pub async fn get(ctx: &Context, caller: &Caller, tenant: TenantId, user: &str) -> Result<Member> {
    authorize(caller, Action::ReadMembers, Some(tenant))?;
    let user = UserId::parse(user).ok_or(Error::NotFound("member"))?;
    repo::memberships::get_member(&ctx.pool, tenant, user)
        .await?
        .ok_or(Error::NotFound("member"))
}

pub async fn update(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    user: &str,
    role: Role,
) -> Result<Member> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    caller.may_confer(role, tenant)?;
    let user = UserId::parse(user).ok_or(Error::NotFound("member"))?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let (current, last_owner) = lock_member(&mut tx, caller, tenant, user).await?;
    if last_owner && role != Role::Owner {
        return Err(Error::LastOwner("the last owner of a tenant cannot be demoted"));
    }
    repo::memberships::set_role(&mut tx, tenant, user, role).await?;
    member_changed(&mut tx, tenant, user, now).await?;
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        Some(tenant),
        AuditAction::MemberUpdated,
        Outcome::Success,
    )
    .target("user", user)
    .details(serde_json::json!({ "from": current.role.as_str(), "to": role.as_str() }));
    repo::audit::append(&mut tx, &event).await?;
    let member = repo::memberships::get_member(&mut *tx, tenant, user)
        .await?
        .ok_or(Error::NotFound("member"))?;
    tx.commit().await?;
    Ok(member)
}

pub async fn remove(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    user: &str,
    revoke_tokens: bool,
) -> Result<Removed> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    let user = UserId::parse(user).ok_or(Error::NotFound("member"))?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let (current, last_owner) = lock_member(&mut tx, caller, tenant, user).await?;
    if last_owner {
        return Err(Error::LastOwner("the last owner of a tenant cannot be removed"));
    }
    repo::memberships::remove(&mut tx, tenant, user).await?;
    member_changed(&mut tx, tenant, user, now).await?;
    let revoked_tokens = if revoke_tokens {
        // Service tokens record who minted them by the actor id, which for a person is their id.
        let created_by = user.to_string();
        repo::keys::revoke_service_tokens_created_by(&mut tx, tenant, &created_by, now, "creator removed").await?
    } else {
        Vec::new()
    };
    let actor = actor_of(caller);
    let event = NewAuditEvent::new(
        now,
        &actor,
        meta,
        Some(tenant),
        AuditAction::MemberRemoved,
        Outcome::Success,
    )
    .target("user", user)
    .details(serde_json::json!({
        "email": current.email,
        "role": current.role.as_str(),
        "revoked_tokens": revoked_tokens.len(),
    }));
    let mut events = vec![event];
    for id in &revoked_tokens {
        let revoked = NewAuditEvent::new(
            now,
            &actor,
            meta,
            Some(tenant),
            AuditAction::ServiceTokenRevoked,
            Outcome::Success,
        )
        .target("service_token", id)
        .details(serde_json::json!({ "reason": "creator removed" }));
        events.push(revoked);
    }
    let changes: Vec<Change> = revoked_tokens.iter().cloned().map(Change::Key).collect();
    ctx.verify.commit(&ctx.pool, tx, &changes, &events).await?;
    Ok(Removed { revoked_tokens })
}

/// The tenant's pending invitations (those who may invite may see and cancel them).
pub async fn list_invitations(
    ctx: &Context,
    caller: &Caller,
    tenant: TenantId,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<Page<Invitation>> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    let (mut conn, limit, after) = open_page(ctx, tenant, cursor, limit, |text| Uuid::parse_str(text).ok()).await?;
    let rows = repo::invites::list_pending(&mut *conn, tenant, ctx.clock.now(), after, limit + 1).await?;
    Ok(Page::from_rows(rows, limit, |i| i.id.to_string()))
}

/// Cancels a pending invitation: its token stops working at once.
pub async fn cancel_invitation(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    id: &str,
) -> Result<()> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    let id = Uuid::parse_str(id).map_err(|_| Error::NotFound("invitation"))?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let cancelled = repo::invites::void(&mut tx, tenant, id, VoidReason::Cancelled, now)
        .await?
        .ok_or(Error::NotFound("invitation"))?;
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        Some(tenant),
        AuditAction::MemberInvitationCancelled,
        Outcome::Success,
    )
    .target("invitation", id)
    .details(serde_json::json!({ "email": cancelled.email, "role": cancelled.role.as_str() }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(())
}
