//! POST /v1/verify/request: signed requests of every scheme, checked against real keys, the
//! server's clock and the tenant's settings.

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::permissions::Permission;
use keyward::signing::{self, keyward_hmac, sigv2, sigv4, Body, Request};

/// Issues a signing key in `tenant`; returns (key id, signing secret).
async fn signing_key(app: &TestApp, tenant: &str, scopes: &[&str]) -> (String, String) {
    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true, "scopes": scopes}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (
        reply.body["key"]["id"].as_str().unwrap().to_owned(),
        reply.body["signing_secret"].as_str().unwrap().to_owned(),
    )
}

fn request(path: &str, query: &str) -> Request {
    Request::new("POST", path, query)
        .with_header("Host", "api.example.com")
        .with_header("Content-Type", "application/json")
        .with_body(Body::Bytes(br#"{"amount":100}"#.to_vec()))
}

fn hmac_signed(key_id: &str, secret: &str, at: DateTime<Utc>) -> Request {
    let mut req = request("/v1/orders", "b=2&a=1");
    keyward_hmac::sign(&mut req, key_id, secret.as_bytes(), at).unwrap();
    req
}

async fn verify_as(app: &TestApp, verifier: &str, req: &Request, scopes: &[&str]) -> Value {
    let body = match &req.body {
        Body::Bytes(bytes) => json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        _ => Value::Null,
    };
    let reply = app
        .post(
            "/v1/verify/request",
            verifier,
            json!({"method": req.method, "path": req.path, "query": req.query, "headers": req.headers,
                   "body_base64": body, "scopes": scopes}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

async fn verify(app: &TestApp, req: &Request) -> Value {
    verify_as(app, &app.admin, req, &[]).await
}

#[sqlx::test]
async fn hmac_signed_request_is_valid_and_names_its_scheme(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &["orders:write"]).await;

    let answer = verify_as(
        &app,
        &app.admin,
        &hmac_signed(&key_id, &secret, app.clock().now()),
        &["orders:write"],
    )
    .await;

    assert_eq!(answer["valid"], true);
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["scheme"], "hmac");
    assert_eq!(answer["key_id"], key_id.as_str());
    assert_eq!(answer["tenant_id"], tenant.as_str());
}

#[sqlx::test]
async fn changing_any_signed_part_is_a_signature_mismatch(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let signed = hmac_signed(&key_id, &secret, app.clock().now());
    type Tamper = Box<dyn Fn(&mut Request)>;
    let tamperings: Vec<(&str, Tamper)> = vec![
        ("method", Box::new(|r| r.method = "PUT".into())),
        ("path", Box::new(|r| r.path = "/v1/orderz".into())),
        ("query value", Box::new(|r| r.query = "b=3&a=1".into())),
        (
            "body",
            Box::new(|r| r.body = Body::Bytes(br#"{"amount":999}"#.to_vec())),
        ),
    ];

    for (what, tamper) in tamperings {
        let mut req = signed.clone();
        tamper(&mut req);
        assert_eq!(verify(&app, &req).await["code"], "SIGNATURE_MISMATCH", "{what}");
    }
}

#[sqlx::test]
async fn a_signature_from_the_wrong_secret_is_a_mismatch(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, _) = signing_key(&app, &tenant, &[]).await;

    let answer = verify(&app, &hmac_signed(&key_id, "not-the-secret", app.clock().now())).await;

    assert_eq!(answer["code"], "SIGNATURE_MISMATCH");
}

#[sqlx::test]
async fn a_signature_older_than_the_skew_is_expired(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let signed = hmac_signed(&key_id, &secret, app.clock().now());

    app.advance(301);

    assert_eq!(verify(&app, &signed).await["code"], "SIGNATURE_EXPIRED");
}

#[sqlx::test]
async fn the_tenants_skew_setting_widens_the_window(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"settings": {"signature_max_skew_seconds": 900}}),
    )
    .await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let signed = hmac_signed(&key_id, &secret, app.clock().now());

    app.advance(600);

    assert_eq!(verify(&app, &signed).await["code"], "VALID");
}

#[sqlx::test]
async fn the_same_signature_is_accepted_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let signed = hmac_signed(&key_id, &secret, app.clock().now());

    assert_eq!(verify(&app, &signed).await["code"], "VALID");
    assert_eq!(verify(&app, &signed).await["code"], "REPLAYED");
}

