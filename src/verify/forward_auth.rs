//! Forward authentication for gateways (nginx `auth_request`, Traefik ForwardAuth, Envoy
//! ext_authz over HTTP): the client's request as the gateway describes it, its credentials as
//! the client sent them, and the verdict on them. The HTTP layer turns the [`Checked`] answer
//! into the status and headers gateways act on.

use axum::http::{HeaderMap, Method, Uri};

use super::{verify_key, verify_request, Verdict};
use crate::domain::audit::RequestMeta;
use crate::domain::permissions::Caller;
use crate::service::{Context, Result};
use crate::signing;

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
/// nginx's `auth_request` cannot pass the body on; the example config sends its length here.
pub const ORIGINAL_CONTENT_LENGTH: &str = "x-original-content-length";
/// The client's `Transfer-Encoding` (nginx: `$http_transfer_encoding`). A chunked body has no
/// length nginx could put in `X-Original-Content-Length`, so any value here means "a body of
/// unknown length".
pub const ORIGINAL_TRANSFER_ENCODING: &str = "x-original-transfer-encoding";

/// A plain key the client presented, and the key id it named beside it (Basic credentials),
/// which must then be the key's.
pub struct PresentedKey {
    pub token: String,
    pub expected_id: Option<String>,
}

/// The request a gateway forwards: what it says of the client's request, and the plain key the
/// client presented, if any.
pub struct Forwarded<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The body as far as the gateway passed it on (nginx passes none).
    pub body: Vec<u8>,
    pub presented: Option<PresentedKey>,
}

/// What a gateway's request earned.
pub enum Checked {
    /// The credentials were checked; `declared_body_hash` is the body hash a signature was
    /// checked against when the gateway kept the body back (the upstream must hold the body to it).
    Verified {
        verdict: Box<Verdict>,
        declared_body_hash: Option<[u8; 32]>,
    },
    /// A signed request whose body the gateway kept back, and whose signature does not declare
    /// the body's hash: it cannot be checked here.
    BodyUnverifiable,
    /// The request carries no credentials at all.
    NoCredentials,
}

/// Checks the client's credentials against the scopes named in `X-Keyward-Required-Scopes`: a
/// signed request (any scheme of `signing`) when the request is signed, else the `presented`
/// plain key.
pub async fn check(ctx: &Context, gateway: &Caller, meta: &RequestMeta, forwarded: Forwarded<'_>) -> Result<Checked> {
    let Forwarded {
        method,
        uri,
        headers,
        body,
        presented,
    } = forwarded;
    let scopes = required_scopes(headers);
    let body_is_empty = body.is_empty();
    let mut original = original_request(method, uri, headers, body);
    if signing::detect(&original).is_some() {
        let mut declared_body_hash = None;
        if body_is_empty && body_withheld(headers) {
            match declared_sha256(&original) {
                Some(hash) => {
                    original.body = signing::Body::Sha256(hash);
                    declared_body_hash = Some(hash);
                }
                None => return Ok(Checked::BodyUnverifiable),
            }
        }
        let verdict = verify_request(ctx, gateway, meta, &original, &scopes).await?;
        return Ok(Checked::Verified {
            verdict: Box::new(verdict),
            declared_body_hash,
        });
    }
    match presented {
        Some(PresentedKey { token, expected_id }) => {
            let verdict = verify_key(ctx, gateway, meta, &token, expected_id.as_deref(), &scopes).await?;
            Ok(Checked::Verified {
                verdict: Box::new(verdict),
                declared_body_hash: None,
            })
        }
        None => Ok(Checked::NoCredentials),
    }
}

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
fn original_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: Vec<u8>) -> signing::Request {
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
