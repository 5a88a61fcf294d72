//! Sessions end their access tokens at once; the login throttles count by address first, never
//! let one address lock a person out everywhere, forget what they refuse, and bound hashing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::IpAddr;

use crate::helpers::{TestApp, JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, PASSWORD};
use keyward::crypto::password::Passwords;

async fn session(app: &TestApp, email: &str) -> (String, String) {
    let reply = app.login(email, PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    (
        reply.body["access_token"].as_str().unwrap().to_owned(),
        reply.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, refresh_token: &str) -> crate::helpers::Reply {
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh_token})),
    )
    .await
}

async fn me(app: &TestApp, access_token: &str) -> StatusCode {
    app.get("/v1/me", access_token).await.status
}

#[sqlx::test]
async fn access_token_stops_working_at_logout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let (access, refresh_token) = session(&app, "ann@example.com").await;
    assert_eq!(me(&app, &access).await, StatusCode::OK);

    let logout = app
        .call(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(json!({"refresh_token": refresh_token})),
        )
        .await;

    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &access).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn logout_ends_only_its_own_session(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let (laptop, laptop_refresh) = session(&app, "ann@example.com").await;
    let (phone, _) = session(&app, "ann@example.com").await;

    app.call(
        Method::POST,
        "/v1/auth/logout",
        None,
        Some(json!({"refresh_token": laptop_refresh})),
    )
    .await;

    assert_eq!(me(&app, &laptop).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &phone).await, StatusCode::OK);
}

#[sqlx::test]
async fn logout_without_a_body_ends_the_session_of_the_access_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let (access, refresh_token) = session(&app, "ann@example.com").await;

    let logout = app.call(Method::POST, "/v1/auth/logout", Some(&access), None).await;

    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, &refresh_token).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn logout_with_no_credential_at_all_is_unauthorized(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let logout = app.call(Method::POST, "/v1/auth/logout", None, None).await;

    assert_eq!(logout.status, StatusCode::UNAUTHORIZED);
    assert_eq!(logout.content_type(), "application/problem+json");
}

#[sqlx::test]
async fn refresh_token_reuse_ends_the_access_tokens_of_the_login(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("ann@example.com", false).await;
    let (first_access, first_refresh) = session(&app, "ann@example.com").await;
    let rotated = refresh(&app, &first_refresh).await;
    let second_access = rotated.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&app, &second_access).await, StatusCode::OK);

    let reused = refresh(&app, &first_refresh).await;

    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    assert!(
        reused.body["detail"].as_str().unwrap().contains("already used"),
        "{:?}",
        reused.body
    );
    assert_eq!(me(&app, &first_access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &second_access).await, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn an_access_token_naming_no_live_session_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("ann@example.com", false).await;
    let now = app.clock().now().timestamp();
    let claims = json!({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": user, "exp": now + 600, "iat": now,
                        "nbf": now, "jti": "j", "ver": 0, "sid": uuid::Uuid::now_v7()});
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap();

    assert_eq!(me(&app, &forged).await, StatusCode::UNAUTHORIZED);
}

/// A server that trusts the local peer as a reverse proxy, so a test can speak from any address
/// through `X-Forwarded-For`.
async fn behind_a_proxy(pool: PgPool) -> TestApp {
    let mut config = TestApp::config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    TestApp::spawn_configured(pool, config, |ctx| ctx).await
}

async fn login_from(app: &TestApp, address: &str, email: &str, password: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", address)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn stored_failures(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM login_failures")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn ipv4_clients_of_a_dual_stack_listener_are_recorded_as_ipv4(pool: PgPool) {
    let app = TestApp::spawn_on(pool, TestApp::config(), |ctx| ctx, "[::ffff:127.0.0.1]:0").await;

    let reply = app.login("ann@example.com", "not the password").await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let stored: Vec<String> = sqlx::query_scalar("SELECT host(ip) FROM login_failures")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, ["127.0.0.1"]);
    let events = app.get("/v1/audit?action=user.login_failed", &app.admin).await;
    assert_eq!(events.body["items"][0]["ip"], "127.0.0.1");
}

