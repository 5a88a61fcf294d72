//! `/v1/tenants`: create, list, read, rename, suspend and resume tenants.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Meta, Query};
use super::parse_tenant_id;
use crate::domain::page::Page;
use crate::domain::tenant::{Tenant, TenantDraft, TenantPatch};
use crate::error::{ApiError, Problem, ProblemResponse};
use crate::service::{tenants, Context};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, update_tenant))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 100, default 50.
    pub limit: Option<i64>,
}

/// Creates a tenant (platform credential with `tenants:admin`).
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    request_body = TenantDraft,
    security(("bearer" = [])),
    responses(
        (status = 201, body = Tenant),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 409, description = "slug taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, response = ProblemResponse),
    )
)]
async fn create_tenant(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Json(draft): Json<TenantDraft>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let tenant = tenants::create(&ctx, &caller, &meta, draft).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Lists tenants in creation order.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<Tenant>),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
    )
)]
async fn list_tenants(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    Ok(Json(
        tenants::list(&ctx, &caller, query.cursor.as_deref(), query.limit).await?,
    ))
}

/// Reads one tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = uuid::Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Tenant),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
    )
)]
async fn get_tenant(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(tenant_id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    Ok(Json(tenants::get(&ctx, &caller, id).await?))
}

/// Renames, suspends (`status: suspended`) or resumes (`status: active`) a tenant (platform
/// credentials), or changes its `settings` (also its own owners and admins).
#[utoipa::path(
    patch, path = "/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = uuid::Uuid, Path)),
    request_body = TenantPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, body = Tenant),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn update_tenant(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path(tenant_id): Path<String>,
    Json(patch): Json<TenantPatch>,
) -> Result<Json<Tenant>, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    Ok(Json(tenants::update(&ctx, &caller, &meta, id, patch).await?))
}
