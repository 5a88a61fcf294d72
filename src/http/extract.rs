//! Request extractors whose failures are problem+json: JSON bodies, queries, the authenticated
//! caller and the request's origin for the audit trail.

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::{header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

use crate::config::TrustedProxies;
use crate::domain::audit::RequestMeta;
use crate::domain::permissions::Caller;
use crate::error::{redact_values, ApiError};
use crate::service::{self, callers, Context};

/// A JSON request body with problem+json rejections. Deserializer messages are passed on
/// without field paths and with quoted values redacted, so nothing the caller sent (possibly a
/// secret in the wrong place) is echoed back.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || (v.starts_with("application/") && v.ends_with("+json")))
}

/// How long a request body may take to arrive, all of it: a client trickling its body holds an
/// in-flight slot (and a connection) no longer than this, not for the whole request timeout.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn read_body<S: Send + Sync>(req: axum::extract::Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, axum::body::Bytes::from_request(req, state))
        .await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|rejection| match rejection.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::BadRequest("the request body could not be read".into()),
        })
}

/// `body`, at most `limit` bytes, within [`BODY_TIMEOUT`].
pub async fn body_within(body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|_| ApiError::PayloadTooLarge)
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        let what = match error.classify() {
            serde_json::error::Category::Data => "the JSON body does not fit this endpoint",
            _ => "the body is not valid JSON",
        };
        ApiError::BadRequest(format!("{what}: {}", redact_values(&error.to_string())))
    })
}

/// `axum::extract::Query` with problem+json rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

fn bearer(parts: &Parts) -> Option<String> {
    super::credentials::bearer(&parts.headers)
}

/// The caller, authenticated by `Authorization: Bearer <service token or access token>`.
pub struct Authenticated(pub Caller);

impl FromRequestParts<Context> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        let bearer = bearer(parts).ok_or(service::Error::Unauthenticated)?;
        let caller = callers::authenticate(ctx, &bearer).await?;
        CallerOfRequest::note(parts, &caller);
        Ok(Authenticated(caller))
    }
}

/// Who a request turned out to be from, for its log line: the request log middleware puts an
/// empty one in the request, and authenticating fills it (with the caller's id, never its
/// credential).
#[derive(Clone, Default)]
pub struct CallerOfRequest(std::sync::Arc<std::sync::OnceLock<String>>);

impl CallerOfRequest {
    fn note(parts: &Parts, caller: &Caller) {
        if let Some(slot) = parts.extensions.get::<CallerOfRequest>() {
            let actor = caller.actor();
            let _ = slot.0.set(format!("{}:{}", actor.kind.as_str(), actor.id));
        }
    }

    /// The caller's `kind:id`, once authenticated.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The caller if the request names one: no `Authorization` header is `None`, a credential
/// that does not authenticate is refused like for `Authenticated`.
pub struct MaybeAuthenticated(pub Option<Caller>);

impl FromRequestParts<Context> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(bearer) => {
                let caller = callers::authenticate(ctx, &bearer).await?;
                CallerOfRequest::note(parts, &caller);
                Ok(MaybeAuthenticated(Some(caller)))
            }
            None if parts.headers.contains_key(header::AUTHORIZATION) => Err(service::Error::Unauthenticated.into()),
            None => Ok(MaybeAuthenticated(None)),
        }
    }
}

/// The raw bearer credential, if any, for calls that act on the credential itself (logout).
pub struct BearerCredential(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BearerCredential {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(BearerCredential(bearer(parts)))
    }
}

/// Where the request came from, for audit events.
pub struct Meta(pub RequestMeta);

pub(crate) const MAX_REQUEST_ID_LEN: usize = 128;
const MAX_USER_AGENT_LEN: usize = 512;

impl FromRequestParts<Context> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        let text = |name: &str, max: usize| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= max)
                .map(str::to_owned)
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Meta(RequestMeta {
            request_id: text("x-request-id", MAX_REQUEST_ID_LEN),
            ip: peer.map(|peer| client_address(peer, &parts.headers, &ctx.trusted_proxies)),
            user_agent: text("user-agent", MAX_USER_AGENT_LEN),
        }))
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4
/// clients) are the IPv4 address they carry, so every rule keyed on an address (throttles, the
/// audit trail) treats an IPv4 client alike on any listener.
pub(crate) fn client_address(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.trusts(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .map(|hop| hop.to_canonical())
        .collect();
    hops.into_iter().rev().find(|hop| !trusted.trusts(*hop)).unwrap_or(peer)
}

/// A JSON body that may also be left out entirely, meaning `T::default()`.
pub struct JsonOrEmpty<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrEmpty<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(JsonOrEmpty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn an_ipv4_mapped_peer_is_its_ipv4_address() {
        let peer: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            client_address(peer, &axum::http::HeaderMap::new(), &TrustedProxies::default()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_address(peer, &forwarded("198.51.100.1"), &TrustedProxies::default()),
            peer
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let edge: IpAddr = "10.0.0.1".parse().unwrap();
        let headers = forwarded("1.2.3.4, 198.51.100.7, 10.0.0.1");
        assert_eq!(
            client_address(proxy, &headers, &TrustedProxies::new(vec![proxy.into(), edge.into()])),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }
}
