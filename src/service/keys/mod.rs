//! The lifecycle of customer keys and service tokens: issue, list, read, change, rotate, revoke.
//! Both live in one table and share these rules (here); the kind decides who may act and what
//! the audit trail calls them. Issuing and changing what differs: `customer` and
//! `service_tokens`; re-sealing signing secrets after a master-key rotation: `reseal`.

mod customer;
mod reseal;
mod service_tokens;

pub use customer::{create_key, update_key};
pub use reseal::reseal_signing_secrets;
pub use service_tokens::{create_service_token, issue_service_token};

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;

use crate::crypto::secrets::new_signing_secret;
use crate::domain::audit::{AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::ids::{KeyId, KeyKind};
use crate::domain::key::{Key, KeyListQuery, KeyStatus, KeyTemplate, RevokeDraft, RotateDraft, MAX_OWNER_ID_LEN};
use crate::domain::page::{check_cursor, check_limit, Page};
use crate::domain::permissions::{authorize, Action, Caller, Denied, TenantScope};
use crate::domain::tenant::TenantStatus;
use crate::domain::token::{NewToken, TokenPrefix};
use crate::domain::validation::{check_filter, ValidationErrors};
use crate::repo::{self, keys::KeyListFilter};
use crate::service::{actor_of, Context, Error, Result};
use crate::verify::Change;

/// A key together with its token, which is shown this once.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: Key,
    pub token: NewToken,
    /// The signing secret of a key issued with `signing`, shown this once too.
    pub signing_secret: Option<SecretString>,
}

#[derive(Debug)]
pub struct Rotated {
    pub issued: IssuedKey,
    pub previous: Key,
}

pub(super) fn action(kind: KeyKind, write: bool) -> Action {
    match (kind, write) {
        (KeyKind::Service, _) => Action::ManageServiceTokens,
        (KeyKind::Customer, true) => Action::WriteKeys,
        (KeyKind::Customer, false) => Action::ReadKeys,
    }
}

/// The lifecycle steps both kinds share, each named in the audit trail by the key's kind.
#[derive(Clone, Copy)]
pub(super) enum Step {
    Rotated,
    Revoked,
}

pub(super) fn audit_action(kind: KeyKind, step: Step) -> AuditAction {
    match (kind, step) {
        (KeyKind::Customer, Step::Rotated) => AuditAction::KeyRotated,
        (KeyKind::Customer, Step::Revoked) => AuditAction::KeyRevoked,
        (KeyKind::Service, Step::Rotated) => AuditAction::ServiceTokenRotated,
        (KeyKind::Service, Step::Revoked) => AuditAction::ServiceTokenRevoked,
    }
}

pub(super) fn target_kind(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Customer => "key",
        KeyKind::Service => "service_token",
    }
}

pub(super) fn not_found(kind: KeyKind) -> Error {
    Error::NotFound(target_kind(kind))
}

/// Checks that the owning tenant exists (404) and, for changes, that it is active (409).
pub(super) async fn check_owner(conn: &mut PgConnection, owner: TenantScope, must_be_active: bool) -> Result<()> {
    let TenantScope::Tenant(id) = owner else {
        return Ok(());
    };
    let tenant = repo::tenants::get(&mut *conn, id)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    if must_be_active && tenant.status == TenantStatus::Suspended {
        return Err(Error::TenantSuspended(
            "the tenant is suspended; resume it before changing its keys",
        ));
    }
    Ok(())
}

/// Gives `key` a fresh signing secret, sealed under the current master key.
pub(super) fn attach_signing_secret(ctx: &Context, key: &mut Key) -> Result<SecretString> {
    let master = ctx.master_keys.as_deref().ok_or(Error::NotConfigured(
        "signing secrets need KEYWARD_MASTER_KEYS to be set",
    ))?;
    let secret = new_signing_secret();
    key.signing_secret = Some(master.seal(secret.expose_secret(), key.id.as_str()));
    Ok(secret)
}

pub async fn list(
    ctx: &Context,
    caller: &Caller,
    owner: TenantScope,
    kind: KeyKind,
    query: KeyListQuery,
) -> Result<Page<Key>> {
    authorize(caller, action(kind, false), owner.tenant_id())?;
    let mut errors = ValidationErrors::default();
    let limit = check_limit(&mut errors, query.limit);
    let before = check_cursor(&mut errors, query.cursor.as_deref(), |text| KeyId::parse(kind, text));
    check_filter(&mut errors, "owner_id", query.owner_id.as_deref(), MAX_OWNER_ID_LEN);
    errors.finish(())?;
    let mut conn = ctx.pool.acquire().await?;
    check_owner(&mut conn, owner, false).await?;
    let filter = KeyListFilter {
        owner,
        kind,
        status: query.status,
        environment: query.environment,
        owner_id: query.owner_id,
        before,
        limit: limit + 1,
    };
    let rows = repo::keys::list(&mut *conn, &filter, ctx.clock.now()).await?;
    Ok(Page::from_rows(rows, limit, |k| k.id.to_string()))
}

pub async fn get(ctx: &Context, caller: &Caller, owner: TenantScope, kind: KeyKind, id: &str) -> Result<Key> {
    authorize(caller, action(kind, false), owner.tenant_id())?;
    let id = KeyId::parse(kind, id).ok_or_else(|| not_found(kind))?;
    repo::keys::get(&ctx.pool, owner, kind, &id, false)
        .await?
        .ok_or_else(|| not_found(kind))
}

