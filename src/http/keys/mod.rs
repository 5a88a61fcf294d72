//! `/v1/tenants/{tenant_id}/keys`: customer API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, JsonOrEmpty, Meta, Query};
use super::parse_tenant_id;
use crate::domain::ids::{KeyId, KeyKind, TenantId};
use crate::domain::key::{Environment, Key, KeyStatus, RateLimit};
use crate::domain::page::Page;
use crate::domain::permissions::TenantScope;
use crate::error::{ApiError, Problem, ProblemResponse};
use crate::service::{keys, Context};
use bodies::{CreateKeyBody, KeyListParams, PatchKeyBody, RevokeBody, RotateBody};

pub mod bodies;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
}

/// A customer API key as the API shows it: never its token or hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: KeyId,
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub environment: Environment,
    #[schema(example = "sk_live_")]
    pub prefix: String,
    /// The first four characters after the prefix, to tell keys apart.
    pub start: String,
    pub scopes: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub owner_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub enabled: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<KeyId>,
    /// Whether the key has a signing secret for signed requests.
    pub signing: bool,
    /// Verifications left (absent: unlimited).
    pub remaining: Option<i64>,
    pub rate_limit: Option<RateLimit>,
    pub status: KeyStatus,
}

impl KeyView {
    pub fn new(key: Key, now: DateTime<Utc>) -> Self {
        let status = key.status(now);
        KeyView {
            id: key.id,
            tenant_id: key.tenant_id,
            name: key.name,
            environment: key.environment,
            prefix: key.prefix,
            start: key.start,
            scopes: key.grants.names().into_iter().map(str::to_owned).collect(),
            metadata: key.metadata,
            owner_id: key.owner_id,
            created_at: key.created_at,
            created_by: key.created_by,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            revoked_reason: key.revoked_reason,
            enabled: key.enabled,
            last_used_at: key.last_used_at,
            rotated_from: key.rotated_from,
            signing: key.signing_secret.is_some(),
            remaining: key.remaining,
            rate_limit: key.rate_limit,
            status,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// The secret token. Shown this once; keyward keeps only its SHA-256.
    #[schema(example = "sk_live_…")]
    pub token: String,
    /// With `signing: true`: the signing secret, shown this once. Its UTF-8 bytes are the HMAC key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// The new key.
    pub key: KeyView,
    /// The new key's token, shown this once.
    pub token: String,
    /// The old key, now expiring at the end of the grace period.
    pub previous: KeyView,
    /// The new key's signing secret, when the old key had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// Issues a key; the response carries its token, shown only this once.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/keys", tag = "keys",
    params(("tenant_id" = uuid::Uuid, Path)),
    request_body = CreateKeyBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CreatedKey),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, description = "tenant suspended", body = Problem, content_type = "application/problem+json"),
        (status = 422, response = ProblemResponse),
    )
)]
async fn create_key(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path(tenant_id): Path<String>,
    Json(draft): Json<CreateKeyBody>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    let issued = keys::create_key(&ctx, &caller, &meta, tenant, draft.into()).await?;
    let now = ctx.clock.now();
    let body = CreatedKey {
        token: issued.token.expose().to_owned(),
        signing_secret: issued.signing_secret.as_ref().map(|s| s.expose_secret().to_owned()),
        key: KeyView::new(issued.key, now),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Lists keys, newest first.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/keys", tag = "keys",
    params(("tenant_id" = uuid::Uuid, Path), KeyListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<KeyView>),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn list_keys(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(tenant_id): Path<String>,
    Query(query): Query<KeyListParams>,
) -> Result<Json<Page<KeyView>>, ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    let page = keys::list(&ctx, &caller, owner, KeyKind::Customer, query.into()).await?;
    let now = ctx.clock.now();
    Ok(Json(page.map(|k| KeyView::new(k, now))))
}

/// Reads one key.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/keys/{key_id}", tag = "keys",
    params(("tenant_id" = uuid::Uuid, Path), ("key_id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyView),
        (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
    )
)]
async fn get_key(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path((tenant_id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    let key = keys::get(&ctx, &caller, owner, KeyKind::Customer, &key_id).await?;
    Ok(Json(KeyView::new(key, ctx.clock.now())))
}

/// Changes a key's name, scopes, metadata, owner, expiry or enabled flag.
#[utoipa::path(
    patch, path = "/v1/tenants/{tenant_id}/keys/{key_id}", tag = "keys",
    params(("tenant_id" = uuid::Uuid, Path), ("key_id" = String, Path)),
    request_body = PatchKeyBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyView),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, description = "key revoked", body = Problem, content_type = "application/problem+json"),
        (status = 422, response = ProblemResponse),
    )
)]
async fn update_key(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, key_id)): Path<(String, String)>,
    Json(draft): Json<PatchKeyBody>,
) -> Result<Json<KeyView>, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    let key = keys::update_key(&ctx, &caller, &meta, tenant, &key_id, draft.into()).await?;
    Ok(Json(KeyView::new(key, ctx.clock.now())))
}

/// Issues a successor key with the same settings; the old one stays valid for the grace period.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/keys/{key_id}/rotate", tag = "keys",
    params(("tenant_id" = uuid::Uuid, Path), ("key_id" = String, Path)),
    request_body(content = Option<RotateBody>, description = "optional; empty body means the default grace period"),
    security(("bearer" = [])),
    responses(
        (status = 201, body = RotatedKey),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, description = "key revoked or expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, response = ProblemResponse),
    )
)]
async fn rotate_key(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, key_id)): Path<(String, String)>,
    JsonOrEmpty(draft): JsonOrEmpty<RotateBody>,
) -> Result<(StatusCode, Json<RotatedKey>), ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    let rotated = keys::rotate(&ctx, &caller, &meta, owner, KeyKind::Customer, &key_id, draft.into()).await?;
    let now = ctx.clock.now();
    let body = RotatedKey {
        token: rotated.issued.token.expose().to_owned(),
        signing_secret: rotated
            .issued
            .signing_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        key: KeyView::new(rotated.issued.key, now),
        previous: KeyView::new(rotated.previous, now),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Revokes a key at once and for good.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/keys/{key_id}/revoke", tag = "keys",
    params(("tenant_id" = uuid::Uuid, Path), ("key_id" = String, Path)),
    request_body(content = Option<RevokeBody>, description = "optional reason"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyView),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, description = "already revoked", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke_key(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, key_id)): Path<(String, String)>,
    JsonOrEmpty(draft): JsonOrEmpty<RevokeBody>,
) -> Result<Json<KeyView>, ApiError> {
    let owner = TenantScope::Tenant(parse_tenant_id(&tenant_id)?);
    let key = keys::revoke(&ctx, &caller, &meta, owner, KeyKind::Customer, &key_id, draft.into()).await?;
    Ok(Json(KeyView::new(key, ctx.clock.now())))
}
