//! The HTTP error type and its one mapping to RFC 9457 `application/problem+json`.

use axum::extract::rejection::QueryRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::permissions::Denied;
use crate::domain::validation::FieldError;
use crate::service;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:keyward:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// The one error response every route documents: `(status = 4xx, response = ProblemResponse)`.
#[derive(utoipa::ToResponse)]
#[response(description = "RFC 9457 problem details", content_type = "application/problem+json")]
pub struct ProblemResponse(#[allow(dead_code)] Problem);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] service::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("send the body as JSON with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the database is not reachable")]
    Unavailable,
    #[error("too many requests in flight")]
    Overloaded,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:keyward:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
        }
    }

    /// The problem for a bare error status produced outside the handlers (routing, timeouts).
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, detail) = match status {
            StatusCode::NOT_FOUND => ("not-found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "this method is not allowed on this resource"),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "the request body is larger than 64 KiB"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "unsupported content type"),
            s if s.is_server_error() => ("internal", "an internal error occurred"),
            _ => ("bad-request", "the request could not be processed"),
        };
        Problem::new(status, slug, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyward\""),
            );
        }
        response
    }
}

impl ApiError {
    pub fn problem(&self) -> Problem {
        use service::Error as S;
        match self {
            ApiError::Service(S::Validation(errors)) => Problem {
                errors: Some(errors.0.clone()),
                ..Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "some fields are not valid; see `errors`",
                )
            },
            ApiError::Service(S::Unauthenticated) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send a valid service token or access token as `Authorization: Bearer <token>`",
            ),
            ApiError::Service(S::NotAuthenticated(detail)) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", *detail)
            }
            ApiError::Service(S::Busy) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "password checks are at capacity; retry in a second",
            ),
            ApiError::Service(S::Denied(Denied::NotFound)) => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
            }
            ApiError::Service(S::Denied(denied)) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", denied.to_string())
            }
            ApiError::Service(S::NotFound(what)) => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", format!("{what} not found"))
            }
            ApiError::Service(S::InvalidLogin) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-login",
                "the email or password is wrong",
            ),
            ApiError::Service(S::Throttled(seconds)) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("too many failed attempts; retry in {seconds} seconds"),
            ),
            ApiError::Service(S::NotConfigured(what)) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-configured", *what)
            }
            ApiError::Service(S::Password(_)) => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR),
            ApiError::Service(S::TenantSuspended(detail)) => {
                Problem::new(StatusCode::CONFLICT, "tenant-suspended", *detail)
            }
            ApiError::Service(S::AlreadyMember(detail)) => {
                Problem::new(StatusCode::CONFLICT, "already-member", *detail)
            }
            ApiError::Service(S::LastOwner(detail)) => Problem::new(StatusCode::CONFLICT, "last-owner", *detail),
            ApiError::Service(S::AlreadyExists(detail)) => {
                Problem::new(StatusCode::CONFLICT, "already-exists", *detail)
            }
            ApiError::Service(S::KeyRevoked(detail)) => Problem::new(StatusCode::CONFLICT, "key-revoked", *detail),
            ApiError::Service(S::KeyExpired(detail)) => Problem::new(StatusCode::CONFLICT, "key-expired", *detail),
            ApiError::Service(S::KeyRotated(detail)) => {
                Problem::new(StatusCode::CONFLICT, "key-rotated", detail.clone())
            }
            ApiError::Service(S::ConcurrentChange(detail)) => {
                Problem::new(StatusCode::CONFLICT, "concurrent-change", *detail)
            }
            ApiError::Service(S::SecretUndecryptable(_)) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "secret-undecryptable",
                "a signing secret does not decrypt with the configured master keys",
            ),
            ApiError::Service(S::Database(error)) if crate::db::is_timeout(error) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is too slow to answer right now; try again shortly",
            ),
            ApiError::Service(S::Database(error)) if crate::db::is_unreachable(error) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is not reachable; try again shortly",
            ),
            ApiError::Overloaded => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests are being handled right now; try again shortly",
            ),
            ApiError::Unavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is not reachable; try again shortly",
            ),
            ApiError::Service(S::Database(_)) => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR),
            ApiError::BadRequest(detail) => Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail.clone()),
            ApiError::PayloadTooLarge => Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE),
            ApiError::BodyTimeout => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {} seconds",
                    crate::http::extract::BODY_TIMEOUT.as_secs()
                ),
            ),
            ApiError::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                self.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        // Every server-side failure is logged once, here, with what the client is not told.
        if problem.status >= 500 {
            match &self {
                ApiError::Service(service::Error::Password(error)) => {
                    tracing::error!(%error, "password hashing failed")
                }
                // Expected under overload or an outage: the client is told to retry.
                error @ (ApiError::Service(service::Error::Busy) | ApiError::Unavailable) => {
                    tracing::warn!(%error, kind = %problem.kind, "request refused")
                }
                // Shed under load: logging each would add to the load.
                ApiError::Overloaded => tracing::debug!("request shed"),
                ApiError::Service(service::Error::Database(error)) if crate::db::is_unreachable(error) => {
                    tracing::warn!(%error, "the database is not reachable")
                }
                ApiError::Service(service::Error::Database(error)) if crate::db::is_timeout(error) => {
                    tracing::warn!(%error, "database statement timed out")
                }
                ApiError::Service(service::Error::Database(error)) => tracing::error!(%error, "database error"),
                error => tracing::error!(%error, kind = %problem.kind, "request failed"),
            }
        }
        let mut response = problem.into_response();
        let retry_after = match &self {
            ApiError::Service(service::Error::Throttled(seconds)) => Some(*seconds),
            ApiError::Service(service::Error::Busy) | ApiError::Overloaded | ApiError::Unavailable => Some(1),
            ApiError::Service(service::Error::Database(error))
                if crate::db::is_unreachable(error) || crate::db::is_timeout(error) =>
            {
                Some(1)
            }
            _ => None,
        };
        if let Some(value) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(redact_values(&rejection.body_text()))
    }
}

