//! /v1/authorize, the forward-auth endpoint for gateways, driven as nginx and Traefik drive it.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::permissions::Permission;
use keyward::signing::{self, keyward_hmac, Request};
use sha2::Digest;

struct Gateway {
    token: String,
}

impl Gateway {
    async fn new(app: &TestApp) -> Gateway {
        Gateway {
            token: app.service_token(None, &[Permission::KeysVerify]).await,
        }
    }

    /// Sends what nginx's `auth_request` sends for a client request, plus `extra` headers.
    async fn check(&self, app: &TestApp, method: &str, uri: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut request = app
            .client
            .get(format!("{}/v1/authorize", app.base))
            .header("X-Keyward-Gateway-Token", &self.token)
            .header("X-Original-Method", method)
            .header("X-Original-URI", uri);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
}

#[sqlx::test]
async fn a_valid_bearer_key_is_authorized_with_its_identity_in_headers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app
        .key(&tenant, json!({"name": "k", "scopes": ["orders:read", "orders:write"]}))
        .await;
    let gateway = Gateway::new(&app).await;

    let reply = gateway
        .check(&app, "GET", "/orders", &[("Authorization", &format!("Bearer {token}"))])
        .await;

    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["x-keyward-tenant-id"], tenant.as_str());
    assert_eq!(reply.headers()["x-keyward-key-id"], key["id"].as_str().unwrap());
    assert_eq!(reply.headers()["x-keyward-scopes"], "orders:read,orders:write");
}

