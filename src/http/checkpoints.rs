//! The audit chains' signed checkpoints and the public keys that verify them:
//! `GET /v1/audit/checkpoints` (the platform chain), `GET /v1/tenants/{tenant_id}/audit/checkpoints`
//! and `GET /v1/audit/public-key` (for anyone: a public key is no secret).

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Query};
use super::parse_tenant_id;
use crate::domain::audit::{AuditPublicKey, Checkpoint};
use crate::domain::page::Page;
use crate::error::{ApiError, ProblemResponse};
use crate::service::audit::{self, CheckpointQuery};
use crate::service::Context;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(platform_checkpoints))
        .routes(routes!(tenant_checkpoints))
        .routes(routes!(public_key))
}

/// Paging of the checkpoint listings.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckpointParams {
    pub cursor: Option<String>,
    /// 1 to 200 (default 50).
    pub limit: Option<i64>,
}

impl From<CheckpointParams> for CheckpointQuery {
    fn from(params: CheckpointParams) -> Self {
        CheckpointQuery {
            cursor: params.cursor,
            limit: params.limit,
        }
    }
}

/// The platform chain's signed checkpoints, newest first (platform credential, `audit:read`).
#[utoipa::path(
    get, path = "/v1/audit/checkpoints", tag = "audit",
    params(CheckpointParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of checkpoints", body = Page<Checkpoint>),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn platform_checkpoints(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Query(params): Query<CheckpointParams>,
) -> Result<Json<Page<Checkpoint>>, ApiError> {
    Ok(Json(audit::checkpoints(&ctx, &caller, None, params.into()).await?))
}

/// One tenant's chain's signed checkpoints, newest first.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/audit/checkpoints", tag = "audit",
    params(("tenant_id" = uuid::Uuid, Path), CheckpointParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of checkpoints", body = Page<Checkpoint>),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn tenant_checkpoints(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(tenant_id): Path<String>,
    Query(params): Query<CheckpointParams>,
) -> Result<Json<Page<Checkpoint>>, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    Ok(Json(
        audit::checkpoints(&ctx, &caller, Some(tenant), params.into()).await?,
    ))
}

/// The audit keys' public halves.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicKeys {
    /// The key signing new checkpoints (`null`: this deployment signs none).
    pub current: Option<String>,
    /// Every key that has signed checkpoints, oldest first, and the current one.
    pub keys: Vec<AuditPublicKey>,
}

/// The public keys that verify checkpoints: no credential needed.
#[utoipa::path(
    get, path = "/v1/audit/public-key", tag = "audit",
    responses(
        (status = 200, description = "the audit keys' public halves", body = PublicKeys),
        (status = 503, response = ProblemResponse),
    )
)]
async fn public_key(State(ctx): State<Context>) -> Result<Json<PublicKeys>, ApiError> {
    Ok(Json(PublicKeys {
        current: ctx.audit_key.as_ref().map(|key| key.id().to_owned()),
        keys: audit::public_keys(&ctx).await?,
    }))
}
