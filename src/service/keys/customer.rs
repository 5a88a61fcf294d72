//! Customer keys: issuing one from a validated spec, and changing one.

use super::{attach_signing_secret, check_owner, lock_key, writable_key_id, IssuedKey};
use crate::domain::audit::{AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::ids::{KeyId, KeyKind, TenantId};
use crate::domain::key::{Grants, Key, KeyDraft, KeyPatch, KeyPatchDraft, KeyStatus, KeyTemplate};
use crate::domain::permissions::{authorize, Action, Caller, TenantScope};
use crate::domain::token::NewToken;
use crate::repo::{self};
use crate::service::{actor_of, Context, Error, Result};
use crate::verify::Change;

pub async fn create_key(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    draft: KeyDraft,
) -> Result<IssuedKey> {
    authorize(caller, Action::WriteKeys, Some(tenant))?;
    let now = ctx.clock.now();
    let spec = draft.validate(now)?;
    let actor = actor_of(caller);
    let owner = TenantScope::Tenant(tenant);
    let token = NewToken::generate(spec.environment.token_prefix());
    let template = KeyTemplate {
        name: spec.name,
        environment: spec.environment,
        grants: Grants::Scopes(spec.scopes),
        metadata: spec.metadata,
        owner_id: spec.owner_id,
        expires_at: spec.expires_at,
        enabled: spec.enabled,
        rotated_from: None,
        limit_family: None,
        remaining: spec.remaining,
        rate_limit: spec.rate_limit,
    };
    let mut key = template.issue(owner, &token, &actor, now);
    let signing_secret = if spec.signing {
        Some(attach_signing_secret(ctx, &mut key)?)
    } else {
        None
    };
    let created = Change::Created {
        id: key.id.clone(),
        hash: token.hash(),
    };
    ctx.verify.announce(&ctx.pool, &created).await;
    let mut tx = ctx.pool.begin().await?;
    check_owner(&mut tx, owner, true).await?;
    repo::keys::insert(&mut tx, &key, &token.hash()).await?;
    let event = NewAuditEvent::new(
        now,
        &actor,
        meta,
        Some(tenant),
        AuditAction::KeyCreated,
        Outcome::Success,
    )
    .target("key", &key.id)
    .details(serde_json::json!({
        "name": key.name,
        "environment": key.environment.as_str(),
        "scopes": key.grants.names(),
        "expires_at": key.expires_at,
        "signing": signing_secret.is_some(),
    }));
    ctx.verify.commit(&ctx.pool, tx, &[created], &[event]).await?;
    Ok(IssuedKey {
        key,
        token,
        signing_secret,
    })
}

pub async fn update_key(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    tenant: TenantId,
    id: &str,
    draft: KeyPatchDraft,
) -> Result<Key> {
    let owner = TenantScope::Tenant(tenant);
    let id = writable_key_id(caller, owner, KeyKind::Customer, id)?;
    let now = ctx.clock.now();
    let patch = draft.validate(now)?;
    let mut tx = ctx.pool.begin().await?;
    let current = lock_key(&mut tx, owner, KeyKind::Customer, &id, true).await?;
    match current.status(now) {
        KeyStatus::Revoked => return Err(Error::KeyRevoked("a revoked key cannot be changed")),
        // Expiry is final like revocation: a lapsed (or rotated-away) key is not brought back.
        KeyStatus::Expired => return Err(Error::KeyExpired("an expired key cannot be changed")),
        KeyStatus::Active | KeyStatus::Disabled => {}
    }
    if let Some(successor) = repo::keys::successor_of(&mut *tx, &id).await? {
        check_rotated_away_patch(&current, &patch, &successor)?;
    }
    let updated = repo::keys::update(&mut tx, &id, &patch).await?;
    // The family's limits live on its newest key: its predecessors follow what is set here.
    let followers = if current.rotated_from.is_some() && (patch.remaining.is_some() || patch.rate_limit.is_some()) {
        repo::keys::spread_family_limits(&mut tx, &updated.limit_family, &id, patch.remaining, patch.rate_limit).await?
    } else {
        Vec::new()
    };
    let changed: Vec<&str> = [
        ("name", patch.name.is_some()),
        ("scopes", patch.scopes.is_some()),
        ("metadata", patch.metadata.is_some()),
        ("owner_id", patch.owner_id.is_some()),
        ("expires_at", patch.expires_at.is_some()),
        ("enabled", patch.enabled.is_some()),
        ("remaining", patch.remaining.is_some()),
        ("rate_limit", patch.rate_limit.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect();
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        Some(tenant),
        AuditAction::KeyUpdated,
        Outcome::Success,
    )
    .target("key", &id)
    .details(serde_json::json!({ "changed": changed, "enabled": updated.enabled, "scopes": updated.grants.names() }));
    let changes: Vec<Change> = std::iter::once(id.clone()).chain(followers).map(Change::Key).collect();
    ctx.verify.commit(&ctx.pool, tx, &changes, &[event]).await?;
    Ok(updated)
}

/// A key rotated away keeps the expiry rotation gave it (it may be shortened, never extended or
/// removed), and its limits live on its successor.
fn check_rotated_away_patch(current: &Key, patch: &KeyPatch, successor: &KeyId) -> Result<()> {
    if let Some(wanted) = patch.expires_at {
        let extends = match (wanted, current.expires_at) {
            (None, _) => true,
            (Some(wanted), Some(set)) => wanted > set,
            (Some(_), None) => false,
        };
        if extends {
            return Err(Error::KeyRotated(format!(
                "this key was rotated to `{successor}`: its expiry may be brought forward, never extended or removed"
            )));
        }
    }
    if patch.remaining.is_some() || patch.rate_limit.is_some() {
        return Err(Error::KeyRotated(format!(
            "this key was rotated to `{successor}`, which holds the limits they share: change them there"
        )));
    }
    Ok(())
}
