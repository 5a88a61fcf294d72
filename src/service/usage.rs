//! Reading verification counts: what a tenant's keys were verified for, per key and per owner.

use super::{Context, Error, Result};
use crate::domain::ids::TenantId;
use crate::domain::permissions::{authorize, Action, Caller};
use crate::domain::usage::{UsageDraft, UsageReport};
use crate::repo;

/// The tenant's verification counts in the range `draft` names (see `domain::usage`).
pub async fn report(ctx: &Context, caller: &Caller, tenant: TenantId, draft: UsageDraft) -> Result<UsageReport> {
    authorize(caller, Action::ReadUsage, Some(tenant))?;
    let query = draft.validate(ctx.clock.now())?;
    repo::tenants::get(&ctx.pool, tenant)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    let rows = repo::usage::rows(&ctx.pool, tenant, &query).await?;
    Ok(UsageReport::from_rows(&query, rows))
}
