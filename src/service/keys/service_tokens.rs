//! Service tokens: issuing one, for a caller who cannot grant what it lacks, or for the CLI's
//! bootstrap.

use super::{check_owner, IssuedKey};
use crate::domain::audit::{Actor, AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::key::{Environment, Grants, KeyTemplate, ServiceTokenDraft, ServiceTokenSpec};
use crate::domain::permissions::{authorize, Action, Caller, Denied, TenantScope};
use crate::domain::token::{NewToken, TokenPrefix};
use crate::repo::{self};
use crate::service::{actor_of, Context, Result};
use crate::verify::Change;

/// Issues a service token on behalf of a caller, who cannot grant permissions it lacks.
pub async fn create_service_token(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    owner: TenantScope,
    draft: ServiceTokenDraft,
) -> Result<IssuedKey> {
    authorize(caller, Action::ManageServiceTokens, owner.tenant_id())?;
    let mut spec = draft.validate(ctx.clock.now())?;
    if let Some(missing) = spec.permissions.iter().find(|p| !caller.may_grant(**p, owner)) {
        return Err(Denied::MissingPermission(missing.as_str()).into());
    }
    // A credential cannot hand out one that outlives it.
    if let Some(limit) = caller.expires_at {
        spec.expires_at = Some(spec.expires_at.map_or(limit, |at| at.min(limit)));
    }
    issue_service_token(ctx, &actor_of(caller), meta, owner, spec).await
}

/// Issues a service token; the CLI calls this directly for the bootstrap token.
pub async fn issue_service_token(
    ctx: &Context,
    actor: &Actor,
    meta: &RequestMeta,
    owner: TenantScope,
    spec: ServiceTokenSpec,
) -> Result<IssuedKey> {
    let now = ctx.clock.now();
    let token = NewToken::generate(TokenPrefix::Service);
    let template = KeyTemplate {
        name: spec.name,
        environment: Environment::Live,
        grants: Grants::Permissions(spec.permissions),
        metadata: serde_json::json!({}),
        owner_id: None,
        expires_at: spec.expires_at,
        enabled: true,
        rotated_from: None,
        limit_family: None,
        remaining: None,
        rate_limit: None,
    };
    let key = template.issue(owner, &token, actor, now);
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
        actor,
        meta,
        owner.tenant_id(),
        AuditAction::ServiceTokenCreated,
        Outcome::Success,
    )
    .target("service_token", &key.id)
    .details(serde_json::json!({ "name": key.name, "permissions": key.grants.names(), "expires_at": key.expires_at }));
    ctx.verify.commit(&ctx.pool, tx, &[created], &[event]).await?;
    Ok(IssuedKey {
        key,
        token,
        signing_secret: None,
    })
}