#[sqlx::test]
async fn x_api_key_and_basic_credentials_are_accepted(pool: PgPool) {
    use base64::Engine;
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k"})).await;
    let gateway = Gateway::new(&app).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", key["id"].as_str().unwrap()));
    let wrong_id = base64::engine::general_purpose::STANDARD.encode(format!("key_01ARZ3NDEKTSV4RRFFQ69G5FAV:{token}"));

    let api_key = gateway.check(&app, "GET", "/", &[("X-API-Key", &token)]).await;
    let basic_ok = gateway
        .check(&app, "GET", "/", &[("Authorization", &format!("Basic {basic}"))])
        .await;
    let basic_bad = gateway
        .check(&app, "GET", "/", &[("Authorization", &format!("Basic {wrong_id}"))])
        .await;

    assert_eq!(api_key.status(), StatusCode::OK);
    assert_eq!(basic_ok.status(), StatusCode::OK);
    assert_eq!(basic_bad.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn no_credentials_is_401_with_a_challenge(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let gateway = Gateway::new(&app).await;

    let reply = gateway.check(&app, "GET", "/orders", &[]).await;

    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers()["www-authenticate"], "Bearer realm=\"keyward\"");
}

#[sqlx::test]
async fn a_revoked_key_is_401_with_its_code(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k"})).await;
    app.post(
        &format!("/v1/tenants/{tenant}/keys/{}/revoke", key["id"].as_str().unwrap()),
        &app.admin,
        json!({}),
    )
    .await;
    let gateway = Gateway::new(&app).await;

    let reply = gateway
        .check(&app, "GET", "/orders", &[("Authorization", &format!("Bearer {token}"))])
        .await;

    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers()["x-keyward-code"], "REVOKED");
    assert!(reply.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
}

#[sqlx::test]
async fn a_missing_required_scope_is_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k", "scopes": ["orders:read"]})).await;
    let gateway = Gateway::new(&app).await;
    let bearer = format!("Bearer {token}");

    let allowed = gateway
        .check(
            &app,
            "GET",
            "/orders",
            &[("Authorization", &bearer), ("X-Keyward-Required-Scopes", "orders:read")],
        )
        .await;
    let refused = gateway
        .check(
            &app,
            "POST",
            "/orders",
            &[
                ("Authorization", &bearer),
                ("X-Keyward-Required-Scopes", "orders:write"),
            ],
        )
        .await;

    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn without_a_gateway_token_the_gateway_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;

    let reply = app
        .client
        .get(format!("{}/v1/authorize", app.base))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();

    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn a_gateway_token_without_keys_verify_is_forbidden(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let gateway = Gateway {
        token: app.service_token(None, &[Permission::KeysRead]).await,
    };

    let reply = gateway.check(&app, "GET", "/", &[("X-API-Key", "sk_live_x")]).await;

    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn an_hmac_signed_request_described_by_x_original_headers_is_authorized(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let key_id = created.body["key"]["id"].as_str().unwrap();
    let secret = created.body["signing_secret"].as_str().unwrap();
    let mut signed = Request::new("GET", "/orders", "page=2").with_header("Host", "api.example.com");
    keyward_hmac::sign(&mut signed, key_id, secret.as_bytes(), app.clock().now()).unwrap();
    let headers: Vec<(&str, &str)> = signed.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let gateway = Gateway::new(&app).await;

    let reply = gateway.check(&app, "GET", "/orders?page=2", &headers).await;
    let replayed = gateway.check(&app, "GET", "/orders?page=2", &headers).await;
    let tampered = gateway.check(&app, "GET", "/orders?page=3", &headers).await;

    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["x-keyward-key-id"], key_id);
    assert_eq!(replayed.headers()["x-keyward-code"], "REPLAYED");
    assert_eq!(tampered.headers()["x-keyward-code"], "SIGNATURE_MISMATCH");
}

#[sqlx::test]
async fn traefik_forwarded_headers_describe_the_original_request(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;
    let gateway = Gateway::new(&app).await;

    let reply = app
        .client
        .get(format!("{}/v1/authorize", app.base))
        .header("X-Keyward-Gateway-Token", &gateway.token)
        .header("X-Forwarded-Method", "DELETE")
        .header("X-Forwarded-Uri", "/orders/7")
        .header("X-Forwarded-Host", "api.example.com")
        .header("X-API-Key", &token)
        .send()
        .await
        .unwrap();

    assert_eq!(reply.status(), StatusCode::OK);
}

#[sqlx::test]
async fn behind_nginx_a_client_sent_x_forwarded_host_cannot_redirect_a_signature(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let key_id = created.body["key"]["id"].as_str().unwrap();
    let secret = created.body["signing_secret"].as_str().unwrap();
    let mut signed = Request::new("GET", "/orders", "").with_header("Host", "a.example.com");
    signing::rfc9421::sign(&mut signed, key_id, secret.as_bytes(), app.clock().now()).unwrap();
    let mut headers: Vec<(&str, &str)> = signed
        .headers
        .iter()
        .filter(|(n, _)| n != "Host")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers.push(("X-Forwarded-Host", "a.example.com"));
    let gateway = Gateway::new(&app).await;

    // reqwest sends Host: 127.0.0.1:<port>, as a request for another host would arrive.
    let reply = gateway.check(&app, "GET", "/orders", &headers).await;

    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers()["x-keyward-code"], "SIGNATURE_MISMATCH");
}

#[sqlx::test]
async fn a_withheld_body_is_accepted_on_its_signed_declared_hash_and_passed_on(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let key_id = created.body["key"]["id"].as_str().unwrap();
    let secret = created.body["signing_secret"].as_str().unwrap();
    let body = br#"{"amount":100}"#.to_vec();
    let hash = hex::encode(sha2::Sha256::digest(&body));
    let host = app.base.trim_start_matches("http://").to_owned();
    let mut signed = Request::new("POST", "/orders", "")
        .with_header("Host", host.as_str())
        .with_header("x-amz-content-sha256", hash.as_str())
        .with_body(signing::Body::Bytes(body));
    let creds = signing::sigv4::Credentials {
        key_id,
        secret: secret.as_bytes(),
        region: "us-east-1",
        service: "keyward",
        session_token: None,
    };
    signing::sigv4::sign(&mut signed, &creds, app.clock().now()).unwrap();
    let mut headers: Vec<(&str, &str)> = signed
        .headers
        .iter()
        .filter(|(n, _)| n != "Host")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers.push(("X-Original-Content-Length", "14"));
    let gateway = Gateway::new(&app).await;

    let reply = gateway.check(&app, "POST", "/orders", &headers).await;

    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["x-keyward-body-sha256"], hash.as_str());
}

