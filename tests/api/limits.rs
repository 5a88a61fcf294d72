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
async fn a_rate_limited_key_is_refused_until_its_calls_slide_out_of_the_window(pool: PgPool) {
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

    // Counted in buckets of a tenth of the window: a full window and one bucket later.
    app.advance(60);
    assert_eq!(app.verify(&token, &[]).await["code"], "RATE_LIMITED");
    app.advance(6);
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
}

#[sqlx::test]
async fn calls_on_both_sides_of_a_window_boundary_share_one_limit(pool: PgPool) {
    // A fixed window would admit twice the limit here: two at the end of one minute, two at
    // the start of the next.
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app
        .key(
            &tenant,
            json!({"name": "k", "rate_limit": {"limit": 2, "window_seconds": 60}}),
        )
        .await;
    app.advance(60 - app.clock().now().timestamp().rem_euclid(60) + 58);
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");

    app.advance(3);

    assert_eq!(app.verify(&token, &[]).await["code"], "RATE_LIMITED");
}

#[sqlx::test]
async fn verify_tells_the_rate_limit_state(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app
        .key(
            &tenant,
            json!({"name": "k", "rate_limit": {"limit": 2, "window_seconds": 60}}),
        )
        .await;
    app.advance(60 - app.clock().now().timestamp().rem_euclid(60) + 1);

    let first = app.verify(&token, &[]).await;
    app.verify(&token, &[]).await;
    let refused = app.verify(&token, &[]).await;

    assert_eq!(first["ratelimit"], json!({"limit": 2, "remaining": 1, "reset": 5}));
    assert_eq!(refused["code"], "RATE_LIMITED");
    assert_eq!(refused["ratelimit"], json!({"limit": 2, "remaining": 0, "reset": 5}));
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

    let allowed = check().await.unwrap();
    let limited = check().await.unwrap();

    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["ratelimit-limit"], "1");
    assert_eq!(allowed.headers()["ratelimit-remaining"], "0");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert_eq!(limited.headers()["retry-after"], "8640", "the window slides in tenths");
}

/// Verifies `token` `calls` times from `workers` concurrent callers, alternating between the
/// replicas; returns how many were `VALID`.
async fn concurrent_valid(replicas: [&TestApp; 2], token: &str, workers: usize, calls: usize) -> usize {
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let targets: Vec<(reqwest::Client, String, String)> = replicas
                .iter()
                .map(|app| (app.client.clone(), app.base.clone(), app.admin.clone()))
                .collect();
            let token = token.to_owned();
            tokio::spawn(async move {
                let mut valid = 0;
                for n in 0..calls / workers {
                    let (client, base, admin) = &targets[(worker + n) % 2];
                    let reply: serde_json::Value = client
                        .post(format!("{base}/v1/verify"))
                        .bearer_auth(admin)
                        .json(&json!({"key": token}))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    if reply["code"] == "VALID" {
                        valid += 1;
                    }
                }
                valid
            })
        })
        .collect();
    let mut valid = 0;
    for task in tasks {
        valid += task.await.unwrap();
    }
    valid
}

async fn counter(pool: &PgPool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT remaining FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits (up to five seconds) for the counter to hold `expected`: replicas give back their
/// slices as they shut down.
async fn counter_becomes(pool: &PgPool, id: &str, expected: i64) -> i64 {
    let mut last = counter(pool, id).await;
    for _ in 0..100 {
        if last == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        last = counter(pool, id).await;
    }
    last
}

#[sqlx::test]
async fn remaining_is_exact_across_two_replicas_under_concurrency(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool.clone()).await;
    let tenant = first.tenant("acme").await;
    let (key, token) = first.key(&tenant, json!({"name": "k", "remaining": 40})).await;
    let id = key["id"].as_str().unwrap().to_owned();

    let valid = concurrent_valid([&first, &second], &token, 8, 96).await;
    drop(first);
    drop(second);

    assert!(valid <= 40, "{valid} admitted of 40");
    assert_eq!(counter_becomes(&pool, &id, 40 - valid as i64).await, 40 - valid as i64);
    assert!(valid >= 36, "only {valid} of 40 admitted: slices were stranded");
}

#[sqlx::test]
async fn the_rate_limit_is_exact_across_two_replicas_under_concurrency(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;
    let (_, token) = first
        .key(
            &tenant,
            json!({"name": "k", "rate_limit": {"limit": 30, "window_seconds": 3600}}),
        )
        .await;

    let valid = concurrent_valid([&first, &second], &token, 8, 96).await;

    assert!(valid <= 30, "{valid} admitted of 30");
    assert!(valid >= 24, "only {valid} of 30 admitted: slots were stranded");
}

#[sqlx::test]
async fn unused_slices_are_given_back_on_shutdown(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "remaining": 1000})).await;
    let id = key["id"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    }
    let held = counter(&pool, &id).await;

    drop(app);

    assert!(held < 980, "the replica holds a slice: the counter shows {held}");
    assert_eq!(counter_becomes(&pool, &id, 980).await, 980);
}

#[sqlx::test]
async fn verify_tells_what_is_left_counting_the_replicas_own_slice(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k", "remaining": 100})).await;

    let mut shown = Vec::new();
    for _ in 0..10 {
        shown.push(app.verify(&token, &[]).await["remaining"].as_i64().unwrap());
    }

    assert_eq!(shown, (90..100).rev().collect::<Vec<i64>>());
}

#[sqlx::test]
async fn a_call_refused_for_usage_spends_no_rate_slot(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app
        .key(
            &tenant,
            json!({"name": "k", "remaining": 1, "rate_limit": {"limit": 2, "window_seconds": 3600}}),
        )
        .await;
    app.advance(3600 - app.clock().now().timestamp().rem_euclid(3600));
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &[]).await["code"], "USAGE_EXCEEDED");
    let path = format!("/v1/tenants/{tenant}/keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.patch(&path, &app.admin, json!({"remaining": 5})).await.status,
        StatusCode::OK
    );

    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &[]).await["code"], "RATE_LIMITED");
}

#[sqlx::test]
async fn setting_remaining_is_not_undone_by_a_slice_given_back_later(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool.clone()).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "remaining": 1000})).await;
    let id = key["id"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        second.verify(&token, &[]).await; // the second replica holds a slice
    }
    let path = format!("/v1/tenants/{tenant}/keys/{id}");
    assert_eq!(
        app.patch(&path, &app.admin, json!({"remaining": 5})).await.status,
        StatusCode::OK
    );

    drop(second);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    assert_eq!(counter(&pool, &id).await, 5);
}
