//! People's accounts: accepting an invitation (which may create the account), and the CLI's
//! user creation and disabling.

use super::sessions::{unknown_user_actor, user_actor};
use super::{Context, Error, Result};
use crate::domain::audit::{Actor, AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::ids::TenantId;
use crate::domain::permissions::{Caller, Principal};
use crate::domain::token::{PresentedToken, TokenHash, TokenPrefix};
use crate::domain::user::{check_email, check_password, Role, User, UserId};
use crate::domain::validation::ValidationErrors;
use crate::repo::{self, invites::InviteRow};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgConnection;

/// Failed attempts after which an invitation is voided.
pub const MAX_FAILED_ACCEPTS: i32 = 5;

/// Accepts an invitation (valid once, for 72 hours, until replaced or cancelled) and creates the
/// membership it offers. An invitation to a new account sets that account's first password
/// (`password`); an invitation to an account that already has a password is accepted only by
/// that account while logged in (`caller`), never by a password sent here, so the call cannot
/// be used to test passwords or to take over an account.
pub async fn accept_invite(
    ctx: &Context,
    meta: &RequestMeta,
    presented: &str,
    password: Option<&SecretString>,
    caller: Option<&Caller>,
) -> Result<User> {
    use secrecy::ExposeSecret;
    let token = PresentedToken::parse(presented)
        .ok()
        .filter(|t| t.prefix() == TokenPrefix::Invite)
        .ok_or(Error::NotFound("invitation"))?;
    let hash = token.hash();
    let now = ctx.clock.now();
    // Find the invitation before any password work, so made-up tokens cost no hashing (and,
    // being unknown, are neither recorded nor audited: nobody can grow a table with them).
    let (invite, has_password) = {
        let mut tx = ctx.pool.begin().await?;
        let invite = pending_invite(&mut tx, &hash, now).await?;
        let stored = repo::users::password_hash_for_update(&mut tx, UserId(invite.user_id)).await?;
        tx.rollback().await?;
        (invite, stored.is_some())
    };
    let user_id = UserId(invite.user_id);
    let role = Role::parse(&invite.role).ok_or(Error::NotFound("invitation"))?;
    let tenant = TenantId(invite.tenant_id);
    if password.is_none() && caller.is_none() {
        // The same answer whether or not the account exists.
        return Err(ValidationErrors::single(
            "password",
            "is required for a new account; an existing account accepts while logged in (its access token as \
             `Authorization: Bearer`)",
        )
        .into());
    }
    let new_hash = if has_password {
        let as_invitee = caller.is_some_and(|c| c.principal == Principal::User(user_id));
        if !as_invitee {
            return Err(refuse_accept(ctx, meta, &invite, caller, now).await?);
        }
        None
    } else {
        let mut errors = ValidationErrors::default();
        match password {
            Some(password) => check_password(&mut errors, "password", password.expose_secret()),
            None => errors.add(
                "password",
                "is required: choose the first password of the invited account",
            ),
        }
        errors.finish(())?;
        match password {
            Some(password) => Some(ctx.passwords.hash(password).await?),
            None => None,
        }
    };

    let mut tx = ctx.pool.begin().await?;
    // Someone may have accepted, replaced or cancelled it (or set the password) meanwhile.
    pending_invite(&mut tx, &hash, now).await?;
    if let Some(new_hash) = &new_hash {
        if !repo::users::set_first_password(&mut tx, user_id, new_hash).await? {
            return Err(Error::ConcurrentChange(
                "the account got a password meanwhile; log in and accept again",
            ));
        }
    }
    repo::memberships::add(&mut tx, user_id, tenant, role, now)
        .await
        .map_err(|e| {
            if repo::unique_violation(&e) == Some("memberships_pkey") {
                Error::AlreadyMember("already a member of this tenant")
            } else {
                e.into()
            }
        })?;
    repo::invites::mark_accepted(&mut tx, invite.id, now).await?;
    let event = NewAuditEvent::new(
        now,
        &user_actor(user_id),
        meta,
        Some(tenant),
        AuditAction::UserInviteAccepted,
        Outcome::Success,
    )
    .target("user", user_id)
    .details(serde_json::json!({ "role": role.as_str(), "password_set": new_hash.is_some() }));
    repo::audit::append(&mut tx, &event).await?;
    let user = repo::users::get(&mut *tx, user_id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    tx.commit().await?;
    Ok(user)
}

/// The pending invitation with this token hash, locked for the transaction.
async fn pending_invite(conn: &mut PgConnection, hash: &TokenHash, now: DateTime<Utc>) -> Result<InviteRow> {
    repo::invites::find_for_update(conn, hash)
        .await?
        .filter(|i| i.is_pending(now))
        .ok_or(Error::NotFound("invitation"))
}

/// Records a refused accept (audited; the invitation is voided after `MAX_FAILED_ACCEPTS`) and
/// returns the error to answer with.
async fn refuse_accept(
    ctx: &Context,
    meta: &RequestMeta,
    invite: &InviteRow,
    caller: Option<&Caller>,
    now: DateTime<Utc>,
) -> Result<Error> {
    let mut tx = ctx.pool.begin().await?;
    let voided = repo::invites::record_failed_accept(&mut tx, invite.id, MAX_FAILED_ACCEPTS, now).await?;
    let actor = caller.map_or_else(unknown_user_actor, Caller::actor);
    let event = NewAuditEvent::new(
        now,
        &actor,
        meta,
        Some(TenantId(invite.tenant_id)),
        AuditAction::UserInviteAcceptFailed,
        Outcome::Denied,
    )
    .target("invitation", invite.id)
    .details(serde_json::json!({
        "reason": if caller.is_some() { "logged in as another account" } else { "not logged in" },
        "invitation_voided": voided,
    }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Error::NotAuthenticated(
        "this invitation is for an existing account: log in as that account and accept it with its access \
         token as `Authorization: Bearer`; no password is sent here",
    ))
}

/// Creates a user with a password (the CLI's `admin create-user`).
pub async fn create_user(
    ctx: &Context,
    actor: &Actor,
    email: &str,
    password: &SecretString,
    platform_admin: bool,
) -> Result<User> {
    use secrecy::ExposeSecret;
    let mut errors = ValidationErrors::default();
    let email = check_email(&mut errors, "email", email);
    check_password(&mut errors, "password", password.expose_secret());
    errors.finish(())?;
    let hash = ctx.passwords.hash(password).await?;
    let now = ctx.clock.now();
    let user = User {
        id: UserId::generate(),
        email,
        platform_admin,
        disabled_at: None,
        session_version: 0,
        created_at: now,
    };
    let mut tx = ctx.pool.begin().await?;
    repo::users::insert(&mut tx, &user, Some(&hash)).await.map_err(|e| {
        if repo::unique_violation(&e) == Some("users_email_key") {
            Error::AlreadyExists("a user with this email already exists")
        } else {
            e.into()
        }
    })?;
    let event = NewAuditEvent::new(
        now,
        actor,
        &RequestMeta::default(),
        None,
        AuditAction::UserCreated,
        Outcome::Success,
    )
    .target("user", user.id)
    .details(serde_json::json!({ "email": user.email, "platform_admin": platform_admin }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(user)
}

/// Disables a user (every session ends at once; logins are refused) or enables them again.
pub async fn set_user_disabled(ctx: &Context, actor: &Actor, email: &str, disabled: bool) -> Result<User> {
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let (user, _) = repo::users::find_by_email(&mut *tx, email.trim())
        .await?
        .ok_or(Error::NotFound("user"))?;
    repo::users::set_disabled(&mut tx, user.id, disabled.then_some(now)).await?;
    if disabled {
        repo::refresh_tokens::revoke_all(&mut tx, user.id, now).await?;
    }
    let action = if disabled {
        AuditAction::UserDisabled
    } else {
        AuditAction::UserEnabled
    };
    let event = NewAuditEvent::new(now, actor, &RequestMeta::default(), None, action, Outcome::Success)
        .target("user", user.id)
        .details(serde_json::json!({ "email": user.email }));
    repo::audit::append(&mut tx, &event).await?;
    let user = repo::users::get(&mut *tx, user.id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    tx.commit().await?;
    Ok(user)
}