#[sqlx::test]
async fn widening_the_skew_window_does_not_reopen_spent_signatures(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let signed = hmac_signed(&key_id, &secret, app.clock().now() - chrono::Duration::seconds(295));
    assert_eq!(verify(&app, &signed).await["code"], "VALID");

    let widened = app
        .patch(
            &format!("/v1/tenants/{tenant}"),
            &app.admin,
            json!({"settings": {"signature_max_skew_seconds": 900}}),
        )
        .await;
    assert_eq!(widened.status, StatusCode::OK, "{:?}", widened.body);
    app.advance(8);
    // The replay store is pruned at this moment, as the background pruner does every minute.
    keyward::background::prune(&app.pool, app.clock().now()).await.unwrap();

    assert_eq!(verify(&app, &signed).await["code"], "REPLAYED");
}

#[sqlx::test]
async fn a_skew_stored_above_the_cap_counts_as_the_cap(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    // Written before the cap existed, when 3600 was allowed.
    let written =
        sqlx::query("UPDATE tenants SET settings = '{\"signature_max_skew_seconds\": 3600}' WHERE id::text = $1")
            .bind(&tenant)
            .execute(&app.pool)
            .await
            .unwrap();
    assert_eq!(written.rows_affected(), 1);
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;

    let signed = hmac_signed(&key_id, &secret, app.clock().now() - chrono::Duration::seconds(901));

    assert_eq!(verify(&app, &signed).await["code"], "SIGNATURE_EXPIRED");
}

/// The same request as [`hmac_signed`], with an `X-Keyward-Nonce`.
fn hmac_signed_with_nonce(key_id: &str, secret: &str, at: DateTime<Utc>, nonce: &str) -> Request {
    let mut req = request("/v1/orders", "b=2&a=1").with_header(keyward_hmac::NONCE_HEADER, nonce);
    keyward_hmac::sign(&mut req, key_id, secret.as_bytes(), at).unwrap();
    req
}

#[sqlx::test]
async fn identical_requests_with_different_nonces_are_both_valid(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let now = app.clock().now();

    let first = verify(&app, &hmac_signed_with_nonce(&key_id, &secret, now, "order-7-try-1")).await;
    let second = verify(&app, &hmac_signed_with_nonce(&key_id, &secret, now, "order-7-try-2")).await;

    assert_eq!(
        (first["code"].as_str(), second["code"].as_str()),
        (Some("VALID"), Some("VALID"))
    );
}

#[sqlx::test]
async fn a_tampered_nonce_is_a_signature_mismatch(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let mut req = hmac_signed_with_nonce(&key_id, &secret, app.clock().now(), "order-7-try-1");

    req.set_header(keyward_hmac::NONCE_HEADER, "order-7-try-2");

    assert_eq!(verify(&app, &req).await["code"], "SIGNATURE_MISMATCH");
}

#[sqlx::test]
async fn the_same_nonce_twice_is_replayed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let now = app.clock().now();

    let first = verify(&app, &hmac_signed_with_nonce(&key_id, &secret, now, "order-7-try-1")).await;
    let second = verify(&app, &hmac_signed_with_nonce(&key_id, &secret, now, "order-7-try-1")).await;

    assert_eq!(
        (first["code"].as_str(), second["code"].as_str()),
        (Some("VALID"), Some("REPLAYED"))
    );
}

