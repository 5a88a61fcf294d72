//! Liveness and readiness probes.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::error::{ApiError, ProblemResponse};
use crate::service::Context;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(version))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Version {
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// The git commit built, or `unknown`.
    #[schema(example = "845a4c7d1e2f")]
    pub commit: &'static str,
}

/// The version served, and the commit it was built from.
#[utoipa::path(get, path = "/version", tag = "health", responses((status = 200, body = Version)))]
async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("BUILT_FROM_COMMIT"),
    })
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process is up, its database answers, its change listener is subscribed (without it,
/// revocations made elsewhere would not reach this replica's memory), and its background writers
/// run (the replay store's, without which no signed request is answered, and the usage writer).
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, body = Health),
        (status = 503, response = ProblemResponse),
    )
)]
async fn readyz(State(ctx): State<Context>) -> Result<Json<Health>, ApiError> {
    if !ctx.verify.listening() || !ctx.verify.background_running() {
        return Err(ApiError::Unavailable);
    }
    sqlx::query("SELECT 1")
        .execute(&ctx.pool)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    Ok(Json(Health { status: "ok" }))
}
