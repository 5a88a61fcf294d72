//! `/v1/service-tokens` (platform-wide) and `/v1/tenants/{tenant_id}/service-tokens`: keyward's
//! own credentials for backend services and automation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, JsonOrEmpty, Meta, Query};
use super::keys::bodies::{CreateServiceTokenBody, KeyListParams, RevokeBody, RotateBody};
use super::parse_tenant_id;
use crate::domain::ids::{KeyId, KeyKind, TenantId};
use crate::domain::key::{Key, KeyStatus};
use crate::domain::page::Page;
use crate::domain::permissions::{Permission, TenantScope};
use crate::error::{ApiError, ProblemResponse};
use crate::service::{keys, Context};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(create_platform_token, list_platform_tokens))
        .routes(routes!(get_platform_token))
        .routes(routes!(rotate_platform_token))
        .routes(routes!(revoke_platform_token))
        .routes(routes!(create_tenant_token, list_tenant_tokens))
        .routes(routes!(get_tenant_token))
        .routes(routes!(rotate_tenant_token))
        .routes(routes!(revoke_tenant_token))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceTokenView {
    pub id: KeyId,
    /// Absent for platform-wide tokens.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub permissions: Vec<Permission>,
    #[schema(example = "kw_svc_")]
    pub prefix: String,
    pub start: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub enabled: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<KeyId>,
    pub status: KeyStatus,
}

impl ServiceTokenView {
    fn new(key: Key, now: DateTime<Utc>) -> Self {
        ServiceTokenView {
            status: key.status(now),
            permissions: key.permissions().to_vec(),
            id: key.id,
            tenant_id: key.tenant_id,
            name: key.name,
            prefix: key.prefix,
            start: key.start,
            created_at: key.created_at,
            created_by: key.created_by,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            revoked_reason: key.revoked_reason,
            enabled: key.enabled,
            last_used_at: key.last_used_at,
            rotated_from: key.rotated_from,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedServiceToken {
    pub service_token: ServiceTokenView,
    /// The secret token. Shown this once.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedServiceToken {
    pub service_token: ServiceTokenView,
    pub token: String,
    pub previous: ServiceTokenView,
}

async fn create(
    ctx: &Context,
    caller: &crate::domain::permissions::Caller,
    meta: &crate::domain::audit::RequestMeta,
    owner: TenantScope,
    draft: CreateServiceTokenBody,
) -> Result<(StatusCode, Json<CreatedServiceToken>), ApiError> {
    let issued = keys::create_service_token(ctx, caller, meta, owner, draft.into()).await?;
    let body = CreatedServiceToken {
        token: issued.token.expose().to_owned(),
        service_token: ServiceTokenView::new(issued.key, ctx.clock.now()),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

async fn rotate(
    ctx: &Context,
    caller: &crate::domain::permissions::Caller,
    meta: &crate::domain::audit::RequestMeta,
    owner: TenantScope,
    id: &str,
    draft: RotateBody,
) -> Result<(StatusCode, Json<RotatedServiceToken>), ApiError> {
    let rotated = keys::rotate(ctx, caller, meta, owner, KeyKind::Service, id, draft.into()).await?;
    let now = ctx.clock.now();
    let body = RotatedServiceToken {
        token: rotated.issued.token.expose().to_owned(),
        service_token: ServiceTokenView::new(rotated.issued.key, now),
        previous: ServiceTokenView::new(rotated.previous, now),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Issues a platform-wide service token (needs `tenants:admin`; grants at most the caller's permissions).
#[utoipa::path(
    post, path = "/v1/service-tokens", tag = "service-tokens",
    request_body = CreateServiceTokenBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CreatedServiceToken),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn create_platform_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Json(draft): Json<CreateServiceTokenBody>,
) -> Result<(StatusCode, Json<CreatedServiceToken>), ApiError> {
    create(&ctx, &caller, &meta, TenantScope::Platform, draft).await
}

/// Lists platform-wide service tokens, newest first.
#[utoipa::path(
    get, path = "/v1/service-tokens", tag = "service-tokens",
    params(KeyListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<ServiceTokenView>),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
    )
)]
async fn list_platform_tokens(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Query(query): Query<KeyListParams>,
) -> Result<Json<Page<ServiceTokenView>>, ApiError> {
    let page = keys::list(&ctx, &caller, TenantScope::Platform, KeyKind::Service, query.into()).await?;
    let now = ctx.clock.now();
    Ok(Json(page.map(|k| ServiceTokenView::new(k, now))))
}

/// Reads one platform-wide service token.
#[utoipa::path(
    get, path = "/v1/service-tokens/{token_id}", tag = "service-tokens",
    params(("token_id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ServiceTokenView),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
    )
)]
async fn get_platform_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(token_id): Path<String>,
) -> Result<Json<ServiceTokenView>, ApiError> {
    let key = keys::get(&ctx, &caller, TenantScope::Platform, KeyKind::Service, &token_id).await?;
    Ok(Json(ServiceTokenView::new(key, ctx.clock.now())))
}

/// Rotates a platform-wide service token.
#[utoipa::path(
    post, path = "/v1/service-tokens/{token_id}/rotate", tag = "service-tokens",
    params(("token_id" = String, Path)),
    request_body(content = Option<RotateBody>),
    security(("bearer" = [])),
    responses(
        (status = 201, body = RotatedServiceToken),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse),
    )
)]
async fn rotate_platform_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path(token_id): Path<String>,
    JsonOrEmpty(draft): JsonOrEmpty<RotateBody>,
) -> Result<(StatusCode, Json<RotatedServiceToken>), ApiError> {
    rotate(&ctx, &caller, &meta, TenantScope::Platform, &token_id, draft).await
}

