//! keyward: multi-tenant API-key management. Issue, rotate, scope, verify and audit API keys.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod audit_sinks;
pub mod background;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod repo;
pub mod service;
pub mod signing;
pub mod verify;

/// The OpenAPI document as pretty JSON, exactly as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut json = http::openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
