//! `/v1/auth/*` and `/v1/me`: people log in, refresh and end sessions, and accept invitations.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Meta};
use crate::domain::user::{Membership, UserId};
use crate::error::{ApiError, Problem};
use crate::service::identity::{self, Session};
use crate::service::Context;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(accept_invite))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "ann@example.com")]
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInviteRequest {
    /// The `invite_token` from the invitation.
    #[schema(value_type = String)]
    pub token: SecretString,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    /// A JWT for `Authorization: Bearer`, valid for `expires_in` seconds.
    pub access_token: String,
    /// Opaque; trade it at `/v1/auth/refresh` for a new pair. Each works once.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    pub expires_in: i64,
}

impl From<Session> for SessionResponse {
    fn from(session: Session) -> Self {
        SessionResponse {
            access_token: session.access_token,
            refresh_token: session.refresh_token.expose().to_owned(),
            token_type: "Bearer".into(),
            expires_in: session.expires_in,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedInvite {
    pub user_id: UserId,
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub id: UserId,
    pub email: String,
    pub platform_admin: bool,
    pub memberships: Vec<Membership>,
}

fn expose(secret: &SecretString) -> &str {
    secrecy::ExposeSecret::expose_secret(secret)
}

/// Logs in. A wrong password and an unknown email get the same answer; repeated failures are
/// throttled per account and per address (429 with `Retry-After`).
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    Json(request): Json<LoginRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let session = identity::login(&ctx, &meta, &request.email, &request.password).await?;
    Ok(Json(session.into()))
}

/// Trades a refresh token for a new access token and refresh token. Presenting a spent refresh
/// token ends every session descended from the same login.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn refresh(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let session = identity::refresh(&ctx, &meta, expose(&request.refresh_token)).await?;
    Ok(Json(session.into()))
}

/// Ends the session of this refresh token.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "logged out"))
)]
async fn logout(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    Json(request): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    identity::logout(&ctx, &meta, expose(&request.refresh_token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the password of an invited user (the invitation works once, for 72 hours); then log in.
#[utoipa::path(
    post, path = "/v1/auth/accept-invite", tag = "auth",
    request_body = AcceptInviteRequest,
    responses(
        (status = 200, body = AcceptedInvite),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn accept_invite(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    Json(request): Json<AcceptInviteRequest>,
) -> Result<Json<AcceptedInvite>, ApiError> {
    let user = identity::accept_invite(&ctx, &meta, expose(&request.token), &request.password).await?;
    Ok(Json(AcceptedInvite {
        user_id: user.id,
        email: user.email,
    }))
}

/// The logged-in user and their memberships.
#[utoipa::path(
    get, path = "/v1/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, body = MeResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "the credential is a service token", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn me(State(ctx): State<Context>, Authenticated(caller): Authenticated) -> Result<Json<MeResponse>, ApiError> {
    let me = identity::me(&ctx, &caller).await?;
    Ok(Json(MeResponse {
        id: me.user.id,
        email: me.user.email,
        platform_admin: me.user.platform_admin,
        memberships: me.memberships,
    }))
}
