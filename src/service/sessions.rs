//! People's sessions: log in with email and password, refresh (rotating, with reuse detection),
//! log out, and authenticate an access token.

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::{Context, Error, Result};
use crate::crypto::jwt::Jwt;
use crate::crypto::password::Checked;
use crate::domain::audit::{Actor, ActorKind, AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::permissions::{Caller, Grant, Principal};
use crate::domain::token::{NewToken, PresentedToken, TokenPrefix};
use crate::domain::user::{check_email, Membership, User, UserId};
use crate::domain::validation::ValidationErrors;
use crate::repo::{self, refresh_tokens::NewRefreshToken};

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

pub(super) fn user_actor(id: UserId) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: id.to_string(),
    }
}

/// The actor of an attempt whose account is not known (or not the caller's to claim).
pub(super) fn unknown_user_actor() -> Actor {
    Actor {
        kind: ActorKind::User,
        id: "unknown".into(),
    }
}

/// `presented` as a refresh token, if it is one.
fn refresh_token(presented: &str) -> Option<PresentedToken<'_>> {
    PresentedToken::parse(presented)
        .ok()
        .filter(|t| t.prefix() == TokenPrefix::Refresh)
}

/// Why a login attempt is refused before its password is looked at.
enum Throttle {
    /// The address (its /32 or /64) has failed too often, whatever accounts it tried.
    Address,
    /// This account has failed too often from this address.
    Account,
}

/// Records the attempt as a failure (a success clears it), then checks the throttles, so that
/// guesses sent in parallel cannot all pass before any of them is recorded. An attempt a
/// throttle refuses is forgotten again: it was never tried, so it neither extends the lockout
/// nor grows the table. A refusal carries the seconds until the oldest counted failure ages out.
async fn admit_attempt(ctx: &Context, email: Option<&str>, meta: &RequestMeta, now: DateTime<Utc>) -> Result<i64> {
    let since = now - Duration::seconds(FAILURE_WINDOW_SECONDS);
    // Failures no throttle counts any more are forgotten as attempts come in (an index range
    // scan that finds nothing most of the time), so the table holds one window at most.
    repo::login_failures::prune(&ctx.pool, since).await?;
    let id = repo::login_failures::record(&ctx.pool, email, meta.ip, now).await?;
    let counts = repo::login_failures::count(&ctx.pool, email, meta.ip, since).await?;
    let throttle = if counts.address > MAX_ADDRESS_FAILURES {
        Throttle::Address
    } else if counts.account > MAX_ACCOUNT_FAILURES {
        Throttle::Account
    } else {
        return Ok(id);
    };
    repo::login_failures::forget(&ctx.pool, id).await?;
    let oldest = match throttle {
        Throttle::Address => counts.address_oldest,
        Throttle::Account => counts.account_oldest,
    };
    let retry = oldest.map_or(FAILURE_WINDOW_SECONDS, |at| (at - since).num_seconds().max(1));
    Err(Error::Throttled(retry as u64))
}

/// Checks a password; when the hashing queue is full the attempt was never tried, so it is
/// forgotten like a throttled one.
async fn check_password_or_forget(
    ctx: &Context,
    attempt: i64,
    password: &SecretString,
    stored: Option<String>,
) -> Result<Checked> {
    match ctx.passwords.check(password, stored).await {
        Ok(checked) => Ok(checked),
        Err(error) => {
            let error = Error::from(error);
            if matches!(error, Error::Busy) {
                repo::login_failures::forget(&ctx.pool, attempt).await?;
            }
            Err(error)
        }
    }
}

