//! Authenticates callers of keyward's own API: service tokens here, user access tokens in
//! `sessions`.

use super::{Context, Error, Result};
use crate::domain::ids::KeyKind;
use crate::domain::key::KeyStatus;
use crate::domain::permissions::{Caller, TenantScope};
use crate::domain::tenant::TenantStatus;
use crate::domain::token::{PresentedToken, TokenPrefix};

/// The caller behind a bearer credential: a service token (`kw_svc_…`) or a user's access
/// token (a JWT). Customer keys never authenticate here.
pub async fn authenticate(ctx: &Context, bearer: &str) -> Result<Caller> {
    if bearer.split('.').count() == 3 {
        return super::sessions::authenticate(ctx, bearer).await;
    }
    let token = PresentedToken::parse(bearer).map_err(|_| Error::Unauthenticated)?;
    if token.prefix() != TokenPrefix::Service {
        return Err(Error::Unauthenticated);
    }
    let key = ctx
        .verify
        .find_by_hash(&ctx.pool, KeyKind::Service, &token.hash())
        .await?
        .ok_or(Error::Unauthenticated)?;
    let now = ctx.clock.now();
    if key.status(now) != KeyStatus::Active || key.tenant_status() == Some(TenantStatus::Suspended) {
        return Err(Error::Unauthenticated);
    }
    ctx.verify.note_token_use(key.id(), now);
    let scope = key.tenant_id().map_or(TenantScope::Platform, TenantScope::Tenant);
    let mut caller = Caller::service(key.id().clone(), scope, key.permissions().to_vec());
    caller.expires_at = key.expires_at();
    Ok(caller)
}
