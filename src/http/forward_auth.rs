//! `/v1/authorize`: forward authentication for gateways (nginx `auth_request`, Traefik
//! ForwardAuth, Envoy ext_authz over HTTP). The gateway authenticates itself with
//! `X-Keyward-Gateway-Token`; the end client's credentials travel as the client sent them.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::credentials;
use super::extract::Meta;
use super::verify::{RateLimitState, VerifyResponse};
use crate::domain::ids::{KeyId, KeyKind};
use crate::domain::permissions::Caller;
use crate::error::{ApiError, Problem};
use crate::service::{self, callers, Context};
use crate::verify::forward_auth::{self, Checked, Forwarded, PresentedKey};
use crate::verify::{Verifiable, VerifyCode};
use std::sync::Arc;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(authorize))
}

const MAX_BODY: usize = 64 * 1024;

/// Checks the original request's credentials: a signed request (SigV4, RFC 9421, the
/// `X-Keyward-*` HMAC headers, x-arrow, SigV2), `Authorization: Bearer <key>`, `X-API-Key: <key>`
/// or `Authorization: Basic base64(<key id>:<key>)`. 200 with `X-Keyward-Tenant-Id`,
/// `X-Keyward-Key-Id` and `X-Keyward-Scopes`; 401 with `WWW-Authenticate` for missing or bad
/// credentials; 403 when scopes named in `X-Keyward-Required-Scopes` are missing.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options), path = "/v1/authorize", tag = "verify",
    params(
        ("X-Keyward-Gateway-Token" = Option<String>, Header, description = "the gateway's service token (keys:verify)"),
        ("X-Keyward-Required-Scopes" = Option<String>, Header, description = "comma-separated scopes the key must cover"),
        ("X-Original-Method" = Option<String>, Header, description = "nginx: the client's method"),
        ("X-Original-URI" = Option<String>, Header, description = "nginx: the client's request target"),
        ("X-Original-Content-Length" = Option<String>, Header, description = "nginx: the client's Content-Length (the body is not passed on)"),
        ("X-Original-Transfer-Encoding" = Option<String>, Header, description = "nginx: the client's Transfer-Encoding; any value means a body of unknown length"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Traefik: the client's method"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "Traefik: the client's request target"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "Traefik: the client's host"),
    ),
    responses(
        (status = 200, description = "authorized", body = VerifyResponse, headers(
            ("X-Keyward-Tenant-Id" = String), ("X-Keyward-Key-Id" = String), ("X-Keyward-Scopes" = String),
            ("RateLimit-Limit" = Option<i32>, description = "keys with a rate limit: the limit"),
            ("RateLimit-Remaining" = Option<i32>, description = "calls still free in the window"),
            ("RateLimit-Reset" = Option<i64>, description = "seconds until the window next slides"),
        )),
        (status = 401, description = "no or bad credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "a required scope is missing", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "the forwarded body is larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "the key's rate limit is used up", body = Problem, content_type = "application/problem+json", headers(
            ("X-Keyward-Code" = String),
            ("Retry-After" = i64, description = "seconds until the window next slides"),
            ("RateLimit-Limit" = i32), ("RateLimit-Remaining" = i32), ("RateLimit-Reset" = i64),
        )),
    )
)]
async fn authorize(State(ctx): State<Context>, Meta(meta): Meta, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let gateway = gateway(&ctx, &parts.headers).await?;
    let body = crate::http::extract::body_within(body, MAX_BODY).await?;
    let forwarded = Forwarded {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: body.to_vec(),
        presented: presented_key(&parts.headers),
    };
    let checked = forward_auth::check(&ctx, &gateway, &meta, forwarded).await?;
    let (verdict, declared_body_hash) = match checked {
        Checked::Verified {
            verdict,
            declared_body_hash,
        } => (verdict, declared_body_hash),
        Checked::BodyUnverifiable => {
            return Ok(denied(
                StatusCode::UNAUTHORIZED,
                Some(VerifyCode::BodyUnverifiable),
                BODY_DETAIL,
            ))
        }
        Checked::NoCredentials => return Ok(denied(StatusCode::UNAUTHORIZED, None, "no credentials were presented")),
    };
    let rate = verdict.rate.map(|rate| RateLimitState::new(rate, ctx.clock.now()));
    let mut response = answer(verdict.code, verdict.key);
    if let Some(rate) = rate {
        set_rate_headers(&mut response, &rate);
    }
    if let (StatusCode::OK, Some(hash)) = (response.status(), declared_body_hash) {
        if let Ok(value) = HeaderValue::from_str(&hex::encode(hash)) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("x-keyward-body-sha256"), value);
        }
    }
    Ok(response)
}

