//! `/v1/tenants`: create, list, read, rename, suspend and resume tenants.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Meta, Query};
use super::parse_tenant_id;
use crate::domain::page::Page;
use crate::domain::tenant::{Tenant, TenantDraft, TenantPatch, TenantSettingsPatch, TenantStatus};
use crate::error::{ApiError, Problem, ProblemResponse};
use crate::service::{tenants, Context};
use utoipa::ToSchema;

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
    request_body = CreateTenantBody,
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
    Json(draft): Json<CreateTenantBody>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let tenant = tenants::create(&ctx, &caller, &meta, draft.into()).await?;
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
    request_body = PatchTenantBody,
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
    Json(patch): Json<PatchTenantBody>,
) -> Result<Json<Tenant>, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    Ok(Json(tenants::update(&ctx, &caller, &meta, id, patch.into()).await?))
}

/// `POST /v1/tenants` body before validation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TenantDraft)]
pub struct CreateTenantBody {
    /// `[a-z0-9-]{3,40}`, unique.
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Corp")]
    pub name: String,
}

impl From<CreateTenantBody> for TenantDraft {
    fn from(body: CreateTenantBody) -> Self {
        TenantDraft {
            slug: body.slug,
            name: body.name,
        }
    }
}

/// `PATCH /v1/tenants/{tenant_id}` body: only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TenantPatch)]
pub struct PatchTenantBody {
    pub name: Option<String>,
    pub status: Option<TenantStatus>,
    pub settings: Option<TenantSettingsPatch>,
}

impl From<PatchTenantBody> for TenantPatch {
    fn from(body: PatchTenantBody) -> Self {
        TenantPatch {
            name: body.name,
            status: body.status,
            settings: body.settings,
        }
    }
}