/// Deserializer messages quote the offending value, which may be a secret sent in the wrong
/// field. No submitted value is passed on: double-quoted values are dropped, and so is every
/// back-quoted one except the names keyward itself lists (what was expected, a missing or
/// duplicate field) and an unknown field's name when it looks like a field name (a short
/// identifier), so neither a password sent as `role`, a number sent as a string nor a secret sent
/// as a key is echoed.
pub fn redact_values(message: &str) -> String {
    const OURS: [&str; 6] = [
        "expected ",
        "one of ",
        "`, ",
        "` or ",
        "missing field ",
        "duplicate field ",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open] as char;
        out.push_str(&rest[..open]);
        let named_by_us = OURS.iter().any(|ours| out.ends_with(ours));
        let after_unknown_field = out.ends_with("unknown field ");
        out.push(quote);
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            out.push('…');
            return out;
        };
        let inner = &after[..close];
        let field_name = after_unknown_field && looks_like_a_field_name(inner);
        if quote == '`' && inner.len() <= 32 && (named_by_us || field_name) {
            out.push_str(inner);
        } else {
            out.push('…');
        }
        out.push(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn looks_like_a_field_name(name: &str) -> bool {
    (1..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted_but_field_names_kept() {
        let message = "invalid type: string \"sk_live_abc\", expected a sequence at line 1 column 9";
        assert_eq!(
            redact_values(message),
            "invalid type: string \"…\", expected a sequence at line 1 column 9"
        );
        let message = "unknown field `colour`, expected one of `name`, `scopes`";
        assert_eq!(redact_values(message), message);
        let long = format!("unknown variant `{}`, expected `live`", "x".repeat(60));
        assert_eq!(redact_values(&long), "unknown variant `…`, expected `live`");
    }

    #[test]
    fn a_submitted_number_is_not_echoed() {
        let message = "invalid type: integer `4711`, expected a string at line 1 column 12";
        assert_eq!(
            redact_values(message),
            "invalid type: integer `…`, expected a string at line 1 column 12"
        );
    }

    #[test]
    fn a_submitted_variant_is_never_echoed_however_short() {
        let message = "unknown variant `hunter2`, expected one of `owner`, `admin`";
        assert_eq!(
            redact_values(message),
            "unknown variant `…`, expected one of `owner`, `admin`"
        );
    }

    #[test]
    fn an_unknown_field_is_echoed_only_when_it_looks_like_a_field_name() {
        let message = "unknown field `Sk-Live-0123456789`, expected `name`";
        assert_eq!(redact_values(message), "unknown field `…`, expected `name`");
    }
}