#[sqlx::test]
async fn failures_of_one_ipv4_mapped_client_do_not_throttle_another(pool: PgPool) {
    let app = behind_a_proxy(pool).await;
    app.user("ann@example.com", false).await;
    for i in 0..21 {
        login_from(
            &app,
            "::ffff:198.51.100.1",
            &format!("guess{i}@example.com"),
            "wrong password",
        )
        .await;
    }
    assert_eq!(
        login_from(&app, "::ffff:198.51.100.1", "ann@example.com", PASSWORD)
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );

    let (status, _) = login_from(&app, "::ffff:198.51.100.2", "ann@example.com", PASSWORD).await;

    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test]
async fn a_throttled_address_cannot_lock_an_account_out(pool: PgPool) {
    let app = behind_a_proxy(pool).await;
    app.user("victim@example.com", false).await;
    for i in 0..21 {
        login_from(&app, "203.0.113.66", &format!("guess{i}@example.com"), "wrong password").await;
    }

    for _ in 0..6 {
        let (status, _) = login_from(&app, "203.0.113.66", "victim@example.com", "wrong password").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }

    let (status, _) = login_from(&app, "198.51.100.20", "victim@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test]
async fn guessing_one_account_from_one_address_is_slowed_there_only(pool: PgPool) {
    let app = behind_a_proxy(pool).await;
    app.user("victim@example.com", false).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            login_from(&app, "203.0.113.66", "victim@example.com", "wrong password")
                .await
                .0,
        );
    }

    assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login_from(&app, "203.0.113.66", "victim@example.com", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&app, "198.51.100.20", "victim@example.com", PASSWORD)
            .await
            .0,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn attempts_refused_by_a_throttle_are_not_stored(pool: PgPool) {
    let app = behind_a_proxy(pool).await;
    for i in 0..50 {
        login_from(&app, "203.0.113.66", &format!("guess{i}@example.com"), "wrong password").await;
    }

    assert_eq!(stored_failures(&app).await, 20);
}

#[sqlx::test]
async fn login_failures_older_than_the_window_are_pruned(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for i in 0..3 {
        app.login(&format!("guess{i}@example.com"), "wrong password").await;
    }
    assert_eq!(stored_failures(&app).await, 3);

    app.advance(15 * 60 + 1);
    app.login("later@example.com", "wrong password").await;

    assert_eq!(stored_failures(&app).await, 1);
}

#[sqlx::test]
async fn logins_with_no_email_shape_are_throttled_by_address(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut statuses = Vec::new();
    for _ in 0..21 {
        statuses.push(app.login("not an email", "whatever it is").await);
    }

    assert_eq!(statuses[19].status, StatusCode::UNAUTHORIZED);
    let last = &statuses[20];
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.headers.contains_key("retry-after"));
}

#[sqlx::test]
async fn a_full_password_queue_answers_503_with_retry_after(pool: PgPool) {
    let mut config = TestApp::config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn_configured(pool, config, |ctx| {
        let mut parts = ctx.into_parts();
        parts.passwords = Passwords::with_queue(1, 0);
        parts.into()
    })
    .await;

    let attempts = (0..12u8).map(|i| {
        let address: IpAddr = format!("198.51.100.{}", i + 1).parse().unwrap();
        let app = &app;
        async move {
            app.client
                .post(format!("{}/v1/auth/login", app.base))
                .header("x-forwarded-for", address.to_string())
                .json(&json!({"email": format!("user{i}@example.com"), "password": "some password"}))
                .send()
                .await
                .unwrap()
        }
    });
    let replies = futures_util::future::join_all(attempts).await;

    let busy: Vec<_> = replies
        .iter()
        .filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!busy.is_empty(), "no attempt was refused");
    assert!(busy.iter().all(|r| r.headers()["retry-after"] == "1"));
    assert!(replies
        .iter()
        .all(|r| [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE].contains(&r.status())));
}
