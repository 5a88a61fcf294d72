//! `GET /v1/audit` (platform review) and `GET /v1/tenants/{tenant_id}/audit`.

use axum::extract::{Path, State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Query};
use super::parse_tenant_id;
use crate::domain::audit::AuditEvent;
use crate::domain::page::Page;
use crate::error::{ApiError, Problem};
use crate::service::audit::{self, AuditQuery};
use crate::service::Context;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(platform_audit))
        .routes(routes!(tenant_audit))
}

/// Every tenant's audit events, newest first (platform credential with `audit:read`).
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<AuditEvent>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn platform_audit(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Page<AuditEvent>>, ApiError> {
    Ok(Json(audit::list(&ctx, &caller, None, query).await?))
}

/// One tenant's audit events, newest first.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/audit", tag = "audit",
    params(("tenant_id" = uuid::Uuid, Path), AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<AuditEvent>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn tenant_audit(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(tenant_id): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Page<AuditEvent>>, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    Ok(Json(audit::list(&ctx, &caller, Some(tenant), query).await?))
}
