//! A tenant's members: invite by email with a role, list, change roles, remove. A tenant always
//! keeps at least one owner.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{actor_of, Context, Error, Result};
use crate::domain::audit::{NewAuditEvent, Outcome, RequestMeta};
use crate::domain::authz::{authorize, Action, Caller};
use crate::domain::ids::TenantId;
use crate::domain::page::{check_limit, Page};
use crate::domain::tenant::TenantStatus;
use crate::domain::token::{NewToken, TokenPrefix};
use crate::domain::user::{check_email, Role, User, UserId};
use crate::domain::validation::ValidationErrors;
use crate::repo::{self, users::Member, users::NewInvite};

pub const INVITE_HOURS: i64 = 72;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteDraft {
    #[schema(example = "ann@example.com")]
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub role: Role,
}

pub struct Invited {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    /// For `/v1/auth/accept-invite`; the membership exists once it is accepted.
    pub token: NewToken,
    pub expires_at: DateTime<Utc>,
}

async fn check_tenant(conn: &mut sqlx::PgConnection, tenant: TenantId) -> Result<()> {
    let found = repo::tenants::get(&mut *conn, tenant)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    if found.status == TenantStatus::Suspended {
        return Err(Error::Conflict("the tenant is suspended".into()));
    }
    Ok(())
}

pub async fn invite(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    draft: InviteDraft,
) -> Result<Invited> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    let mut errors = ValidationErrors::default();
    let email = check_email(&mut errors, "email", &draft.email);
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
    if repo::users::get_member(&mut *tx, tenant, user.id).await?.is_some() {
        return Err(Error::Conflict(format!("{} is already a member", user.email)));
    }
    // The invitation only offers the role: whoever accepts must set the account's first
    // password or prove the existing one, so no inviter can take over an account.
    let token = NewToken::generate(TokenPrefix::Invite);
    let expires_at = now + Duration::hours(INVITE_HOURS);
    repo::users::insert_invite(
        &mut tx,
        NewInvite {
            id: Uuid::now_v7(),
            tenant,
            user: user.id,
            role: draft.role,
            hash: &token.hash(),
            created_by: &actor.id,
            now,
            expires_at,
        },
    )
    .await?;
    let event = NewAuditEvent::new(now, &actor, meta, Some(tenant), "member.invited", Outcome::Success)
        .target("user", user.id)
        .details(serde_json::json!({ "email": user.email, "role": draft.role.as_str() }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Invited {
        user_id: user.id,
        email: user.email,
        role: draft.role,
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
    let mut errors = ValidationErrors::default();
    let limit = check_limit(&mut errors, limit);
    let after = match cursor {
        Some(text) => UserId::parse(text).or_else(|| {
            errors.add("cursor", "is not a cursor this API returned");
            None
        }),
        None => None,
    };
    errors.finish(())?;
    let mut conn = ctx.pool.acquire().await?;
    repo::tenants::get(&mut *conn, tenant)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    let rows = repo::users::list_members(&mut *conn, tenant, after, limit + 1).await?;
    Ok(Page::from_rows(rows, limit, |m| m.user_id.to_string()))
}

pub async fn get(ctx: &Context, caller: &Caller, tenant: TenantId, user: &str) -> Result<Member> {
    authorize(caller, Action::ReadMembers, Some(tenant))?;
    let user = UserId::parse(user).ok_or(Error::NotFound("member"))?;
    repo::users::get_member(&ctx.pool, tenant, user)
        .await?
        .ok_or(Error::NotFound("member"))
}

pub async fn update(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    user: &str,
    patch: MemberPatch,
) -> Result<Member> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    let user = UserId::parse(user).ok_or(Error::NotFound("member"))?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let owners = repo::users::lock_owners(&mut tx, tenant).await?;
    let current = repo::users::get_member(&mut *tx, tenant, user)
        .await?
        .ok_or(Error::NotFound("member"))?;
    if current.role == Role::Owner && patch.role != Role::Owner && owners.len() <= 1 {
        return Err(Error::Conflict("the last owner of a tenant cannot be demoted".into()));
    }
    repo::users::set_role(&mut tx, tenant, user, patch.role).await?;
    repo::users::bump_session_version(&mut tx, user).await?;
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        Some(tenant),
        "member.updated",
        Outcome::Success,
    )
    .target("user", user)
    .details(serde_json::json!({ "from": current.role.as_str(), "to": patch.role.as_str() }));
    repo::audit::append(&mut tx, &event).await?;
    let member = repo::users::get_member(&mut *tx, tenant, user)
        .await?
        .ok_or(Error::NotFound("member"))?;
    tx.commit().await?;
    Ok(member)
}

pub async fn remove(ctx: &Context, caller: &Caller, meta: &RequestMeta, tenant: TenantId, user: &str) -> Result<()> {
    authorize(caller, Action::ManageMembers, Some(tenant))?;
    let user = UserId::parse(user).ok_or(Error::NotFound("member"))?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let owners = repo::users::lock_owners(&mut tx, tenant).await?;
    let current = repo::users::get_member(&mut *tx, tenant, user)
        .await?
        .ok_or(Error::NotFound("member"))?;
    if current.role == Role::Owner && owners.len() <= 1 {
        return Err(Error::Conflict("the last owner of a tenant cannot be removed".into()));
    }
    repo::users::remove_membership(&mut tx, tenant, user).await?;
    repo::users::bump_session_version(&mut tx, user).await?;
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        Some(tenant),
        "member.removed",
        Outcome::Success,
    )
    .target("user", user)
    .details(serde_json::json!({ "email": current.email, "role": current.role.as_str() }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(())
}
