//! Usage limits on keys: remaining verifications and rate limits, shared by every replica.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;

#[sqlx::test]
async fn a_key_with_remaining_uses_counts_down_then_is_usage_exceeded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "remaining": 2})).await;
    assert_eq!(key["remaining"], 2);

    let first = app.verify(&token, &[]).await;
    let second = app.verify(&token, &[]).await;
    let third = app.verify(&token, &[]).await;

    assert_eq!(
        (first["code"].as_str(), first["remaining"].as_i64()),
        (Some("VALID"), Some(1))
    );
    assert_eq!(
        (second["code"].as_str(), second["remaining"].as_i64()),
        (Some("VALID"), Some(0))
    );
    assert_eq!(third, json!({"valid": false, "code": "USAGE_EXCEEDED"}));
}

#[sqlx::test]
async fn a_rate_limited_key_is_refused_until_the_next_window(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app
        .key(
            &tenant,
            json!({"name": "k", "rate_limit": {"limit": 2, "window_seconds": 60}}),
        )
        .await;
    app.advance(60 - app.clock().now().timestamp().rem_euclid(60));

    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &[]).await["code"], "RATE_LIMITED");

    app.advance(60);

    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
}

#[sqlx::test]
async fn rate_limited_verifications_do_not_use_up_remaining_uses(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app
        .key(
            &tenant,
            json!({"name": "k", "remaining": 10, "rate_limit": {"limit": 1, "window_seconds": 3600}}),
        )
        .await;
    app.advance(3600 - app.clock().now().timestamp().rem_euclid(3600));
    app.verify(&token, &[]).await;
    for _ in 0..3 {
        assert_eq!(app.verify(&token, &[]).await["code"], "RATE_LIMITED");
    }

    let shown = app
        .get(
            &format!("/v1/tenants/{tenant}/keys/{}", key["id"].as_str().unwrap()),
            &app.admin,
        )
        .await;

    assert_eq!(shown.body["remaining"], 9);
}

#[sqlx::test]
async fn the_rate_limit_is_shared_by_replicas(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;
    let (_, token) = first
        .key(
            &tenant,
            json!({"name": "k", "rate_limit": {"limit": 1, "window_seconds": 86400}}),
        )
        .await;
    first.advance(86400 - first.clock().now().timestamp().rem_euclid(86400));
    second.advance(86400 - second.clock().now().timestamp().rem_euclid(86400));

    assert_eq!(first.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(second.verify(&token, &[]).await["code"], "RATE_LIMITED");
}

#[sqlx::test]
async fn limits_can_be_changed_and_removed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "remaining": 1})).await;
    app.verify(&token, &[]).await;
    assert_eq!(app.verify(&token, &[]).await["code"], "USAGE_EXCEEDED");
    let path = format!("/v1/tenants/{tenant}/keys/{}", key["id"].as_str().unwrap());

    let patched = app.patch(&path, &app.admin, json!({"remaining": null})).await;

    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["remaining"], serde_json::Value::Null);
    let answer = app.verify(&token, &[]).await;
    assert_eq!(answer["code"], "VALID");
    assert!(answer.get("remaining").is_none());
}

#[sqlx::test]
async fn nonsensical_limits_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "k", "remaining": 0, "rate_limit": {"limit": 0, "window_seconds": 100000}}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["remaining", "rate_limit.limit", "rate_limit.window_seconds"]);
}

#[sqlx::test]
async fn a_gateway_answers_429_for_a_rate_limited_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app
        .key(
            &tenant,
            json!({"name": "k", "rate_limit": {"limit": 1, "window_seconds": 86400}}),
        )
        .await;
    app.advance(86400 - app.clock().now().timestamp().rem_euclid(86400));
    let gateway = app
        .service_token(None, &[keyward::domain::permissions::Permission::KeysVerify])
        .await;
    let check = || {
        app.client
            .get(format!("{}/v1/authorize", app.base))
            .header("X-Keyward-Gateway-Token", &gateway)
            .header("X-API-Key", &token)
            .send()
    };

    assert_eq!(check().await.unwrap().status(), StatusCode::OK);
    assert_eq!(check().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}
