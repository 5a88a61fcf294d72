//! `/v1/tenants/{tenant_id}/members`: invite people, list them, change roles, remove them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Authenticated, Json, JsonOrEmpty, Meta, Query};
use super::parse_tenant_id;
use super::tenants::PageQuery;
use crate::domain::member::{Invitation, Member};
use crate::domain::page::Page;
use crate::domain::user::{Role, UserId};
use crate::error::{ApiError, Problem, ProblemResponse};
use crate::service::members;
use crate::service::Context;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(invite_member, list_members))
        .routes(routes!(get_member, update_member, remove_member))
        .routes(routes!(list_invitations))
        .routes(routes!(cancel_invitation))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteDraft {
    #[schema(example = "ann@example.com")]
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub role: Role,
}

/// Options for removing a member (the body of `DELETE …/members/{user_id}` is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRemoval {
    /// Also revoke every service token of the tenant this member created (default false:
    /// tokens belong to the tenant and keep working).
    #[serde(default)]
    pub revoke_tokens: bool,
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

/// An invitation. It says nothing about whether an account with the address already exists.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitedMember {
    /// The invitation's id, for `DELETE …/invitations/{invitation_id}`.
    pub id: uuid::Uuid,
    /// The address as it was sent.
    pub email: String,
    pub role: Role,
    /// One-time token for `/v1/auth/accept-invite`, valid 72 hours; the membership exists once
    /// it is accepted. Send it to the person; keyward stores only its hash.
    pub invite_token: String,
    pub invite_expires_at: DateTime<Utc>,
}

/// Invites a person by email with a role (owners only), replacing any pending invitation of
/// theirs. Nobody may offer a role that carries a permission they do not hold (403).
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/members", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path)),
    request_body = InviteDraft,
    security(("bearer" = [])),
    responses(
        (status = 201, body = InvitedMember),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, description = "already a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, response = ProblemResponse),
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
    let invited = members::invite(&ctx, &caller, &meta, tenant, &draft.email, draft.role).await?;
    let body = InvitedMember {
        id: invited.id,
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
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
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
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
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

/// Changes a member's role (owners only); the last owner cannot be demoted, nobody may give a
/// role that carries a permission they do not hold (403), and the member's pending invitations
/// are voided.
#[utoipa::path(
    patch, path = "/v1/tenants/{tenant_id}/members/{user_id}", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), ("user_id" = uuid::Uuid, Path)),
    request_body = MemberPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, body = MemberView),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
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
        members::update(&ctx, &caller, &meta, tenant, &user_id, patch.role)
            .await?
            .into(),
    ))
}

/// Removes a member (owners only); the last owner cannot be removed. Their sessions lose access
/// at once and their pending invitations are voided. The service tokens they created keep
/// working (they belong to the tenant) unless the body asks `{"revoke_tokens": true}`.
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}/members/{user_id}", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), ("user_id" = uuid::Uuid, Path)),
    request_body(content = Option<MemberRemoval>, description = "optional"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "removed"),
        (status = 400, response = ProblemResponse),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 409, description = "last owner", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = ProblemResponse),
    )
)]
async fn remove_member(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, user_id)): Path<(String, String)>,
    JsonOrEmpty(options): JsonOrEmpty<MemberRemoval>,
) -> Result<StatusCode, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    members::remove(&ctx, &caller, &meta, tenant, &user_id, options.revoke_tokens).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: uuid::Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The actor (`user` or service token id) who sent it.
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
}

impl From<Invitation> for InvitationView {
    fn from(i: Invitation) -> Self {
        InvitationView {
            id: i.id,
            email: i.email,
            role: i.role,
            created_at: i.created_at,
            created_by: i.created_by,
            expires_at: i.expires_at,
        }
    }
}

/// Lists the tenant's pending invitations (those who may invite).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/invitations", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<InvitationView>),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn list_invitations(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Path(tenant_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<InvitationView>>, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    let page = members::list_invitations(&ctx, &caller, tenant, query.cursor.as_deref(), query.limit).await?;
    Ok(Json(page.map(InvitationView::from)))
}

/// Cancels a pending invitation; its token stops working at once.
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}/invitations/{invitation_id}", tag = "members",
    params(("tenant_id" = uuid::Uuid, Path), ("invitation_id" = uuid::Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "cancelled"),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, description = "no such pending invitation", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_invitation(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    Meta(meta): Meta,
    Path((tenant_id, invitation_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    members::cancel_invitation(&ctx, &caller, &meta, tenant, &invitation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
