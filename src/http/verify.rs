//! `POST /v1/verify`: is this customer key good for these scopes?

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Meta};
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::key::Environment;
use crate::domain::validation::ValidationErrors;
use crate::error::{ApiError, ProblemResponse};
use crate::service::Context;
use crate::signing::{self, Scheme};
use crate::verify::{self, RateStatus, Verdict, VerifyCode};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(verify_key))
        .routes(routes!(verify_request))
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
    /// Signed requests: the scheme the request was signed with (`aws-sigv4`, `hmac`, `rfc9421`,
    /// `arrow`, `aws-sigv2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub scheme: Option<Scheme>,
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
    /// For keys with a usage limit: verifications left after this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    /// For keys with a rate limit (also when it refused the call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimitState>,
}

/// A key's rate limit after this call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RateLimitState {
    #[schema(example = 100)]
    pub limit: i32,
    /// Calls still free in the window, as far as this replica knows.
    #[schema(example = 42)]
    pub remaining: i32,
    /// Seconds until the window next slides (a tenth of the window), freeing what the oldest
    /// counted bucket holds.
    #[schema(example = 6)]
    pub reset: i64,
}

impl RateLimitState {
    pub fn new(rate: RateStatus, now: DateTime<Utc>) -> Self {
        let millis = (rate.reset - now).num_milliseconds().max(0);
        RateLimitState {
            limit: rate.limit,
            remaining: rate.remaining,
            reset: (millis + 999) / 1000,
        }
    }
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
        (status = 400, response = ProblemResponse),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn verify_key(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Json(request): Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let verdict = verify::verify_key(&ctx, &caller, &meta, &request.key, None, &request.scopes).await?;
    Ok(Json(VerifyResponse::new(verdict, ctx.clock.now())))
}

impl VerifyResponse {
    pub fn new(verdict: Verdict, now: DateTime<Utc>) -> Self {
        let Verdict {
            code,
            scheme,
            key,
            remaining,
            rate,
        } = verdict;
        VerifyResponse {
            valid: code == VerifyCode::Valid,
            code,
            remaining,
            ratelimit: rate.map(|rate| RateLimitState::new(rate, now)),
            scheme,
            tenant_id: key.as_ref().and_then(|k| k.tenant_id()),
            environment: key.as_ref().map(|k| k.environment()),
            expires_at: key.as_ref().and_then(|k| k.expires_at()),
            key_id: key.as_ref().map(|k| k.id().clone()),
            owner_id: key.as_ref().and_then(|k| k.owner_id().map(str::to_owned)),
            metadata: key.as_ref().map(|k| k.metadata()),
            scopes: key.map(|k| k.grants().names().into_iter().map(str::to_owned).collect()),
        }
    }
}

/// A request as a gateway or backend received it, for `POST /v1/verify/request`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedRequestBody {
    #[schema(example = "GET")]
    pub method: String,
    /// As it appeared on the wire, still percent-encoded, without the query.
    #[schema(example = "/v1/orders")]
    pub path: String,
    /// The raw query after `?`; empty when there is none.
    #[serde(default)]
    pub query: String,
    /// Header fields in arrival order, repeats kept, each `[name, value]`. A `Host` is expected.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<String>>, example = json!([["host", "api.example.com"]]))]
    pub headers: Vec<(String, String)>,
    /// The body, base64; or give `body_sha256` instead.
    pub body_base64: Option<String>,
    /// Hex SHA-256 of the body, when the body itself is not sent.
    pub body_sha256: Option<String>,
    /// `https` (default) or `http`, as the client used it.
    pub url_scheme: Option<String>,
    /// Scopes the key must cover.
    #[serde(default)]
    pub scopes: Vec<String>,
}

const MAX_PATH_LEN: usize = 8192;

impl SignedRequestBody {
    fn into_request(self) -> Result<signing::Request, ValidationErrors> {
        use base64::Engine;
        let mut errors = ValidationErrors::default();
        if self.method.is_empty() || self.method.len() > 32 || !self.method.bytes().all(|b| b.is_ascii_graphic()) {
            errors.add("method", "must be an HTTP method, e.g. GET");
        }
        if !self.path.starts_with('/') || self.path.len() > MAX_PATH_LEN || self.path.chars().any(char::is_control) {
            errors.add(
                "path",
                "must start with '/', without control characters, at most 8192 bytes",
            );
        }
        if self.query.len() > MAX_PATH_LEN || self.query.chars().any(char::is_control) {
            errors.add("query", "must be at most 8192 bytes, without control characters");
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let bad_name = name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            let bad_value = value.chars().any(|c| c.is_control() && c != '\t');
            if bad_name || bad_value {
                errors.add(
                    format!("headers[{i}]"),
                    "must be a header name and a value without line breaks",
                );
            }
        }
        let body = match (self.body_base64, self.body_sha256) {
            (Some(_), Some(_)) => {
                errors.add("body_sha256", "give either body_base64 or body_sha256, not both");
                signing::Body::default()
            }
            (Some(text), None) => match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => signing::Body::Bytes(bytes),
                Err(_) => {
                    errors.add("body_base64", "must be standard base64");
                    signing::Body::default()
                }
            },
            (None, Some(hex_digest)) => {
                match hex::decode(&hex_digest).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                    Some(digest) => signing::Body::Sha256(digest),
                    None => {
                        errors.add("body_sha256", "must be 64 hex characters");
                        signing::Body::default()
                    }
                }
            }
            (None, None) => signing::Body::default(),
        };
        if let Some(scheme) = &self.url_scheme {
            if scheme != "https" && scheme != "http" {
                errors.add("url_scheme", "must be https or http");
            }
        }
        errors.finish(signing::Request {
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            body,
            scheme: self.url_scheme,
        })
    }
}

/// Verifies a signed request: AWS Signature Version 4 (header or presigned URL), the plain
/// `X-Keyward-*` HMAC headers, RFC 9421 HTTP Message Signatures (hmac-sha256), the `x-arrow-*`
/// profile, or AWS Signature Version 2 where the tenant enables it. Every well-formed call gets
/// 200 with `valid`, `code` and `scheme`.
#[utoipa::path(
    post, path = "/v1/verify/request", tag = "verify",
    request_body = SignedRequestBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = VerifyResponse),
        (status = 400, response = ProblemResponse),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn verify_request(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Json(body): Json<SignedRequestBody>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let scopes = body.scopes.clone();
    let request = body.into_request().map_err(crate::service::Error::from)?;
    let verdict = verify::verify_request(&ctx, &caller, &meta, &request, &scopes).await?;
    Ok(Json(VerifyResponse::new(verdict, ctx.clock.now())))
}
