//! Rotation is safe: a successor is capped like a new token, the expiry rotation sets is final,
//! a key and its successor share their limits, and a key is rotated once.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;

async fn rotate(app: &TestApp, tenant: &str, id: &str, grace: i64) -> crate::helpers::Reply {
    app.post(
        &format!("/v1/tenants/{tenant}/keys/{id}/rotate"),
        &app.admin,
        json!({"grace_period_seconds": grace}),
    )
    .await
}

fn id_of(key: &Value) -> String {
    key["id"].as_str().unwrap().to_owned()
}

async fn tenant_token(app: &TestApp, tenant: &str, body: Value) -> (Value, String) {
    let created = app
        .post(&format!("/v1/tenants/{tenant}/service-tokens"), &app.admin, body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    (
        created.body["service_token"].clone(),
        created.body["token"].as_str().unwrap().to_owned(),
    )
}

#[sqlx::test]
async fn a_rotated_successor_cannot_outlive_a_short_lived_caller(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (long_lived, _) = tenant_token(&app, &tenant, json!({"name": "ci", "permissions": ["keys:read"]})).await;
    let (short, short_token) = tenant_token(
        &app,
        &tenant,
        json!({"name": "temp", "permissions": ["tenants:admin", "keys:read"], "ttl_seconds": 60}),
    )
    .await;

    let rotated = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens/{}/rotate", id_of(&long_lived)),
            &short_token,
            json!({"grace_period_seconds": 0}),
        )
        .await;

    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    assert_eq!(rotated.body["service_token"]["expires_at"], short["expires_at"]);
    let successor = rotated.body["token"].as_str().unwrap().to_owned();
    app.advance(61);
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &successor).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn a_rotated_away_key_cannot_be_revived(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k"})).await;
    let (_, developer) = app.member(&tenant, "dev@example.com", "developer").await;
    assert_eq!(rotate(&app, &tenant, &id_of(&old), 5).await.status, StatusCode::CREATED);
    let path = format!("/v1/tenants/{tenant}/keys/{}", id_of(&old));

    let removed = app.patch(&path, &developer, json!({"expires_at": null})).await;
    let later = (app.clock().now() + chrono::Duration::days(30)).to_rfc3339();
    let extended = app.patch(&path, &developer, json!({"expires_at": later})).await;

    assert_eq!(removed.status, StatusCode::CONFLICT);
    assert_eq!(extended.status, StatusCode::CONFLICT);
    app.advance(6);
    assert_eq!(app.verify(&old_token, &[]).await["code"], "EXPIRED");
}

#[sqlx::test]
async fn a_rotated_away_keys_expiry_may_be_brought_forward(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k"})).await;
    rotate(&app, &tenant, &id_of(&old), 3600).await;
    let sooner = (app.clock().now() + chrono::Duration::seconds(10)).to_rfc3339();

    let shortened = app
        .patch(
            &format!("/v1/tenants/{tenant}/keys/{}", id_of(&old)),
            &app.admin,
            json!({"expires_at": sooner}),
        )
        .await;

    assert_eq!(shortened.status, StatusCode::OK, "{:?}", shortened.body);
    app.advance(11);
    assert_eq!(app.verify(&old_token, &[]).await["code"], "EXPIRED");
}

#[sqlx::test]
async fn a_key_and_its_successor_share_remaining_uses(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k", "remaining": 2})).await;
    let rotated = rotate(&app, &tenant, &id_of(&old), 3600).await;
    let new_token = rotated.body["token"].as_str().unwrap().to_owned();
    assert_eq!(rotated.body["key"]["remaining"], 2);

    let codes = [
        app.verify(&old_token, &[]).await["code"].clone(),
        app.verify(&new_token, &[]).await["code"].clone(),
        app.verify(&old_token, &[]).await["code"].clone(),
        app.verify(&new_token, &[]).await["code"].clone(),
    ];

    assert_eq!(codes, ["VALID", "VALID", "USAGE_EXCEEDED", "USAGE_EXCEEDED"]);
}

#[sqlx::test]
async fn uses_before_rotation_count_against_the_successor(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k", "remaining": 3})).await;
    app.verify(&old_token, &[]).await;

    let rotated = rotate(&app, &tenant, &id_of(&old), 3600).await;

    assert_eq!(rotated.body["key"]["remaining"], 2);
}

#[sqlx::test]
async fn a_key_and_its_successor_share_one_rate_limit_window(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app
        .key(
            &tenant,
            json!({"name": "k", "rate_limit": {"limit": 2, "window_seconds": 3600}}),
        )
        .await;
    let rotated = rotate(&app, &tenant, &id_of(&old), 3600).await;
    let new_token = rotated.body["token"].as_str().unwrap().to_owned();

    let codes = [
        app.verify(&old_token, &[]).await["code"].clone(),
        app.verify(&new_token, &[]).await["code"].clone(),
        app.verify(&old_token, &[]).await["code"].clone(),
        app.verify(&new_token, &[]).await["code"].clone(),
    ];

    assert_eq!(codes, ["VALID", "VALID", "RATE_LIMITED", "RATE_LIMITED"]);
}

#[sqlx::test]
async fn a_key_with_a_successor_cannot_be_rotated_again(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, _) = app.key(&tenant, json!({"name": "k"})).await;
    let first = rotate(&app, &tenant, &id_of(&old), 3600).await;
    let successor = first.body["key"]["id"].as_str().unwrap().to_owned();

    let second = rotate(&app, &tenant, &id_of(&old), 3600).await;

    assert_eq!(second.status, StatusCode::CONFLICT);
    assert!(
        second.body["detail"].as_str().unwrap().contains(&successor),
        "{:?}",
        second.body
    );
}

#[sqlx::test]
async fn a_successor_keeps_the_original_expiry_not_the_grace_period(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, _) = app.key(&tenant, json!({"name": "k"})).await;
    let first = rotate(&app, &tenant, &id_of(&old), 3600).await;
    let successor = first.body["key"].clone();
    assert_eq!(successor["expires_at"], Value::Null);

    let next = rotate(&app, &tenant, &id_of(&successor), 60).await;

    assert_eq!(next.status, StatusCode::CREATED);
    assert_eq!(next.body["key"]["expires_at"], Value::Null);
    app.advance(7200);
    let token = next.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
}

#[sqlx::test]
async fn limits_of_a_rotated_away_key_are_changed_on_its_successor(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, _) = app.key(&tenant, json!({"name": "k", "remaining": 2})).await;
    rotate(&app, &tenant, &id_of(&old), 3600).await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{tenant}/keys/{}", id_of(&old)),
            &app.admin,
            json!({"remaining": 100}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
}

#[sqlx::test]
async fn limits_set_on_a_successor_bind_its_predecessor_during_the_grace(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k"})).await;
    let rotated = rotate(&app, &tenant, &id_of(&old), 3600).await;
    let new_token = rotated.body["token"].as_str().unwrap().to_owned();
    let limited = app
        .patch(
            &format!("/v1/tenants/{tenant}/keys/{}", id_of(&rotated.body["key"])),
            &app.admin,
            json!({"remaining": 1}),
        )
        .await;
    assert_eq!(limited.status, StatusCode::OK, "{:?}", limited.body);

    let codes = [
        app.verify(&old_token, &[]).await["code"].clone(),
        app.verify(&new_token, &[]).await["code"].clone(),
        app.verify(&old_token, &[]).await["code"].clone(),
    ];

    assert_eq!(codes, ["VALID", "USAGE_EXCEEDED", "USAGE_EXCEEDED"]);
}