/// Revokes a platform-wide service token.
#[utoipa::path(
    post, path = "/v1/service-tokens/{token_id}/revoke", tag = "service-tokens",
    params(("token_id" = String, Path)),
    request_body(content = Option<RevokeBody>),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ServiceTokenView),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse),
    )
)]
async fn revoke_platform_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path(token_id): Path<String>,
    JsonOrEmpty(draft): JsonOrEmpty<RevokeBody>,
) -> Result<Json<ServiceTokenView>, ApiError> {
    let key = keys::revoke(
        &ctx,
        &caller,
        &meta,
        TenantScope::Platform,
        KeyKind::Service,
        &token_id,
        draft.into(),
    )
    .await?;
    Ok(Json(ServiceTokenView::new(key, ctx.clock.now())))
}

/// Issues a service token bound to one tenant.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/service-tokens", tag = "service-tokens",
    params(("tenant_id" = uuid::Uuid, Path)),
    request_body = CreateServiceTokenBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CreatedServiceToken),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn create_tenant_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path(tenant_id): Path<String>,
    Json(draft): Json<CreateServiceTokenBody>,
) -> Result<(StatusCode, Json<CreatedServiceToken>), ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    create(&ctx, &caller, &meta, owner, draft).await
}

/// Lists a tenant's service tokens, newest first.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/service-tokens", tag = "service-tokens",
    params(("tenant_id" = uuid::Uuid, Path), KeyListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<ServiceTokenView>),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
    )
)]
async fn list_tenant_tokens(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(tenant_id): Path<String>,
    Query(query): Query<KeyListParams>,
) -> Result<Json<Page<ServiceTokenView>>, ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    let page = keys::list(&ctx, &caller, owner, KeyKind::Service, query.into()).await?;
    let now = ctx.clock.now();
    Ok(Json(page.map(|k| ServiceTokenView::new(k, now))))
}

/// Reads one of a tenant's service tokens.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/service-tokens/{token_id}", tag = "service-tokens",
    params(("tenant_id" = uuid::Uuid, Path), ("token_id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ServiceTokenView),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
    )
)]
async fn get_tenant_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path((tenant_id, token_id)): Path<(String, String)>,
) -> Result<Json<ServiceTokenView>, ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    let key = keys::get(&ctx, &caller, owner, KeyKind::Service, &token_id).await?;
    Ok(Json(ServiceTokenView::new(key, ctx.clock.now())))
}

/// Rotates one of a tenant's service tokens.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/service-tokens/{token_id}/rotate", tag = "service-tokens",
    params(("tenant_id" = uuid::Uuid, Path), ("token_id" = String, Path)),
    request_body(content = Option<RotateBody>),
    security(("bearer" = [])),
    responses(
        (status = 201, body = RotatedServiceToken),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse),
    )
)]
async fn rotate_tenant_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, token_id)): Path<(String, String)>,
    JsonOrEmpty(draft): JsonOrEmpty<RotateBody>,
) -> Result<(StatusCode, Json<RotatedServiceToken>), ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    rotate(&ctx, &caller, &meta, owner, &token_id, draft).await
}

/// Revokes one of a tenant's service tokens.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/service-tokens/{token_id}/revoke", tag = "service-tokens",
    params(("tenant_id" = uuid::Uuid, Path), ("token_id" = String, Path)),
    request_body(content = Option<RevokeBody>),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ServiceTokenView),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse),
    )
)]
async fn revoke_tenant_token(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, token_id)): Path<(String, String)>,
    JsonOrEmpty(draft): JsonOrEmpty<RevokeBody>,
) -> Result<Json<ServiceTokenView>, ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    let key = keys::revoke(&ctx, &caller, &meta, owner, KeyKind::Service, &token_id, draft.into()).await?;
    Ok(Json(ServiceTokenView::new(key, ctx.clock.now())))
}
