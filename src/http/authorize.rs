//! `/v1/authorize`: forward authentication for gateways (nginx `auth_request`, Traefik
//! ForwardAuth, Envoy ext_authz over HTTP). The gateway authenticates itself with
//! `X-Keyward-Gateway-Token`; the end client's credentials travel as the client sent them.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Meta;
use super::verify::VerifyResponse;
use crate::domain::authz::{Caller, Permission, TenantScope};
use crate::domain::ids::{KeyId, KeyKind};
use crate::domain::key::Key;
use crate::domain::verify::VerifyCode;
use crate::error::{ApiError, Problem};
use crate::service::{self, auth, signed, verify, Context};
use crate::signing;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(authorize))
}

pub const GATEWAY_TOKEN: &str = "x-keyward-gateway-token";
pub const REQUIRED_SCOPES: &str = "x-keyward-required-scopes";
/// Headers that describe the original request or the gateway, never signed by the client.
const GATEWAY_HEADERS: [&str; 10] = [
    GATEWAY_TOKEN,
    REQUIRED_SCOPES,
    "x-original-method",
    "x-original-uri",
    ORIGINAL_CONTENT_LENGTH,
    ORIGINAL_TRANSFER_ENCODING,
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
];
const MAX_BODY: usize = 64 * 1024;
/// nginx's `auth_request` cannot pass the body on; the example config sends its length here.
pub const ORIGINAL_CONTENT_LENGTH: &str = "x-original-content-length";
/// The client's `Transfer-Encoding` (nginx: `$http_transfer_encoding`). A chunked body has no
/// length nginx could put in `X-Original-Content-Length`, so any value here means "a body of
/// unknown length".
pub const ORIGINAL_TRANSFER_ENCODING: &str = "x-original-transfer-encoding";

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
        )),
        (status = 401, description = "no or bad credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "a required scope is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn authorize(State(ctx): State<Context>, Meta(meta): Meta, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let gateway = gateway_caller(&ctx, headers).await?;
    let scopes = required_scopes(headers);
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;

    let mut original = original_request(&parts.method, &parts.uri, headers, body.to_vec());
    let mut declared_body_hash = None;
    let (code, key) = if signing::detect(&original).is_some() {
        if body.is_empty() && body_withheld(headers) {
            // The signature can only be checked against the hash it declares; the upstream must
            // hold the body to it (X-Keyward-Body-Sha256).
            match declared_sha256(&original) {
                Some(hash) => {
                    original.body = signing::Body::Sha256(hash);
                    declared_body_hash = Some(hash);
                }
                None => {
                    return Ok(denied(
                        StatusCode::UNAUTHORIZED,
                        Some(VerifyCode::BodyUnverifiable),
                        BODY_DETAIL,
                    ))
                }
            }
        }
        let verdict = signed::verify_request(&ctx, &gateway, &meta, &original, &scopes).await?;
        (verdict.code, verdict.key)
    } else if let Some((token, expected_id)) = presented_key(headers) {
        let verdict = verify::verify_key(&ctx, &gateway, &meta, &token, expected_id.as_deref(), &scopes).await?;
        (verdict.code, verdict.key)
    } else {
        return Ok(denied(StatusCode::UNAUTHORIZED, None, "no credentials were presented"));
    };
    let mut response = answer(code, key);
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

/// Whether the gateway kept a body back: one of a stated length above zero, or one whose length
/// it could not state (any transfer encoding, or a length that is not a number). Only a length
/// of zero, or neither header, means there is no body.
fn body_withheld(headers: &HeaderMap) -> bool {
    let encoded = headers
        .get_all(ORIGINAL_TRANSFER_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().is_empty());
    let withheld_length = headers.get_all(ORIGINAL_CONTENT_LENGTH).iter().any(|v| {
        let text = v.as_bytes().trim_ascii();
        !text.is_empty() && std::str::from_utf8(text).ok().and_then(|t| t.parse::<u64>().ok()) != Some(0)
    });
    encoded || withheld_length
}

/// The body hash a signed request declares in a signed header: SigV4's `x-amz-content-sha256`
/// or an RFC 9530 `Content-Digest` `sha-256` member.
fn declared_sha256(request: &signing::Request) -> Option<[u8; 32]> {
    if let Some(hex_digest) = request.header("x-amz-content-sha256") {
        return hex::decode(hex_digest.trim()).ok()?.try_into().ok();
    }
    signing::content_digest::declared_sha256(request.header("content-digest")?)
}

/// The gateway, by its token; or, where the deployment allows it, an anonymous verifier.
async fn gateway_caller(ctx: &Context, headers: &HeaderMap) -> Result<Caller, ApiError> {
    match headers.get(GATEWAY_TOKEN).and_then(|v| v.to_str().ok()) {
        Some(token) => Ok(auth::authenticate(ctx, token.trim()).await?),
        None if ctx.authorize_open => Ok(Caller::service(
            KeyId::from_trusted("open-gateway".into()),
            TenantScope::Platform,
            vec![Permission::KeysVerify],
        )),
        None => Err(service::Error::Unauthenticated.into()),
    }
}

fn required_scopes(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(REQUIRED_SCOPES)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ' ']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The client's request as the gateway describes it (nginx `X-Original-*`, Traefik
/// `X-Forwarded-*`), or this request itself when the gateway forwards it as is.
fn original_request(
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> signing::Request {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // nginx names the original request in X-Original-*; any X-Forwarded-* beside them came from
    // the client and must not choose the host or scheme a signature is checked against.
    let nginx = text("x-original-method").is_some() || text("x-original-uri").is_some();
    let forwarded = |name: &str| if nginx { None } else { text(name) };
    let method = text("x-original-method")
        .or(forwarded("x-forwarded-method"))
        .unwrap_or(method.as_str());
    let target = text("x-original-uri")
        .or(forwarded("x-forwarded-uri"))
        .map(str::to_owned)
        .unwrap_or_else(|| uri.path_and_query().map_or("/".to_owned(), |pq| pq.as_str().to_owned()));
    let mut request = signing::Request::from_target(method, &target);
    for (name, value) in headers {
        if GATEWAY_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            request.headers.push((name.as_str().to_owned(), value.to_owned()));
        }
    }
    if let Some(host) = forwarded("x-forwarded-host") {
        request.set_header("host", host);
    }
    request.scheme = forwarded("x-forwarded-proto").map(str::to_owned);
    request.body = signing::Body::Bytes(body);
    request
}

/// A plain key: `Authorization: Bearer`, `X-API-Key`, or `Authorization: Basic` with the key id
/// as user name (which must then match the key).
fn presented_key(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(token) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        return Some((token.trim().to_owned(), None));
    }
    if let Some(token) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some((token.trim().to_owned(), None));
    }
    let basic = authorization.and_then(|v| v.strip_prefix("Basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(basic.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, token) = text.split_once(':')?;
    let id = KeyId::parse(KeyKind::Customer, id).map(|id| id.as_str().to_owned());
    Some((token.to_owned(), Some(id.unwrap_or_else(|| "-".into()))))
}

fn answer(code: VerifyCode, key: Option<Key>) -> Response {
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
                key.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
            );
            set("x-keyward-key-id", key.id.to_string());
            set("x-keyward-scopes", key.scopes.join(","));
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
