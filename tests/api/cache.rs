//! The key cache: a key seen before verifies without the database, and every change reaches
//! every replica through LISTEN/NOTIFY.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{own_pool, TestApp};
use keyward::domain::token::TokenHash;

/// Whether `check` holds within 10 s: far below the cache's 5 min time to live, so what holds
/// came from a notification (or a reconnect), and far above what a loaded 2-core CI machine
/// needs to reconnect a listener (a second, sometimes two).
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[sqlx::test]
async fn a_key_seen_before_verifies_without_the_database(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");

    // With the key table out of reach, only the cache can answer.
    sqlx::query("ALTER TABLE api_keys RENAME TO api_keys_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let answer = app.verify(&token, &[]).await;
    sqlx::query("ALTER TABLE api_keys_away RENAME TO api_keys")
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(answer["code"], "VALID");
}

#[sqlx::test]
async fn a_revocation_on_one_replica_reaches_the_others(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;
    let (key, token) = first.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(second.verify(&token, &[]).await["code"], "VALID");

    let revoked = first
        .post(
            &format!("/v1/tenants/{tenant}/keys/{}/revoke", key["id"].as_str().unwrap()),
            &first.admin,
            json!({}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);

    assert!(eventually(async || second.verify(&token, &[]).await["code"] == "REVOKED").await);
}

#[sqlx::test]
async fn suspending_a_tenant_reaches_the_cached_keys_of_other_replicas(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;
    let (_, token) = first.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(second.verify(&token, &[]).await["code"], "VALID");

    first
        .patch(
            &format!("/v1/tenants/{tenant}"),
            &first.admin,
            json!({"status": "suspended"}),
        )
        .await;

    assert!(eventually(async || second.verify(&token, &[]).await["code"] == "TENANT_SUSPENDED").await);
}

#[sqlx::test]
async fn a_revoked_service_token_stops_authenticating_on_every_replica(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let created = first
        .post(
            "/v1/service-tokens",
            &first.admin,
            json!({"name": "v", "permissions": ["keys:verify"]}),
        )
        .await;
    let verifier = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["service_token"]["id"].as_str().unwrap();
    let check = async || {
        second
            .post("/v1/verify", &verifier, json!({"key": "sk_live_x"}))
            .await
            .status
    };
    assert_eq!(check().await, StatusCode::OK);

    first
        .post(&format!("/v1/service-tokens/{id}/revoke"), &first.admin, json!({}))
        .await;

    assert!(eventually(async || check().await == StatusCode::UNAUTHORIZED).await);
}

#[sqlx::test]
async fn a_signing_key_seen_before_verifies_signed_requests_without_the_key_table(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let key_id = created.body["key"]["id"].as_str().unwrap().to_owned();
    let secret = created.body["signing_secret"].as_str().unwrap().to_owned();
    let check = async |path: &str| {
        let mut signed = keyward::signing::Request::new("GET", path, "").with_header("Host", "api.example.com");
        keyward::signing::keyward_hmac::sign(&mut signed, &key_id, secret.as_bytes(), app.clock().now()).unwrap();
        let body = json!({"method": "GET", "path": path, "query": "", "headers": signed.headers});
        app.post("/v1/verify/request", &app.admin, body).await.body["code"].clone()
    };
    assert_eq!(check("/first").await, "VALID");

    sqlx::query("ALTER TABLE api_keys RENAME TO api_keys_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let answer = check("/second").await;
    sqlx::query("ALTER TABLE api_keys_away RENAME TO api_keys")
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(answer, "VALID");
}

#[sqlx::test]
async fn changing_a_tenants_signature_settings_reaches_cached_signers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let key_id = created.body["key"]["id"].as_str().unwrap().to_owned();
    let secret = created.body["signing_secret"].as_str().unwrap().to_owned();
    let mut signed = keyward::signing::Request::new("GET", "/orders", "").with_header("Host", "api.example.com");
    keyward::signing::keyward_hmac::sign(&mut signed, &key_id, secret.as_bytes(), app.clock().now()).unwrap();
    let body = json!({"method": "GET", "path": "/orders", "query": "", "headers": signed.headers});
    assert_eq!(
        app.post("/v1/verify/request", &app.admin, body.clone()).await.body["code"],
        "VALID"
    );

    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"settings": {"replay_protection": false}}),
    )
    .await;

    // A replay is refused under the old settings; the cached signer must follow the change.
    assert_eq!(
        app.post("/v1/verify/request", &app.admin, body).await.body["code"],
        "VALID"
    );
}

