//! `/v1/tenants/{tenant_id}/members`: invite people, list them, change roles, remove them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, Meta, Query};
use super::parse_tenant_id;
use super::tenants::PageQuery;
use crate::domain::page::Page;
use crate::domain::user::{Role, UserId};
use crate::error::{ApiError, Problem};
use crate::repo::users::Member;
use crate::service::members::{self, InviteDraft, MemberPatch};
use crate::service::Context;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(invite_member, list_members))
        .routes(routes!(get_member, update_member, remove_member))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// False until the person has set a password.
    pub active: bool,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        MemberView {
            user_id: m.user_id,
            email: m.email,
            role: m.role,
            joined_at: m.joined_at,
            active: m.active,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitedMember {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    /// One-time token for `/v1/auth/accept-invite`, valid 72 hours; the membership exists once
    /// it is accepted. Send it to the person; keyward stores only its hash.
    pub invite_token: String,
    pub invite_expires_at: DateTime<Utc>,
}

/// Invites a person by email with a role (owners only).
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/members", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path)),
    request_body = InviteDraft,
    security(("bearer" = [])),
    responses(
        (status = 201, body = InvitedMember),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn invite_member(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path(tenant_id): Path<String>,
    Json(draft): Json<InviteDraft>,
) -> Result<(StatusCode, Json<InvitedMember>), ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    let invited = members::invite(&ctx, &caller, &meta, tenant, draft).await?;
    let body = InvitedMember {
        user_id: invited.user_id,
        email: invited.email,
        role: invited.role,
        invite_token: invited.token.expose().to_owned(),
        invite_expires_at: invited.expires_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Lists a tenant's members.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/members", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<MemberView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_members(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(tenant_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<MemberView>>, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    let page = members::list(&ctx, &caller, tenant, query.cursor.as_deref(), query.limit).await?;
    Ok(Json(page.map(MemberView::from)))
}

/// Reads one member.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/members/{user_id}", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), ("user_id" = uuid::Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = MemberView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_member(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path((tenant_id, user_id)): Path<(String, String)>,
) -> Result<Json<MemberView>, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    Ok(Json(members::get(&ctx, &caller, tenant, &user_id).await?.into()))
}

/// Changes a member's role (owners only); the last owner cannot be demoted.
#[utoipa::path(
    patch, path = "/v1/tenants/{tenant_id}/members/{user_id}", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), ("user_id" = uuid::Uuid, Path)),
    request_body = MemberPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, body = MemberView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "last owner", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_member(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, user_id)): Path<(String, String)>,
    Json(patch): Json<MemberPatch>,
) -> Result<Json<MemberView>, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    Ok(Json(
        members::update(&ctx, &caller, &meta, tenant, &user_id, patch)
            .await?
            .into(),
    ))
}

/// Removes a member (owners only); the last owner cannot be removed. Their sessions lose access at once.
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}/members/{user_id}", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), ("user_id" = uuid::Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "removed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "last owner", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove_member(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    members::remove(&ctx, &caller, &meta, tenant, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