const BODY_DETAIL: &str = "the gateway did not pass the body on, and the signature does not declare its hash \
    (send x-amz-content-sha256 or a signed Content-Digest, or verify at /v1/verify/request)";

/// A plain key: `Authorization: Bearer`, `X-API-Key`, or `Authorization: Basic` with the key id
/// as user name (which must then match the key).
fn presented_key(headers: &HeaderMap) -> Option<PresentedKey> {
    if let Some(token) = credentials::bearer(headers) {
        return Some(PresentedKey {
            token,
            expected_id: None,
        });
    }
    if let Some(token) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(PresentedKey {
            token: token.trim().to_owned(),
            expected_id: None,
        });
    }
    let (id, token) = credentials::basic(headers)?;
    let id = KeyId::parse(KeyKind::Customer, &id).map(|id| id.as_str().to_owned());
    Some(PresentedKey {
        token,
        expected_id: Some(id.unwrap_or_else(|| "-".into())),
    })
}

/// The gateway, by its `X-Keyward-Gateway-Token`; or, where the deployment allows it, the open
/// gateway, which may verify and nothing else.
async fn gateway(ctx: &Context, headers: &HeaderMap) -> Result<Caller, service::Error> {
    match headers.get(forward_auth::GATEWAY_TOKEN).and_then(|v| v.to_str().ok()) {
        Some(token) => callers::authenticate(ctx, token.trim()).await,
        None if ctx.verify.settings().open_gateway => Ok(Caller::open_gateway()),
        None => Err(service::Error::Unauthenticated),
    }
}

fn answer(code: VerifyCode, key: Option<Arc<Verifiable>>) -> Response {
    match (code, key) {
        (VerifyCode::Valid, Some(key)) => {
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            let mut set = |name: &'static str, value: String| {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            };
            set(
                "x-keyward-tenant-id",
                key.tenant_id().map(|t| t.to_string()).unwrap_or_default(),
            );
            set("x-keyward-key-id", key.id().to_string());
            set("x-keyward-scopes", key.grants().names().join(","));
            set("x-keyward-code", code.as_str().to_owned());
            response
        }
        (VerifyCode::RateLimited, _) => denied(
            StatusCode::TOO_MANY_REQUESTS,
            Some(code),
            "the key's rate limit is used up",
        ),
        (VerifyCode::InsufficientScope, _) => {
            denied(StatusCode::FORBIDDEN, Some(code), "the key lacks a required scope")
        }
        (code, _) => denied(StatusCode::UNAUTHORIZED, Some(code), "the credentials were refused"),
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds) for a rate-limited key, and
/// `Retry-After` when the limit refused the call.
fn set_rate_headers(response: &mut Response, rate: &RateLimitState) {
    let limited = response.status() == StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    let reset = rate.reset.max(1).to_string();
    for (name, value) in [
        ("ratelimit-limit", rate.limit.to_string()),
        ("ratelimit-remaining", rate.remaining.to_string()),
        ("ratelimit-reset", reset.clone()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if limited {
        if let Ok(value) = HeaderValue::from_str(&reset) {
            headers.insert(header::RETRY_AFTER, value);
        }
    }
}

fn denied(status: StatusCode, code: Option<VerifyCode>, detail: &str) -> Response {
    let code_text = code.map_or("MISSING", VerifyCode::as_str);
    let slug = match status {
        StatusCode::FORBIDDEN => "insufficient-scope",
        StatusCode::TOO_MANY_REQUESTS => "rate-limited",
        _ => "unauthorized",
    };
    let mut response = Problem::new(status, slug, format!("{detail} ({code_text})")).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(code_text) {
        headers.insert(HeaderName::from_static("x-keyward-code"), value);
    }
    if status == StatusCode::UNAUTHORIZED {
        let challenge = match code {
            Some(_) => "Bearer realm=\"keyward\", error=\"invalid_token\"",
            None => "Bearer realm=\"keyward\"",
        };
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}
