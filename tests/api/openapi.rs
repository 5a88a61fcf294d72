//! The OpenAPI document: the committed `openapi/openapi.json` is what the code generates, and the
//! server serves that same document at `/openapi.json`.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::TestApp;

fn committed() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .expect("openapi/openapi.json is committed")
}

#[sqlx::test]
async fn the_committed_openapi_json_is_what_the_code_generates(pool: PgPool) {
    let _app = TestApp::spawn(pool).await;

    let generated = keyward::openapi_json();

    assert!(
        generated == committed(),
        "openapi/openapi.json is stale: run `make openapi` and commit"
    );
}

#[sqlx::test]
async fn the_served_openapi_json_includes_the_verify_path(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/openapi.json", None, None).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type().starts_with("application/json"));
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3."));
    assert!(reply.body["paths"]["/v1/verify"]["post"].is_object());
}

#[sqlx::test]
async fn the_served_openapi_json_is_the_committed_document(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/openapi.json", None, None).await;

    let committed: Value = serde_json::from_str(&committed()).unwrap();
    assert!(
        reply.body == committed,
        "/openapi.json differs from openapi/openapi.json: run `make openapi` and commit"
    );
}

#[sqlx::test]
async fn the_document_describes_every_management_route(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/openapi.json", None, None).await;

    let paths = reply.body["paths"].as_object().unwrap();
    for path in [
        "/v1/tenants",
        "/v1/tenants/{tenant_id}",
        "/v1/tenants/{tenant_id}/keys",
        "/v1/tenants/{tenant_id}/keys/{key_id}",
        "/v1/tenants/{tenant_id}/keys/{key_id}/rotate",
        "/v1/tenants/{tenant_id}/keys/{key_id}/revoke",
        "/v1/service-tokens",
        "/v1/service-tokens/{token_id}",
        "/v1/service-tokens/{token_id}/rotate",
        "/v1/service-tokens/{token_id}/revoke",
        "/v1/tenants/{tenant_id}/service-tokens",
        "/v1/tenants/{tenant_id}/service-tokens/{token_id}",
        "/v1/tenants/{tenant_id}/service-tokens/{token_id}/rotate",
        "/v1/tenants/{tenant_id}/service-tokens/{token_id}/revoke",
        "/v1/tenants/{tenant_id}/audit",
        "/v1/audit",
        "/v1/verify",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    assert_eq!(
        reply.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[sqlx::test]
async fn the_audit_listings_document_their_json_page_response(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/openapi.json", None, None).await;

    for path in ["/v1/audit", "/v1/tenants/{tenant_id}/audit"] {
        let ok = &reply.body["paths"][path]["get"]["responses"]["200"];
        let schema = ok["content"]["application/json"]["schema"]["$ref"].as_str();
        assert_eq!(
            schema,
            Some("#/components/schemas/Page_AuditEvent"),
            "{path}: the 200 response documents {ok}"
        );
    }
}

#[sqlx::test]
async fn every_route_documents_the_answers_any_route_can_give(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/openapi.json", None, None).await;

    for (path, item) in reply.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(responses) = operation.get("responses").and_then(|r| r.as_object()) else {
                continue;
            };
            // Every route may be shed (503) under load.
            let mut needed = vec!["408", "503"];
            if path != "/healthz" {
                needed.push("500");
            }
            if operation.get("requestBody").is_some() {
                needed.extend(["400", "413", "415"]);
            }
            for status in needed {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
}
