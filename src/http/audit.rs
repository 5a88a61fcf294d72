//! `GET /v1/audit` (platform review) and `GET /v1/tenants/{tenant_id}/audit`: JSON pages, or a
//! streamed export of every matching event as NDJSON or CSV, chosen by the `Accept` header.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::csv::csv_field;
use super::extract::{Authenticated, Json, Query};
use super::parse_tenant_id;
use crate::domain::audit::AuditEvent;
use crate::domain::audit::Outcome;
use crate::domain::ids::TenantId;
use crate::domain::page::Page;
use crate::domain::permissions::Caller;
use crate::error::{ApiError, ProblemResponse};
use crate::service::audit::{self, AuditQuery};
use crate::service::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(platform_audit))
        .routes(routes!(tenant_audit))
}

const NDJSON: &str = "application/x-ndjson";
const CSV: &str = "text/csv";

#[derive(Clone, Copy)]
enum Export {
    Ndjson,
    Csv,
}

fn export_format(headers: &HeaderMap) -> Option<Export> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    if accept.contains(NDJSON) {
        Some(Export::Ndjson)
    } else if accept.contains(CSV) {
        Some(Export::Csv)
    } else {
        None
    }
}

const CSV_COLUMNS: [&str; 15] = [
    "id",
    "occurred_at",
    "tenant_id",
    "actor_kind",
    "actor_id",
    "action",
    "target_kind",
    "target_id",
    "outcome",
    "request_id",
    "ip",
    "user_agent",
    "details",
    "prev_hash",
    "hash",
];

fn csv_line(event: &AuditEvent) -> String {
    let json = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let value = serde_json::to_value(event).unwrap_or_default();
    let fields: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_field(&json(&value[*c]))).collect();
    fields.join(",") + "\r\n"
}

async fn respond(
    ctx: &Context,
    caller: &Caller,
    tenant: Option<TenantId>,
    query: AuditQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(format) = export_format(headers) else {
        return Ok(Json(audit::list(ctx, caller, tenant, query).await?).into_response());
    };
    let events = audit::export(ctx, caller, tenant, query).await?;
    let header_line = match format {
        Export::Csv => Some(Ok::<Bytes, sqlx::Error>(Bytes::from(CSV_COLUMNS.join(",") + "\r\n"))),
        Export::Ndjson => None,
    };
    let rows = futures_util::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|item| (item, events))
    });
    let lines = futures_util::StreamExt::map(rows, move |item| {
        item.map(|event| match format {
            Export::Ndjson => Bytes::from(serde_json::to_string(&event).unwrap_or_default() + "\n"),
            Export::Csv => Bytes::from(csv_line(&event)),
        })
    });
    let body = futures_util::StreamExt::chain(futures_util::stream::iter(header_line), lines);
    let content_type = match format {
        Export::Ndjson => NDJSON,
        Export::Csv => "text/csv; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(body)).into_response())
}

/// Every tenant's audit events, newest first (platform credential with `audit:read`). With
/// `Accept: application/x-ndjson` or `text/csv`, every matching event is streamed, oldest first.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of events, or with `Accept` every matching event streamed", content(
            (Page<AuditEvent> = "application/json"),
            (AuditEvent = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn platform_audit(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    Query(query): Query<AuditParams>,
) -> Result<Response, ApiError> {
    respond(&ctx, &caller, None, query.into(), &headers).await
}

/// One tenant's audit events, newest first; streamed export with `Accept` as on `/v1/audit`.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/audit", tag = "audit",
    params(("tenant_id" = uuid::Uuid, Path), AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of events, or with `Accept` every matching event streamed", content(
            (Page<AuditEvent> = "application/json"),
            (AuditEvent = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn tenant_audit(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
    Query(query): Query<AuditParams>,
) -> Result<Response, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    respond(&ctx, &caller, Some(tenant), query.into(), &headers).await
}

/// Query of `GET /v1/audit` and `GET /v1/tenants/{tenant_id}/audit`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Platform listing only: events of this tenant.
    pub tenant_id: Option<TenantId>,
    /// Actor id, e.g. a service token id.
    pub actor: Option<String>,
    /// Dotted action, e.g. `key.created`.
    pub action: Option<String>,
    /// Target id, e.g. a key id.
    pub target: Option<String>,
    /// Text (3 to 256 characters) that the target id or the details contain, case-insensitive.
    pub q: Option<String>,
    pub outcome: Option<Outcome>,
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events before this time.
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

impl From<AuditParams> for AuditQuery {
    fn from(body: AuditParams) -> Self {
        AuditQuery {
            tenant_id: body.tenant_id,
            actor: body.actor,
            action: body.action,
            target: body.target,
            q: body.q,
            outcome: body.outcome,
            since: body.since,
            until: body.until,
            cursor: body.cursor,
            limit: body.limit,
        }
    }
}
