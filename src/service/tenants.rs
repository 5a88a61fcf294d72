//! Creating, reading and suspending tenants.

use super::{actor_of, Context, Error, Result};
use crate::domain::audit::{AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::ids::TenantId;
use crate::domain::page::{check_cursor, check_limit, Page};
use crate::domain::permissions::{authorize, Action, Caller};
use crate::domain::tenant::{Tenant, TenantDraft, TenantPatch};
use crate::domain::validation::ValidationErrors;
use crate::repo;
use crate::verify::Change;

pub async fn create(ctx: &Context, caller: &Caller, meta: &RequestMeta, draft: TenantDraft) -> Result<Tenant> {
    authorize(caller, Action::CreateTenant, None)?;
    let now = ctx.clock.now();
    let tenant = draft.validate(now)?;
    let mut tx = ctx.pool.begin().await?;
    repo::tenants::insert(&mut tx, &tenant).await.map_err(|e| {
        if repo::unique_violation(&e) == Some("tenants_slug_key") {
            Error::AlreadyExists("a tenant with this slug already exists")
        } else {
            e.into()
        }
    })?;
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        Some(tenant.id),
        AuditAction::TenantCreated,
        Outcome::Success,
    )
    .target("tenant", tenant.id)
    .details(serde_json::json!({ "slug": tenant.slug, "name": tenant.name }));
    repo::audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(tenant)
}

pub async fn list(ctx: &Context, caller: &Caller, cursor: Option<&str>, limit: Option<i64>) -> Result<Page<Tenant>> {
    authorize(caller, Action::ListTenants, None)?;
    let mut errors = ValidationErrors::default();
    let limit = check_limit(&mut errors, limit);
    let after = check_cursor(&mut errors, cursor, TenantId::parse);
    errors.finish(())?;
    let rows = repo::tenants::list(&ctx.pool, after, limit + 1).await?;
    Ok(Page::from_rows(rows, limit, |t| t.id.to_string()))
}

pub async fn get(ctx: &Context, caller: &Caller, id: TenantId) -> Result<Tenant> {
    authorize(caller, Action::ReadTenant, Some(id))?;
    repo::tenants::get(&ctx.pool, id)
        .await?
        .ok_or(Error::NotFound("tenant"))
}

pub async fn update(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    id: TenantId,
    patch: TenantPatch,
) -> Result<Tenant> {
    // A tenant's owners and admins tune its own settings; its name and status are the platform's.
    let action = if patch.name.is_none() && patch.status.is_none() {
        Action::ConfigureTenant
    } else {
        Action::UpdateTenant
    };
    authorize(caller, action, Some(id))?;
    let patch = patch.validate()?;
    let now = ctx.clock.now();
    let mut tx = ctx.pool.begin().await?;
    let tenant = repo::tenants::update(&mut tx, id, &patch, now)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    let event = NewAuditEvent::new(
        now,
        &actor_of(caller),
        meta,
        Some(id),
        AuditAction::TenantUpdated,
        Outcome::Success,
    )
    .target("tenant", id)
    .details(serde_json::json!({
        "name": patch.name,
        "status": patch.status.map(|s| s.as_str()),
        "settings": patch.settings,
    }));
    ctx.verify
        .commit(&ctx.pool, tx, &[Change::Tenant(id)], &[event])
        .await?;
    Ok(tenant)
}