/// Authorizes a change to a key of `kind` held by `owner`, and reads the id it names.
pub(super) fn writable_key_id(caller: &Caller, owner: TenantScope, kind: KeyKind, id: &str) -> Result<KeyId> {
    authorize(caller, action(kind, true), owner.tenant_id())?;
    KeyId::parse(kind, id).ok_or_else(|| not_found(kind))
}

/// The key, locked for the rest of the transaction, after checking its owner exists (and, when
/// `owner_active`, is not suspended).
pub(super) async fn lock_key(
    conn: &mut PgConnection,
    owner: TenantScope,
    kind: KeyKind,
    id: &KeyId,
    owner_active: bool,
) -> Result<Key> {
    check_owner(&mut *conn, owner, owner_active).await?;
    repo::keys::get(&mut *conn, owner, kind, id, true)
        .await?
        .ok_or_else(|| not_found(kind))
}

/// Issues a successor with the same settings; the old key keeps working for the grace period.
pub async fn rotate(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    owner: TenantScope,
    kind: KeyKind,
    id: &str,
    draft: RotateDraft,
) -> Result<Rotated> {
    let id = writable_key_id(caller, owner, kind, id)?;
    let grace = draft.grace_seconds()?;
    let now = ctx.clock.now();
    let actor = actor_of(caller);
    let mut tx = ctx.pool.begin().await?;
    let old = lock_key(&mut tx, owner, kind, &id, true).await?;
    if kind == KeyKind::Service {
        if let Some(missing) = old.permissions().iter().find(|p| !caller.may_grant(**p, owner)) {
            return Err(Denied::MissingPermission(missing.as_str()).into());
        }
    }
    match old.status(now) {
        KeyStatus::Revoked => return Err(Error::KeyRevoked("a revoked key cannot be rotated")),
        KeyStatus::Expired => return Err(Error::KeyExpired("an expired key cannot be rotated")),
        KeyStatus::Active | KeyStatus::Disabled => {}
    }
    // One successor per key: a second rotation would fork the family (two counters' worth of
    // limits) and hand the new key the grace-period expiry of the first rotation.
    if let Some(successor) = repo::keys::successor_of(&mut *tx, &old.id).await? {
        return Err(Error::KeyRotated(format!(
            "this key was already rotated; rotate its successor `{successor}` instead"
        )));
    }
    // A successor is capped like a new token: nothing outlives the credential that minted it.
    let expires_at = match (kind, caller.expires_at) {
        (KeyKind::Service, Some(limit)) => Some(old.expires_at.map_or(limit, |at| at.min(limit))),
        _ => old.expires_at,
    };
    let prefix = match kind {
        KeyKind::Customer => old.environment.token_prefix(),
        KeyKind::Service => TokenPrefix::Service,
    };
    let token = NewToken::generate(prefix);
    let template = KeyTemplate {
        name: old.name.clone(),
        environment: old.environment,
        grants: old.grants.clone(),
        metadata: old.metadata.clone(),
        owner_id: old.owner_id.clone(),
        expires_at,
        enabled: old.enabled,
        rotated_from: Some(old.id.clone()),
        limit_family: Some(old.limit_family.clone()),
        remaining: old.remaining,
        rate_limit: old.rate_limit,
    };
    let mut key = template.issue(owner, &token, &actor, now);
    let signing = match (kind, draft.signing) {
        (KeyKind::Service, Some(true)) => {
            return Err(ValidationErrors::single("signing", "service tokens do not sign requests").into())
        }
        (_, Some(wanted)) => wanted,
        (_, None) => old.signing_secret.is_some(),
    };
    let signing_secret = if signing {
        Some(attach_signing_secret(ctx, &mut key)?)
    } else {
        None
    };
    repo::keys::insert(&mut tx, &key, &token.hash()).await?;
    repo::keys::hand_over_remaining(&mut tx, &old.id).await?;
    let previous = repo::keys::set_expires_at(&mut tx, &old.id, old.expiry_after_rotation(now, grace)).await?;
    let event = NewAuditEvent::new(
        now,
        &actor,
        meta,
        owner.tenant_id(),
        audit_action(kind, Step::Rotated),
        Outcome::Success,
    )
    .target(target_kind(kind), &old.id)
    .details(serde_json::json!({
        "new_key_id": key.id,
        "grace_period_seconds": grace,
        "previous_expires_at": previous.expires_at,
    }));
    let created = Change::Created {
        id: key.id.clone(),
        hash: token.hash(),
    };
    ctx.verify
        .commit(&ctx.pool, tx, &[Change::Key(old.id.clone()), created], &[event])
        .await?;
    Ok(Rotated {
        issued: IssuedKey {
            key,
            token,
            signing_secret,
        },
        previous,
    })
}

/// Revokes a key at once and for good.
pub async fn revoke(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    owner: TenantScope,
    kind: KeyKind,
    id: &str,
    draft: RevokeDraft,
) -> Result<Key> {
    let id = writable_key_id(caller, owner, kind, id)?;
    let reason = draft.reason()?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let current = lock_key(&mut tx, owner, kind, &id, false).await?;
    if current.revoked_at.is_some() {
        return Err(Error::KeyRevoked("the key is already revoked"));
    }
    let revoked = repo::keys::revoke(&mut tx, &id, now, reason.as_deref()).await?;
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        owner.tenant_id(),
        audit_action(kind, Step::Revoked),
        Outcome::Success,
    )
    .target(target_kind(kind), &id)
    .details(serde_json::json!({ "reason": reason }));
    ctx.verify.commit(&ctx.pool, tx, &[Change::Key(id)], &[event]).await?;
    Ok(revoked)
}
