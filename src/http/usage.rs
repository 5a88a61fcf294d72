//! `GET /v1/tenants/{tenant_id}/usage`: verification counts per key and owner, as JSON, or the
//! buckets as CSV with `Accept: text/csv`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::csv::csv_line;
use super::extract::{Authenticated, Json, Query};
use super::parse_tenant_id;
use crate::domain::usage::{UsageDraft, UsageReport};
use crate::error::{ApiError, ProblemResponse};
use crate::service::{usage, Context};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(tenant_usage))
}

/// Query of `GET /v1/tenants/{tenant_id}/usage`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Only this key's verifications.
    pub key_id: Option<String>,
    /// Only the verifications of keys with this `owner_id`.
    pub owner_id: Option<String>,
    /// `minute`, `hour` (the default) or `day`.
    pub granularity: Option<String>,
    /// From this time (rounded down to a bucket); default: an hour of minutes, a day of hours or
    /// 30 days before `until`.
    pub since: Option<DateTime<Utc>>,
    /// Up to this time (rounded up to a bucket); default: now.
    pub until: Option<DateTime<Utc>>,
}

const CSV_COLUMNS: [&str; 5] = ["start", "key_id", "owner_id", "code", "count"];

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"))
}

fn csv(report: &UsageReport) -> String {
    let mut text = csv_line(CSV_COLUMNS);
    for row in &report.series {
        let start = row.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let count = row.count.to_string();
        text += &csv_line([
            start.as_str(),
            row.key_id.as_deref().unwrap_or(""),
            row.owner_id.as_deref().unwrap_or(""),
            row.code.as_str(),
            count.as_str(),
        ]);
    }
    text
}

/// Verifications of the tenant's keys by code: each bucket, and totals per key, per owner, for
/// tokens that matched no key, and overall (`keys:read`). Counts are written by each replica
/// about once a second.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/usage", tag = "usage",
    params(("tenant_id" = uuid::Uuid, Path), UsageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the counts; with `Accept: text/csv` the buckets as CSV", content(
            (UsageReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = 401, response = ProblemResponse),
        (status = 403, response = ProblemResponse),
        (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse),
    )
)]
async fn tenant_usage(
    State(ctx): State<Context>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
    Query(params): Query<UsageParams>,
) -> Result<Response, ApiError> {
    let tenant = parse_tenant_id(&tenant_id)?;
    let draft = UsageDraft {
        key_id: params.key_id,
        owner_id: params.owner_id,
        granularity: params.granularity,
        since: params.since,
        until: params.until,
    };
    let report = usage::report(&ctx, &caller, tenant, draft).await?;
    if wants_csv(&headers) {
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv(&report)).into_response());
    }
    Ok(Json(report).into_response())
}