#[sqlx::test]
async fn replay_protection_can_be_turned_off_per_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"settings": {"replay_protection": false}}),
    )
    .await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let signed = hmac_signed(&key_id, &secret, app.clock().now());

    assert_eq!(verify(&app, &signed).await["code"], "VALID");
    assert_eq!(verify(&app, &signed).await["code"], "VALID");
}

#[sqlx::test]
async fn replays_are_refused_across_replicas_sharing_the_database(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;
    let (key_id, secret) = signing_key(&first, &tenant, &[]).await;
    let signed = hmac_signed(&key_id, &secret, first.clock().now());

    assert_eq!(verify(&first, &signed).await["code"], "VALID");
    assert_eq!(verify(&second, &signed).await["code"], "REPLAYED");
}

#[sqlx::test]
async fn sigv4_signed_request_is_valid(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let mut req = request("/v1/orders", "");
    let creds = sigv4::Credentials {
        key_id: &key_id,
        secret: secret.as_bytes(),
        region: "us-east-1",
        service: "keyward",
        session_token: None,
    };
    sigv4::sign(&mut req, &creds, app.clock().now()).unwrap();

    let answer = verify(&app, &req).await;

    assert_eq!(
        (answer["code"].as_str(), answer["scheme"].as_str()),
        (Some("VALID"), Some("aws-sigv4"))
    );
}

#[sqlx::test]
async fn sigv4_with_an_unaccepted_region_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let mut req = request("/v1/orders", "");
    let creds = sigv4::Credentials {
        key_id: &key_id,
        secret: secret.as_bytes(),
        region: "eu-west-1",
        service: "keyward",
        session_token: None,
    };
    sigv4::sign(&mut req, &creds, app.clock().now()).unwrap();

    assert_eq!(verify(&app, &req).await["valid"], false);
}

#[sqlx::test]
async fn rfc9421_signed_request_is_valid(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let mut req = request("/v1/orders", "");
    req.set_header(
        "Content-Digest",
        signing::content_digest::sha256_field(&req.body.sha256()),
    );
    signing::rfc9421::sign(&mut req, &key_id, secret.as_bytes(), app.clock().now()).unwrap();

    let answer = verify(&app, &req).await;

    assert_eq!(
        (answer["code"].as_str(), answer["scheme"].as_str()),
        (Some("VALID"), Some("rfc9421"))
    );
}

#[sqlx::test]
async fn arrow_signed_request_is_valid(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let mut req = request("/v1/orders", "a=1");
    signing::arrow::sign(&mut req, &key_id, secret.as_bytes(), app.clock().now()).unwrap();

    let answer = verify(&app, &req).await;

    assert_eq!(
        (answer["code"].as_str(), answer["scheme"].as_str()),
        (Some("VALID"), Some("arrow"))
    );
}

#[sqlx::test]
async fn sigv2_is_disabled_until_the_tenant_enables_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let mut req = request("/bucket/object.txt", "");
    sigv2::sign(
        &mut req,
        &key_id,
        secret.as_bytes(),
        app.clock().now(),
        &sigv2::Options::default(),
    )
    .unwrap();
    assert_eq!(verify(&app, &req).await["code"], "SCHEME_DISABLED");

    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"settings": {"sigv2_enabled": true}}),
    )
    .await;

    let answer = verify(&app, &req).await;
    assert_eq!(
        (answer["code"].as_str(), answer["scheme"].as_str()),
        (Some("VALID"), Some("aws-sigv2"))
    );
}

#[sqlx::test]
async fn a_revoked_key_cannot_sign(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    app.post(
        &format!("/v1/tenants/{tenant}/keys/{key_id}/revoke"),
        &app.admin,
        json!({}),
    )
    .await;

    assert_eq!(
        verify(&app, &hmac_signed(&key_id, &secret, app.clock().now())).await["code"],
        "REVOKED"
    );
}