pub async fn login(ctx: &Context, meta: &RequestMeta, email: &str, password: &SecretString) -> Result<Session> {
    let jwt = jwt(ctx)?;
    let now = ctx.clock.now();
    let email = email.trim();
    let mut shape = ValidationErrors::default();
    check_email(&mut shape, "email", email);
    if !shape.0.is_empty() {
        // No account can have this address (it may even be a password typed in the wrong
        // field): it counts against the address only, its text is never stored, and it is
        // answered like a wrong password, after the same work.
        let attempt = admit_attempt(ctx, None, meta, now).await?;
        check_password_or_forget(ctx, attempt, password, None).await?;
        return Err(Error::InvalidLogin);
    }
    let attempt = admit_attempt(ctx, Some(email), meta, now).await?;
    let found = repo::users::find_by_email(&ctx.pool, email).await?;
    let (user, stored) = match found {
        Some((user, hash)) if user.disabled_at.is_none() => (Some(user), hash),
        _ => (None, None),
    };
    // Unknown, disabled and password-less accounts are checked against a dummy hash: the
    // answer and its timing are the same as for a wrong password.
    let checked = check_password_or_forget(ctx, attempt, password, stored).await?;
    let (user, needs_rehash) = match (user, checked) {
        (Some(user), Checked::Match { needs_rehash }) => (user, needs_rehash),
        (user, _) => {
            let mut tx = ctx.pool.begin().await?;
            let actor = user.as_ref().map_or_else(unknown_user_actor, |u| user_actor(u.id));
            let event = NewAuditEvent::new(now, &actor, meta, None, AuditAction::UserLoginFailed, Outcome::Failure)
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
    repo::login_failures::clear(&mut *tx, email, meta.ip).await?;
    let session = Uuid::now_v7();
    let refresh_token = new_refresh_token(&mut tx, user.id, session, now).await?;
    let event = NewAuditEvent::new(
        now,
        &user_actor(user.id),
        meta,
        None,
        AuditAction::UserLogin,
        Outcome::Success,
    )
    .target("user", user.id)
    .details(serde_json::json!({ "rehashed": rehashed.is_some() }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    let (access_token, expires_in) = jwt
        .issue(user.id, user.session_version, session, now)
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
    repo::refresh_tokens::insert(
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
    let token = refresh_token(presented).ok_or(Error::Unauthenticated)?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let row = repo::refresh_tokens::find_for_update(&mut tx, &token.hash())
        .await?
        .ok_or(Error::Unauthenticated)?;
    let user_id = UserId(row.user_id);
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(Error::Unauthenticated);
    }
    if row.used_at.is_some() {
        repo::refresh_tokens::revoke_family(&mut tx, row.family_id, now).await?;
        let event = NewAuditEvent::new(
            now,
            &user_actor(user_id),
            meta,
            None,
            AuditAction::SessionRefreshReused,
            Outcome::Denied,
        )
        .target("user", user_id)
        .details(serde_json::json!({ "family": row.family_id }));
        repo::audit::append(&mut tx, &event).await?;
        tx.commit().await?;
        return Err(Error::NotAuthenticated(
            "this refresh token was already used, so every session of this login has ended (and its \
             access tokens with it); log in again",
        ));
    }
    let user = repo::users::get(&mut *tx, user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if user.disabled_at.is_some() {
        return Err(Error::Unauthenticated);
    }
    repo::refresh_tokens::mark_used(&mut tx, row.id, now).await?;
    let refresh_token = new_refresh_token(&mut tx, user.id, row.family_id, now).await?;
    tx.commit().await?;
    let (access_token, expires_in) = jwt
        .issue(user.id, user.session_version, row.family_id, now)
        .map_err(|_| Error::Unauthenticated)?;
    Ok(Session {
        access_token,
        refresh_token,
        expires_in,
    })
}

/// Ends the session the refresh token belongs to, and every access token of that session.
/// Unknown tokens are ignored.
pub async fn logout(ctx: &Context, meta: &RequestMeta, presented: &str) -> Result<()> {
    let Some(token) = refresh_token(presented) else {
        return Ok(());
    };
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    if let Some(row) = repo::refresh_tokens::find_for_update(&mut tx, &token.hash()).await? {
        repo::refresh_tokens::revoke_family(&mut tx, row.family_id, now).await?;
        audit_logout(&mut tx, meta, UserId(row.user_id), now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Ends the session an access token belongs to (logout without the refresh token).
pub async fn logout_access_token(ctx: &Context, meta: &RequestMeta, access_token: &str) -> Result<()> {
    let jwt = ctx.jwt.as_deref().ok_or(Error::Unauthenticated)?;
    let now = ctx.clock.now();
    let claims = jwt.verify(access_token, now).map_err(|_| Error::Unauthenticated)?;
    let user = UserId::parse(&claims.sub).ok_or(Error::Unauthenticated)?;
    let mut tx = ctx.pool.begin().await?;
    if repo::refresh_tokens::revoke_session(&mut tx, user, claims.sid, now).await? {
        audit_logout(&mut tx, meta, user, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn audit_logout(
    conn: &mut sqlx::PgConnection,
    meta: &RequestMeta,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<()> {
    let event = NewAuditEvent::new(
        now,
        &user_actor(user),
        meta,
        None,
        AuditAction::SessionLogout,
        Outcome::Success,
    )
    .target("user", user);
    repo::audit::append(conn, &event).await?;
    Ok(())
}

/// The caller behind an access token: the user must exist and be enabled, the token's session
/// must still be live (logout and refresh-token reuse end it), and the token must carry the
/// user's current session version (roles, removal and disabling move it on).
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Caller> {
    let jwt = ctx.jwt.as_deref().ok_or(Error::Unauthenticated)?;
    let now = ctx.clock.now();
    let claims = jwt.verify(token, now).map_err(|_| Error::Unauthenticated)?;
    let user_id = UserId::parse(&claims.sub).ok_or(Error::Unauthenticated)?;
    let (user, session_live) = repo::users::get_with_session(&ctx.pool, user_id, claims.sid, now)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if user.disabled_at.is_some() || user.session_version != claims.ver {
        return Err(Error::Unauthenticated);
    }
    if !session_live {
        return Err(Error::NotAuthenticated(
            "the session of this access token has ended (logged out, or its refresh token was reused); log in again",
        ));
    }
    let memberships = repo::memberships::of_user(&ctx.pool, user.id).await?;
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
    let memberships = repo::memberships::of_user(&ctx.pool, id).await?;
    Ok(Me { user, memberships })
}