#[sqlx::test]
async fn a_withheld_body_without_a_declared_hash_is_unverifiable(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let key_id = created.body["key"]["id"].as_str().unwrap();
    let secret = created.body["signing_secret"].as_str().unwrap();
    let mut signed = Request::new("POST", "/orders", "")
        .with_header("Host", "api.example.com")
        .with_body(signing::Body::Bytes(br#"{"amount":100}"#.to_vec()));
    keyward_hmac::sign(&mut signed, key_id, secret.as_bytes(), app.clock().now()).unwrap();
    let mut headers: Vec<(&str, &str)> = signed.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    headers.push(("X-Original-Content-Length", "14"));
    let gateway = Gateway::new(&app).await;

    let reply = gateway.check(&app, "POST", "/orders", &headers).await;

    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers()["x-keyward-code"], "BODY_UNVERIFIABLE");
}

#[sqlx::test]
async fn basic_credentials_with_a_wrong_key_id_spend_nothing_and_are_recorded(pool: PgPool) {
    use base64::Engine;
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "remaining": 3})).await;
    let gateway = Gateway::new(&app).await;
    let wrong_id = base64::engine::general_purpose::STANDARD.encode(format!("key_01ARZ3NDEKTSV4RRFFQ69G5FAV:{token}"));

    for _ in 0..3 {
        let reply = gateway
            .check(&app, "GET", "/", &[("Authorization", &format!("Basic {wrong_id}"))])
            .await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    }

    let verified = app.verify(&token, &[]).await;
    assert_eq!(verified["code"], "VALID");
    assert_eq!(verified["remaining"], 2);
    app.flush().await;
    let events = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?action=key.verify_failed"),
            &app.admin,
        )
        .await;
    let items = events.body["items"].as_array().unwrap();
    let counted: i64 = items.iter().map(|e| e["details"]["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, 3, "three refusals, in one event per minute");
    assert_eq!(items[0]["target_id"], key["id"]);
    assert_eq!(items[0]["details"]["code"], "NOT_FOUND");
}

#[sqlx::test]
async fn a_body_of_unknown_length_without_a_declared_hash_is_unverifiable(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let key_id = created.body["key"]["id"].as_str().unwrap();
    let secret = created.body["signing_secret"].as_str().unwrap();
    // Signed over no body; nginx's X-Original-Transfer-Encoding says a chunked one follows.
    let mut signed = Request::new("POST", "/orders", "").with_header("Host", "api.example.com");
    keyward_hmac::sign(&mut signed, key_id, secret.as_bytes(), app.clock().now()).unwrap();
    let mut headers: Vec<(&str, &str)> = signed.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    headers.push(("X-Original-Transfer-Encoding", "chunked"));
    let gateway = Gateway::new(&app).await;

    let reply = gateway.check(&app, "POST", "/orders", &headers).await;

    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers()["x-keyward-code"], "BODY_UNVERIFIABLE");
}

#[sqlx::test]
async fn the_open_gateway_cannot_verify_where_the_deployment_does_not_allow_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let gateway = keyward::domain::permissions::Caller::open_gateway();
    let meta = keyward::domain::audit::RequestMeta::default();

    let outcome = keyward::verify::verify_key(&app.ctx, &gateway, &meta, "sk_live_anything", None, &[]).await;

    assert!(
        matches!(outcome, Err(keyward::service::Error::Unauthenticated)),
        "{outcome:?}"
    );
}
