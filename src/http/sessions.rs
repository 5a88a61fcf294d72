//! `/v1/auth/*` and `/v1/me`: people log in, refresh and end sessions, and accept invitations.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, BearerCredential, Json, JsonOrEmpty, MaybeAuthenticated, Meta};
use crate::domain::user::{Membership, UserId};
use crate::error::{ApiError, Problem, ProblemResponse};
use crate::service::accounts;
use crate::service::sessions::{self, Session};
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

/// The body of `/v1/auth/logout`: the refresh token of the session to end, or nothing when the
/// access token is sent as `Authorization: Bearer`.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    #[schema(value_type = Option<String>)]
    pub refresh_token: Option<SecretString>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInviteRequest {
    /// The `invite_token` from the invitation.
    #[schema(value_type = String)]
    pub token: SecretString,
    /// The first password, when the invitation is for a new account. An existing account
    /// accepts while logged in (its access token as `Authorization: Bearer`) and sends none.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
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
        (status = 400, response = ProblemResponse),
        (status = 401, response = ProblemResponse),
        (status = 415, response = ProblemResponse),
        (status = 429, response = ProblemResponse),
        (status = 503, description = "password checks at capacity", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    Json(request): Json<LoginRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let session = sessions::login(&ctx, &meta, &request.email, &request.password).await?;
    Ok(Json(session.into()))
}

/// Trades a refresh token for a new access token and refresh token. Presenting a spent refresh
/// token ends every session descended from the same login.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, response = ProblemResponse),
    )
)]
async fn refresh(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let session = sessions::refresh(&ctx, &meta, expose(&request.refresh_token)).await?;
    Ok(Json(session.into()))
}

/// Ends a session and every access token of it at once: send its refresh token in the body, or
/// no body and its access token as `Authorization: Bearer`.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    request_body(content = Option<LogoutRequest>, description = "optional"),
    responses(
        (status = 204, description = "logged out"),
        (status = 400, response = ProblemResponse),
        (status = 401, description = "neither a refresh token nor a valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = ProblemResponse),
    )
)]
async fn logout(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    BearerCredential(bearer): BearerCredential,
    JsonOrEmpty(request): JsonOrEmpty<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    match (request.refresh_token, bearer) {
        (Some(refresh), _) => sessions::logout(&ctx, &meta, expose(&refresh)).await?,
        (None, Some(access)) => sessions::logout_access_token(&ctx, &meta, &access).await?,
        (None, None) => return Err(crate::service::Error::Unauthenticated.into()),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts an invitation (it works once, for 72 hours, unless replaced or cancelled). For a new
/// account, send its first password; for an existing account, accept while logged in as it
/// (access token as `Authorization: Bearer`), without a password.
#[utoipa::path(
    post, path = "/v1/auth/accept-invite", tag = "auth",
    request_body = AcceptInviteRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = AcceptedInvite),
        (status = 400, response = ProblemResponse),
        (status = 401, description = "the invitation is for an existing account: log in as it first", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = ProblemResponse),
        (status = 409, description = "already a member", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
        (status = 503, description = "password checks at capacity", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn accept_invite(
    State(ctx): State<Context>,
    Meta(meta): Meta,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    Json(request): Json<AcceptInviteRequest>,
) -> Result<Json<AcceptedInvite>, ApiError> {
    let user = accounts::accept_invite(
        &ctx,
        &meta,
        expose(&request.token),
        request.password.as_ref(),
        caller.as_ref(),
    )
    .await?;
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
        (status = 401, response = ProblemResponse),
        (status = 404, description = "the credential is a service token", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn me(State(ctx): State<Context>, Authenticated(caller): Authenticated) -> Result<Json<MeResponse>, ApiError> {
    let me = sessions::me(&ctx, &caller).await?;
    Ok(Json(MeResponse {
        id: me.user.id,
        email: me.user.email,
        platform_admin: me.user.platform_admin,
        memberships: me.memberships,
    }))
}