#[sqlx::test]
async fn an_unknown_key_id_or_a_key_without_signing_is_not_found(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (plain, _) = app.key(&tenant, json!({"name": "plain"})).await;

    for key_id in [
        "key_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "nonsense",
        plain["id"].as_str().unwrap(),
    ] {
        let answer = verify(&app, &hmac_signed(key_id, "whatever", app.clock().now())).await;
        assert_eq!(answer["code"], "NOT_FOUND", "{key_id}");
    }
}

#[sqlx::test]
async fn a_tenant_bound_verifier_cannot_see_another_tenants_signer(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (key_id, secret) = signing_key(&app, &globex, &[]).await;
    let acme_verifier = app.service_token(Some(&acme), &[Permission::KeysVerify]).await;

    let answer = verify_as(
        &app,
        &acme_verifier,
        &hmac_signed(&key_id, &secret, app.clock().now()),
        &[],
    )
    .await;

    assert_eq!(answer["code"], "NOT_FOUND");
}

#[sqlx::test]
async fn a_signer_lacking_a_required_scope_is_insufficient_scope(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &["orders:read"]).await;

    let answer = verify_as(
        &app,
        &app.admin,
        &hmac_signed(&key_id, &secret, app.clock().now()),
        &["orders:write"],
    )
    .await;

    assert_eq!(answer["code"], "INSUFFICIENT_SCOPE");
}

#[sqlx::test]
async fn an_unsigned_request_is_malformed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let answer = verify(&app, &request("/v1/orders", "")).await;

    assert_eq!(answer, json!({"valid": false, "code": "MALFORMED"}));
}

#[sqlx::test]
async fn a_sigv4_request_that_does_not_sign_host_is_refused_for_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let mut req = request("/v1/orders", "");
    let creds = sigv4::Credentials {
        key_id: &key_id,
        secret: secret.as_bytes(),
        region: "us-east-1",
        service: "keyward",
        session_token: None,
    };
    sigv4::sign(&mut req, &creds, app.clock().now()).unwrap();
    let authorization = req.header("authorization").unwrap().replace("host;", "");
    req.set_header("Authorization", authorization);

    assert_eq!(verify(&app, &req).await["code"], "UNSIGNED_HEADER_REQUIRED");
}

#[sqlx::test]
async fn a_request_body_that_is_not_a_request_is_a_validation_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/verify/request",
            &app.admin,
            json!({"method": "", "path": "no-slash", "headers": [["bad name", "v"]], "body_sha256": "xyz"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["method", "path", "headers[0]", "body_sha256"]);
}