/// Sends `signal` (`STOP`, `CONT`) to a PostgreSQL backend of the test's own server.
fn signal_backend(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Resumes a stopped backend however the test ends, so that its database can be dropped.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal_backend(self.0, "CONT");
    }
}

#[sqlx::test]
async fn a_replica_whose_listener_hangs_notices_and_refuses_a_revoked_key(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second_pool = own_pool(&pool, "replica-two", 5000).await;
    let second = TestApp::spawn_configured(second_pool, TestApp::config(), |ctx| ctx).await;
    let tenant = first.tenant("acme").await;
    let (key, token) = first.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(second.verify(&token, &[]).await["code"], "VALID");
    // The second replica's listening backend stops, with its socket open: nothing is delivered.
    let listener: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'replica-two' AND query LIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    signal_backend(listener, "STOP");
    let resume = Resume(listener);

    let revoked = first
        .post(
            &format!("/v1/tenants/{tenant}/keys/{}/revoke", key["id"].as_str().unwrap()),
            &first.admin,
            json!({}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let mut refused = false;
    for _ in 0..100 {
        if second.verify(&token, &[]).await["code"] == "REVOKED" {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    drop(resume);
    second.pool.close().await;
    assert!(refused, "the second replica still trusted its cache");
}

/// Runs `during` with the key table out of reach: only memory can answer.
async fn without_the_key_table<T>(pool: &PgPool, during: impl AsyncFnOnce() -> T) -> T {
    sqlx::query("ALTER TABLE api_keys RENAME TO api_keys_away")
        .execute(pool)
        .await
        .unwrap();
    let answer = during().await;
    sqlx::query("ALTER TABLE api_keys_away RENAME TO api_keys")
        .execute(pool)
        .await
        .unwrap();
    answer
}

#[sqlx::test]
async fn a_flood_of_tokens_that_match_no_key_is_refused_without_the_database(pool: PgPool) {
    // Up to 50 "no such key" answers a second are confirmed by a lookup (a key created on another
    // replica an instant ago may not be announced here yet); the rest come from memory alone.
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.key(&tenant, json!({"name": "k"})).await;
    let unknown: Vec<String> = (0..300)
        .map(|_| keyward::domain::token::NewToken::generate(keyward::domain::token::TokenPrefix::Live))
        .map(|token| token.expose().to_owned())
        .collect();
    assert_eq!(app.verify(&unknown[0], &[]).await["code"], "NOT_FOUND"); // the caller is now cached

    let answers = without_the_key_table(&app.pool, async || {
        let mut answers = Vec::new();
        for token in &unknown {
            let reply = app.post("/v1/verify", &app.admin, json!({"key": token})).await;
            answers.push((reply.status, reply.body["code"].clone()));
        }
        answers
    })
    .await;

    let from_memory = answers
        .iter()
        .filter(|(status, code)| *status == StatusCode::OK && *code == "NOT_FOUND")
        .count();
    assert!(
        from_memory >= 200,
        "only {from_memory} of 300 answered without the key table"
    );
}

#[sqlx::test]
async fn a_key_not_yet_cached_still_needs_the_database(pool: PgPool) {
    // The control for the test above: a real key that was never verified is looked up.
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(app.verify(&token[..token.len() - 1], &[]).await["code"], "MALFORMED");

    let status = without_the_key_table(&app.pool, async || {
        app.post("/v1/verify", &app.admin, json!({"key": token})).await.status
    })
    .await;

    assert_ne!(status, StatusCode::OK);
}

#[sqlx::test]
async fn a_key_created_on_one_replica_verifies_on_another_at_once(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;
    let probe = keyward::domain::token::NewToken::generate(keyward::domain::token::TokenPrefix::Live);
    assert_eq!(second.verify(probe.expose(), &[]).await["code"], "NOT_FOUND");

    for n in 0..20 {
        let (_, token) = first.key(&tenant, json!({"name": format!("k{n}")})).await;
        assert_eq!(second.verify(&token, &[]).await["code"], "VALID", "key {n}");
    }
}

#[sqlx::test]
async fn a_signing_key_created_on_one_replica_signs_on_another_at_once(pool: PgPool) {
    use keyward::signing::{keyward_hmac, Body, Request};
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    let tenant = first.tenant("acme").await;

    let created = first
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &first.admin,
            json!({"name": "s", "signing": true}),
        )
        .await;
    let (id, secret) = (
        created.body["key"]["id"].as_str().unwrap(),
        created.body["signing_secret"].as_str().unwrap(),
    );
    let mut request = Request::new("GET", "/v1/orders", "").with_header("Host", "api.example.com");
    request.body = Body::Bytes(Vec::new());
    keyward_hmac::sign(&mut request, id, secret.as_bytes(), second.clock().now()).unwrap();
    let answer = second
        .post(
            "/v1/verify/request",
            &second.admin,
            json!({"method": "GET", "path": "/v1/orders", "query": "", "headers": request.headers, "body_base64": ""}),
        )
        .await;

    assert_eq!(answer.body["code"], "VALID", "{:?}", answer.body);
}

/// Ends the change listener's connection of the replica whose pool is named `application`.
async fn terminate_listener(pool: &PgPool, application: &str) {
    let ended: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(application)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(ended);
}

#[sqlx::test]
async fn keys_created_and_revoked_across_a_forced_listener_reconnect_are_seen(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second_pool = own_pool(&pool, "replica-two", 5000).await;
    let second = TestApp::spawn_configured(second_pool, TestApp::config(), |ctx| ctx).await;
    let tenant = first.tenant("acme").await;
    let (old, old_token) = first.key(&tenant, json!({"name": "old"})).await;
    assert_eq!(second.verify(&old_token, &[]).await["code"], "VALID");

    terminate_listener(&pool, "replica-two").await;
    let (_, new_token) = first.key(&tenant, json!({"name": "new"})).await;
    let revoked = first
        .post(
            &format!("/v1/tenants/{tenant}/keys/{}/revoke", old["id"].as_str().unwrap()),
            &first.admin,
            json!({}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);

    assert!(eventually(async || second.verify(&new_token, &[]).await["code"] == "VALID").await);
    assert!(eventually(async || second.verify(&old_token, &[]).await["code"] == "REVOKED").await);
    second.pool.close().await;
}

#[sqlx::test]
async fn keys_looked_up_together_are_read_in_one_batch_each_with_its_own_answer(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let mut keys = Vec::new();
    for n in 0..32 {
        keys.push(app.key(&tenant, json!({"name": format!("k{n}")})).await);
    }
    // A service token's hash is known but is no customer key: looked up, and not found.
    let service_token = app.service_token(Some(&tenant), &[]).await;
    let (engine, pool) = (&app.ctx.verify, &app.ctx.pool);
    let before = engine.lookup_batches();

    let (customer, service) = (keyward::domain::ids::KeyKind::Customer, TokenHash::of(&service_token));
    let lookups = keys
        .iter()
        .map(|(_, token)| TokenHash::of(token))
        .chain([service])
        .map(|hash| async move { engine.find_by_hash(pool, customer, &hash).await.unwrap() });
    let found = futures_util::future::join_all(lookups).await;

    for ((key, _), found) in keys.iter().zip(&found) {
        assert_eq!(found.as_ref().map(|f| f.id().as_str()), key["id"].as_str());
    }
    assert!(found[32].is_none(), "a service token was found as a customer key");
    let batches = engine.lookup_batches() - before;
    assert!((1..=4).contains(&batches), "33 lookups took {batches} batches");
}
