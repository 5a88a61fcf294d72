//! The HTTP API: one module per resource with thin handlers, plus the middleware stack.

pub mod audit;
mod checkpoints;
pub mod credentials;
mod csv;
pub mod extract;
pub mod forward_auth;
pub mod health;
pub mod keys;
pub mod members;
mod per_client;
pub mod server;
pub mod service_tokens;
pub mod sessions;
pub mod tenants;
pub mod usage;
pub mod verify;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::domain::ids::TenantId;
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::service::{self, Context};

pub const MAX_BODY_BYTES: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward",
        description = "Multi-tenant API-key management: issue, rotate, scope, verify and audit API keys.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::domain::validation::FieldError), responses(crate::error::ProblemResponse)),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kw_svc_… service token or JWT access token")
                    .build(),
            ),
        );
    }
}

fn api() -> OpenApiRouter<Context> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(tenants::router())
        .merge(keys::router())
        .merge(service_tokens::router())
        .merge(verify::router())
        .merge(audit::router())
        .merge(checkpoints::router())
        .merge(usage::router())
        .merge(sessions::router())
        .merge(members::router())
        .merge(forward_auth::router())
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    with_common_responses(api().into_openapi())
}

/// Adds to every operation the answers the middleware and extractors can give on any route, so
/// that the document lists every status a route can answer: 408 (the request timeout) everywhere;
/// 500 and 503 (the database failed, is unreachable or too slow) wherever the database is
/// used, which is everywhere but `/healthz`; 400, 413 and 415 wherever a JSON body is read.
fn with_common_responses(mut spec: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{Ref, RefOr};
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            // 408: the request timeout; 503: shed beyond KEYWARD_MAX_IN_FLIGHT, or (with 500)
            // the database.
            let mut statuses = vec!["408", "503"];
            if path != "/healthz" {
                statuses.push("500");
            }
            if operation.request_body.is_some() {
                statuses.extend(["400", "413", "415"]);
            }
            for status in statuses {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("ProblemResponse")));
            }
        }
    }
    spec
}

/// The whole application: routes, the spec at `/openapi.json`, and the middleware stack. At
/// most `max_in_flight` requests are handled at once, and `max_in_flight_per_client` for one
/// client (`per_client`); beyond either a request is shed at once with 503 and `Retry-After`
/// instead of waiting in a queue.
pub fn router(ctx: Context, limits: crate::config::ServerLimits) -> Router {
    let per_client = per_client::PerClient::new(limits.max_in_flight_per_client, ctx.trusted_proxies.clone());
    let (routes, spec) = api().split_for_parts();
    let spec = with_common_responses(spec);
    let spec_json = spec.to_pretty_json().unwrap_or_default();
    let request_id = HeaderName::from_static("x-request-id");
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec_json) }),
        )
        .route("/metrics", axum::routing::get(metrics))
        .fallback(|| async { Problem::for_status(StatusCode::NOT_FOUND) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The path only: query strings and headers may carry credentials.
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(middleware::from_fn(drop_unfit_request_id))
        .layer(middleware::from_fn_with_state(per_client, per_client::limit))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async { ApiError::Overloaded },
                ))
                .load_shed()
                // One limit for every route (a plain concurrency limit would be one per route).
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.max_in_flight)),
        )
        .layer(middleware::from_fn_with_state(ctx.metrics.clone(), observe_request))
        .with_state(ctx)
}

/// Counts each request by method, route template and status, with its latency, and logs it in
/// one line at `info` (target `keyward::request`): method, route template, status, latency,
/// request id and caller id. Never the path as sent (it may hold ids a log should not collect
/// in bulk), a query string or a header.
async fn observe_request(
    State(metrics): State<std::sync::Arc<crate::metrics::Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = crate::metrics::method_label(req.method().as_str());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let caller = extract::CallerOfRequest::default();
    req.extensions_mut().insert(caller.clone());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.request(method, route.as_deref(), status, elapsed.as_secs_f64());
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .filter(|id| id.len() <= extract::MAX_REQUEST_ID_LEN)
        .unwrap_or("-");
    tracing::info!(
        target: "keyward::request",
        method,
        route = route.as_deref().unwrap_or("unmatched"),
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        request_id,
        caller = caller.get().unwrap_or("-"),
        "request"
    );
    response
}

/// `GET /metrics`: Prometheus (OpenMetrics text); no credentials, and nothing in it names a key,
/// a tenant or a path as requested.
async fn metrics(State(ctx): State<Context>) -> Response {
    let (cached_by_hash, cached_by_id) = ctx.verify.cached_keys();
    let readings = crate::metrics::Readings {
        cached_by_hash,
        cached_by_id,
        lookup_batches: ctx.verify.lookup_batches(),
        dropped_outcomes: ctx.verify.dropped_outcomes(),
        listening: ctx.verify.listening(),
        pool_size: ctx.pool.size(),
        pool_idle: u64::try_from(ctx.pool.num_idle()).unwrap_or(u64::MAX),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.render(readings),
    )
        .into_response()
}

/// A request id the caller sent is kept (in the response, the logs and the audit events it
/// causes) when it is 1 to 128 characters of letters, digits and `-_.:/+=@`; any other is
/// dropped, so that a new one is made for the request.
async fn drop_unfit_request_id(mut req: Request, next: Next) -> Response {
    let fit = |id: &HeaderValue| {
        let id = id.as_bytes();
        (1..=extract::MAX_REQUEST_ID_LEN).contains(&id.len())
            && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
    };
    let ids = req.headers().get_all("x-request-id");
    let mut ids = ids.iter();
    let keep = matches!((ids.next(), ids.next()), (Some(id), None) if fit(id));
    if !keep {
        req.headers_mut().remove("x-request-id");
    }
    next.run(req).await
}

/// Error responses made outside the handlers (unknown route, wrong method, timeout) get a
/// problem+json body like every other error.
async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let mut replaced = Problem::for_status(status).into_response();
        if let Some(allow) = response.headers().get(header::ALLOW) {
            replaced.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return replaced;
    }
    response
}

/// Tenant ids in paths are UUIDs; anything else names no tenant.
pub fn parse_tenant_id(text: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(text).ok_or(ApiError::Service(service::Error::NotFound("tenant")))
}
