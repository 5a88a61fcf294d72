//! People's sessions: log in with email and password, refresh (rotating, with reuse detection),
//! log out, accept an invitation, and authenticate an access token. Also the CLI's user creation.

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::{Context, Error, Result};
use crate::crypto::jwt::Jwt;
use crate::crypto::password::Checked;
use crate::domain::audit::{Actor, ActorKind, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::authz::{Caller, Grant, Principal};
use crate::domain::ids::TenantId;
use crate::domain::token::{NewToken, PresentedToken, TokenPrefix};
use crate::domain::user::{check_email, check_password, Membership, Role, User, UserId};
use crate::domain::validation::ValidationErrors;
use crate::repo::{self, users::NewRefreshToken};

pub const REFRESH_TOKEN_DAYS: i64 = 30;
pub const FAILURE_WINDOW_SECONDS: i64 = 15 * 60;
pub const MAX_ACCOUNT_FAILURES: i64 = 5;
pub const MAX_ADDRESS_FAILURES: i64 = 20;

/// What a login or refresh hands out.
pub struct Session {
    pub access_token: String,
    pub refresh_token: NewToken,
    pub expires_in: i64,
}

fn jwt(ctx: &Context) -> Result<&Jwt> {
    ctx.jwt.as_deref().ok_or(Error::NotConfigured(
        "user sessions are not configured: set KEYWARD_JWT_SECRET",
    ))
}

fn user_actor(id: UserId) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: id.to_string(),
    }
}

/// Checks the throttle; `Err(Throttled)` carries the seconds until the oldest failure ages out.
async fn check_throttle(ctx: &Context, email: &str, meta: &RequestMeta, now: DateTime<Utc>) -> Result<()> {
    let since = now - Duration::seconds(FAILURE_WINDOW_SECONDS);
    let counts = repo::users::count_login_failures(&ctx.pool, email, meta.ip, since).await?;
    // The counts include this attempt, recorded before the check.
    let oldest = if counts.account > MAX_ACCOUNT_FAILURES {
        counts.account_oldest
    } else if counts.address > MAX_ADDRESS_FAILURES {
        counts.address_oldest
    } else {
        return Ok(());
    };
    let retry = oldest.map_or(FAILURE_WINDOW_SECONDS, |at| (at - since).num_seconds().max(1));
    Err(Error::Throttled(retry as u64))
}

