//! `POST /v1/verify`: is this customer key good for these scopes?

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Meta};
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::key::Environment;
use crate::domain::verify::VerifyCode;
use crate::error::{ApiError, Problem};
use crate::service::{verify, Context};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(verify_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The customer's token, e.g. `sk_live_…`.
    pub key: String,
    /// Scopes the key must cover.
    #[serde(default)]
    #[schema(example = json!(["billing:read"]))]
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    pub code: VerifyCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<KeyId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Verifies a customer key. Every well-formed call gets 200 with `valid` and a `code`; the key's
/// details come back on `VALID` only. Needs a service token with `keys:verify`; a tenant-bound
/// token sees only its tenant's keys.
#[utoipa::path(
    post, path = "/v1/verify", tag = "verify",
    request_body = VerifyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = VerifyResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn verify_key(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Json(request): Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let verdict = verify::verify_key(&ctx, &caller, &meta, &request.key, &request.scopes).await?;
    let key = verdict.key;
    Ok(Json(VerifyResponse {
        valid: verdict.code == VerifyCode::Valid,
        code: verdict.code,
        tenant_id: key.as_ref().and_then(|k| k.tenant_id),
        environment: key.as_ref().map(|k| k.environment),
        expires_at: key.as_ref().and_then(|k| k.expires_at),
        key_id: key.as_ref().map(|k| k.id.clone()),
        owner_id: key.as_ref().and_then(|k| k.owner_id.clone()),
        metadata: key.as_ref().map(|k| k.metadata.clone()),
        scopes: key.map(|k| k.scopes),
    }))
}