#[sqlx::test]
async fn headers_printed_by_keyward_sign_verify(pool: PgPool) {
    use std::io::Write;
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    let id = key_id.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["sign", "--key-id", &id, "-X", "POST", "-d", r#"{"amount":100}"#])
            .arg("https://api.example.com/v1/orders?b=2&a=1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{secret}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success());
    let mut req = Request::new("POST", "/v1/orders", "b=2&a=1").with_body(Body::Bytes(br#"{"amount":100}"#.to_vec()));
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let (name, value) = line.split_once(": ").unwrap();
        req.headers.push((name.to_owned(), value.to_owned()));
    }

    let answer = verify(&app, &req).await;

    assert_eq!(
        (answer["code"].as_str(), answer["scheme"].as_str()),
        (Some("VALID"), Some("hmac"))
    );
}

/// A SigV4 request for `region`, signed by a key of a fresh tenant of `app`.
async fn sigv4_signed_for(app: &TestApp, region: &str) -> Request {
    let tenant = app.tenant(&format!("acme-{region}")).await;
    let (key_id, secret) = signing_key(app, &tenant, &[]).await;
    let mut req = request("/v1/orders", "");
    let creds = sigv4::Credentials {
        key_id: &key_id,
        secret: secret.as_bytes(),
        region,
        service: "keyward",
        session_token: None,
    };
    sigv4::sign(&mut req, &creds, app.clock().now()).unwrap();
    req
}

#[sqlx::test]
async fn the_configured_sigv4_regions_are_the_accepted_ones(pool: PgPool) {
    let mut config = TestApp::config();
    config.sigv4_region = vec!["eu-west-1".into(), " ap-south-1".into()];
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;

    let configured = sigv4_signed_for(&app, "eu-west-1").await;
    let trimmed = sigv4_signed_for(&app, "ap-south-1").await;
    let default = sigv4_signed_for(&app, "us-east-1").await;

    assert_eq!(verify(&app, &configured).await["code"], "VALID");
    assert_eq!(verify(&app, &trimmed).await["code"], "VALID");
    assert_eq!(verify(&app, &default).await["code"], "MALFORMED");
}

#[sqlx::test]
async fn key_ids_that_name_no_key_are_refused_without_the_database_beyond_the_confirmations(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant, &[]).await;
    assert_eq!(
        verify(&app, &hmac_signed(&key_id, &secret, app.clock().now())).await["code"],
        "VALID"
    );
    let strangers: Vec<String> = (0..300).map(|n| format!("key_01JZZZZZZZZZZZZZZZZZZZ{n:04}")).collect();

    sqlx::query("ALTER TABLE api_keys RENAME TO api_keys_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let mut from_memory = 0;
    for stranger in &strangers {
        let req = hmac_signed(stranger, &secret, app.clock().now());
        let body = request_body(&req);
        let reply = app.post("/v1/verify/request", &app.admin, body).await;
        if reply.status == StatusCode::OK && reply.body["code"] == "NOT_FOUND" {
            from_memory += 1;
        }
    }
    sqlx::query("ALTER TABLE api_keys_away RENAME TO api_keys")
        .execute(&app.pool)
        .await
        .unwrap();

    assert!(
        from_memory >= 200,
        "only {from_memory} of 300 answered without the key table"
    );
}

/// The `/v1/verify/request` body for `req`.
fn request_body(req: &Request) -> Value {
    let body = match &req.body {
        Body::Bytes(bytes) => json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        _ => Value::Null,
    };
    json!({"method": req.method, "path": req.path, "query": req.query, "headers": req.headers, "body_base64": body})
}

#[sqlx::test]
async fn one_signature_sent_at_once_to_two_replicas_is_accepted_once(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;
    let (key_id, secret) = signing_key(&first, &tenant, &[]).await;
    let now = first.clock().now();
    // Ten distinct signatures, each sent ten times at once, half to each replica.
    let signed: Vec<Value> = (0..10)
        .map(|n| request_body(&hmac_signed_with_nonce(&key_id, &secret, now, &format!("nonce-{n}"))))
        .collect();

    let calls: Vec<_> = (0..100)
        .map(|n| {
            let app = if n % 2 == 0 { &first } else { &second };
            let (client, url, admin) = (
                app.client.clone(),
                format!("{}/v1/verify/request", app.base),
                app.admin.clone(),
            );
            let body = signed[n % 10].clone();
            tokio::spawn(async move {
                let reply: Value = client
                    .post(url)
                    .bearer_auth(admin)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                (n % 10, reply["code"].as_str().unwrap().to_owned())
            })
        })
        .collect();
    let mut valid = [0; 10];
    for call in calls {
        let (signature, code) = call.await.unwrap();
        match code.as_str() {
            "VALID" => valid[signature] += 1,
            "REPLAYED" => {}
            other => panic!("unexpected {other}"),
        }
    }

    assert_eq!(valid, [1; 10]);
}

#[test]
fn keyward_sign_refuses_an_empty_signing_secret() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["sign", "--key-id", "key_01JDQ3W6Z8G7X2V9K4M5N6P7Q8"])
        .arg("https://api.example.com/v1/orders")
        .env_remove("KEYWARD_SIGNING_SECRET")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();

    assert!(!output.status.success(), "signed with an empty secret");
    assert!(output.stdout.is_empty(), "printed headers for an empty secret");
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(said.contains("signing secret is empty"), "{said}");
}