pub async fn login(ctx: &Context, meta: &RequestMeta, email: &str, password: &SecretString) -> Result<Session> {
    let jwt = jwt(ctx)?;
    let now = ctx.clock.now();
    let email = email.trim();
    let mut shape = ValidationErrors::default();
    check_email(&mut shape, "email", email);
    if !shape.0.is_empty() {
        // No account can have this address (it may even be a password typed in the wrong
        // field): answer like a wrong password, and record nothing of it.
        ctx.passwords.check(password, None).await?;
        return Err(Error::InvalidLogin);
    }
    // The attempt counts as a failure from the start (a success clears it), so guesses sent in
    // parallel cannot all pass the throttle before any of them is recorded.
    repo::users::record_login_failure(&ctx.pool, email, meta.ip, now).await?;
    check_throttle(ctx, email, meta, now).await?;
    let found = repo::users::find_by_email(&ctx.pool, email).await?;
    let (user, stored) = match found {
        Some((user, hash)) if user.disabled_at.is_none() => (Some(user), hash),
        _ => (None, None),
    };
    // Unknown, disabled and password-less accounts are checked against a dummy hash: the
    // answer and its timing are the same as for a wrong password.
    let checked = ctx.passwords.check(password, stored).await?;
    let (user, needs_rehash) = match (user, checked) {
        (Some(user), Checked::Match { needs_rehash }) => (user, needs_rehash),
        (user, _) => {
            let mut tx = ctx.pool.begin().await?;
            let actor = match &user {
                Some(u) => user_actor(u.id),
                None => Actor {
                    kind: ActorKind::User,
                    id: "unknown".into(),
                },
            };
            let event = NewAuditEvent::new(now, &actor, meta, None, "user.login_failed", Outcome::Failure)
                .details(serde_json::json!({ "email": email.to_lowercase() }));
            repo::audit::append(&mut tx, &event).await?;
            tx.commit().await?;
            return Err(Error::InvalidLogin);
        }
    };
    let rehashed = if needs_rehash {
        Some(ctx.passwords.hash(password).await?)
    } else {
        None
    };
    let mut tx = ctx.pool.begin().await?;
    if let Some(hash) = &rehashed {
        repo::users::set_password(&mut tx, user.id, hash).await?;
    }
    repo::users::clear_login_failures(&mut *tx, email).await?;
    let refresh_token = new_refresh_token(&mut tx, user.id, Uuid::now_v7(), now).await?;
    let event = NewAuditEvent::new(now, &user_actor(user.id), meta, None, "user.login", Outcome::Success)
        .target("user", user.id)
        .details(serde_json::json!({ "rehashed": rehashed.is_some() }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    let (access_token, expires_in) = jwt
        .issue(user.id, user.session_version, now)
        .map_err(|_| Error::InvalidLogin)?;
    Ok(Session {
        access_token,
        refresh_token,
        expires_in,
    })
}

async fn new_refresh_token(
    conn: &mut sqlx::PgConnection,
    user: UserId,
    family: Uuid,
    now: DateTime<Utc>,
) -> Result<NewToken> {
    let token = NewToken::generate(TokenPrefix::Refresh);
    repo::users::insert_refresh_token(
        conn,
        NewRefreshToken {
            family,
            user,
            hash: &token.hash(),
            now,
            expires_at: now + Duration::days(REFRESH_TOKEN_DAYS),
        },
    )
    .await?;
    Ok(token)
}

/// Trades a refresh token for a new session. A token that was already used means it was
/// stolen or replayed: the whole family is revoked, so the thief's and the owner's sessions end.
pub async fn refresh(ctx: &Context, meta: &RequestMeta, presented: &str) -> Result<Session> {
    let jwt = jwt(ctx)?;
    let token = PresentedToken::parse(presented)
        .ok()
        .filter(|t| t.prefix() == TokenPrefix::Refresh)
        .ok_or(Error::Unauthenticated)?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let row = repo::users::find_refresh_for_update(&mut tx, &token.hash())
        .await?
        .ok_or(Error::Unauthenticated)?;
    let user_id = UserId(row.user_id);
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(Error::Unauthenticated);
    }
    if row.used_at.is_some() {
        repo::users::revoke_refresh_family(&mut tx, row.family_id, now).await?;
        let event = NewAuditEvent::new(
            now,
            &user_actor(user_id),
            meta,
            None,
            "session.refresh_reused",
            Outcome::Denied,
        )
        .target("user", user_id)
        .details(serde_json::json!({ "family": row.family_id }));
        repo::audit::append(&mut tx, &event).await?;
        tx.commit().await?;
        return Err(Error::Unauthenticated);
    }
    let user = repo::users::get(&mut *tx, user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if user.disabled_at.is_some() {
        return Err(Error::Unauthenticated);
    }
    repo::users::mark_refresh_used(&mut tx, row.id, now).await?;
    let refresh_token = new_refresh_token(&mut tx, user.id, row.family_id, now).await?;
    tx.commit().await?;
    let (access_token, expires_in) = jwt
        .issue(user.id, user.session_version, now)
        .map_err(|_| Error::Unauthenticated)?;
    Ok(Session {
        access_token,
        refresh_token,
        expires_in,
    })
}

/// Ends the session the refresh token belongs to. Unknown tokens are ignored.
pub async fn logout(ctx: &Context, meta: &RequestMeta, presented: &str) -> Result<()> {
    let Some(token) = PresentedToken::parse(presented)
        .ok()
        .filter(|t| t.prefix() == TokenPrefix::Refresh)
    else {
        return Ok(());
    };
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    if let Some(row) = repo::users::find_refresh_for_update(&mut tx, &token.hash()).await? {
        repo::users::revoke_refresh_family(&mut tx, row.family_id, now).await?;
        let user = UserId(row.user_id);
        let event = NewAuditEvent::new(now, &user_actor(user), meta, None, "session.logout", Outcome::Success)
            .target("user", user);
        repo::audit::append(&mut tx, &event).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The caller behind an access token: the user must exist, be enabled, and the token must
/// carry the user's current session version (roles, removal and disabling move it on).
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Caller> {
    let jwt = ctx.jwt.as_deref().ok_or(Error::Unauthenticated)?;
    let claims = jwt.verify(token, ctx.clock.now()).map_err(|_| Error::Unauthenticated)?;
    let user_id = UserId::parse(&claims.sub).ok_or(Error::Unauthenticated)?;
    let user = repo::users::get(&ctx.pool, user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if user.disabled_at.is_some() || user.session_version != claims.ver {
        return Err(Error::Unauthenticated);
    }
    let memberships = repo::users::memberships(&ctx.pool, user.id).await?;
    Ok(Caller {
        principal: Principal::User(user.id),
        grant: Grant::User {
            platform_admin: user.platform_admin,
            memberships,
        },
        expires_at: None,
    })
}

pub struct Me {
    pub user: User,
    pub memberships: Vec<Membership>,
}

pub async fn me(ctx: &Context, caller: &Caller) -> Result<Me> {
    let Principal::User(id) = caller.principal else {
        return Err(Error::NotFound("user (this credential is a service token)"));
    };
    let user = repo::users::get(&ctx.pool, id).await?.ok_or(Error::Unauthenticated)?;
    let memberships = repo::users::memberships(&ctx.pool, id).await?;
    Ok(Me { user, memberships })
}

/// Accepts an invitation (valid once, for 72 hours) and creates the membership it offers. A new
/// account gets `password` as its first password; an account that already has one must prove it
/// with `password`, so an invitation can never take over someone's account.
pub async fn accept_invite(
    ctx: &Context,
    meta: &RequestMeta,
    presented: &str,
    password: &SecretString,
) -> Result<User> {
    use secrecy::ExposeSecret;
    let token = PresentedToken::parse(presented)
        .ok()
        .filter(|t| t.prefix() == TokenPrefix::Invite)
        .ok_or(Error::NotFound("invitation"))?;
    let hash = token.hash();
    let now = ctx.clock.now();
    // Find the invitation before any password work, so made-up tokens cost no hashing.
    let (invite, stored) = {
        let mut tx = ctx.pool.begin().await?;
        let invite = repo::users::find_invite_for_update(&mut tx, &hash)
            .await?
            .filter(|i| i.accepted_at.is_none() && i.expires_at > now)
            .ok_or(Error::NotFound("invitation"))?;
        let stored = repo::users::password_hash_for_update(&mut tx, UserId(invite.user_id)).await?;
        tx.rollback().await?;
        (invite, stored)
    };
    let user_id = UserId(invite.user_id);
    let new_hash = match stored {
        None => {
            let mut errors = ValidationErrors::default();
            check_password(&mut errors, "password", password.expose_secret());
            errors.finish(())?;
            Some(ctx.passwords.hash(password).await?)
        }
        Some(existing) => match ctx.passwords.check(password, Some(existing)).await? {
            Checked::Match { .. } => None,
            Checked::NoMatch => return Err(Error::InvalidLogin),
        },
    };
    let role = Role::parse(&invite.role).ok_or(Error::NotFound("invitation"))?;
    let tenant = TenantId(invite.tenant_id);

    let mut tx = ctx.pool.begin().await?;
    // Someone may have accepted it (or set the password) while the password was hashed.
    repo::users::find_invite_for_update(&mut tx, &hash)
        .await?
        .filter(|i| i.accepted_at.is_none())
        .ok_or(Error::NotFound("invitation"))?;
    if let Some(new_hash) = &new_hash {
        if !repo::users::set_first_password(&mut tx, user_id, new_hash).await? {
            return Err(Error::Conflict(
                "the account got a password meanwhile; accept again with it".into(),
            ));
        }
    }
    repo::users::add_membership(&mut tx, user_id, tenant, role, now)
        .await
        .map_err(|e| {
            if repo::unique_violation(&e) == Some("memberships_pkey") {
                Error::Conflict("already a member of this tenant".into())
            } else {
                e.into()
            }
        })?;
    repo::users::mark_invite_accepted(&mut tx, invite.id, now).await?;
    let event = NewAuditEvent::new(
        now,
        &user_actor(user_id),
        meta,
        Some(tenant),
        "user.invite_accepted",
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
            Error::Conflict(format!("a user with email '{}' already exists", user.email))
        } else {
            e.into()
        }
    })?;
    let event = NewAuditEvent::new(
        now,
        actor,
        &RequestMeta::default(),
        None,
        "user.created",
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
        repo::users::revoke_all_refresh_tokens(&mut tx, user.id, now).await?;
    }
    let action = if disabled { "user.disabled" } else { "user.enabled" };
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
