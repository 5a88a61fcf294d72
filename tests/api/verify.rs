//! POST /v1/verify: one code per state of a key, scopes, tenant isolation, and no lookup for
//! malformed tokens.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{server_pool, TestApp};
use keyward::domain::permissions::Permission;

#[sqlx::test]
async fn fresh_key_is_valid_and_verify_returns_its_details(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app
        .key(
            &tenant,
            json!({"name": "checkout", "environment": "test", "scopes": ["billing:read"],
                   "metadata": {"plan": "pro"}, "owner_id": "user_42", "ttl_seconds": 3600}),
        )
        .await;

    let answer = app.verify(&token, &["billing:read"]).await;

    assert_eq!(answer["valid"], true);
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["key_id"], key["id"]);
    assert_eq!(answer["tenant_id"], tenant.as_str());
    assert_eq!(answer["environment"], "test");
    assert_eq!(answer["scopes"], json!(["billing:read"]));
    assert_eq!(answer["metadata"], json!({"plan": "pro"}));
    assert_eq!(answer["owner_id"], "user_42");
    assert_eq!(answer["expires_at"], key["expires_at"]);
}

#[sqlx::test]
async fn token_with_a_bad_checksum_is_malformed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;
    let mut typo = token.clone().into_bytes();
    typo[12] = if typo[12] == b'x' { b'y' } else { b'x' };

    let answer = app.verify(&String::from_utf8(typo).unwrap(), &[]).await;

    assert_eq!(answer, json!({"valid": false, "code": "MALFORMED"}));
}

#[sqlx::test]
async fn garbage_and_empty_keys_are_malformed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for garbage in ["", "hello", "sk_live_", "sk_live_short", "Bearer sk_live_x"] {
        assert_eq!(app.verify(garbage, &[]).await["code"], "MALFORMED", "{garbage:?}");
    }
}

#[sqlx::test]
async fn well_formed_unknown_token_is_not_found(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = keyward::domain::token::NewToken::generate(keyward::domain::token::TokenPrefix::Live);

    let answer = app.verify(token.expose(), &[]).await;

    assert_eq!(answer, json!({"valid": false, "code": "NOT_FOUND"}));
}

#[sqlx::test]
async fn expired_key_is_expired(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k", "ttl_seconds": 60})).await;
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");

    app.advance(61);

    assert_eq!(
        app.verify(&token, &[]).await,
        json!({"valid": false, "code": "EXPIRED"})
    );
}

#[sqlx::test]
async fn revoked_key_is_revoked_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k"})).await;

    let revoke = app
        .post(
            &format!("/v1/tenants/{tenant}/keys/{}/revoke", key["id"].as_str().unwrap()),
            &app.admin,
            json!({"reason": "leaked"}),
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);

    assert_eq!(app.verify(&token, &[]).await["code"], "REVOKED");
}

#[sqlx::test]
async fn disabled_key_is_disabled_and_works_again_when_enabled(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "enabled": false})).await;
    assert_eq!(app.verify(&token, &[]).await["code"], "DISABLED");

    let path = format!("/v1/tenants/{tenant}/keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.patch(&path, &app.admin, json!({"enabled": true})).await.status,
        StatusCode::OK
    );

    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
}

#[sqlx::test]
async fn key_of_a_suspended_tenant_is_tenant_suspended(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;

    let suspend = app
        .patch(
            &format!("/v1/tenants/{tenant}"),
            &app.admin,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(suspend.status, StatusCode::OK);
    assert_eq!(app.verify(&token, &[]).await["code"], "TENANT_SUSPENDED");

    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"status": "active"}),
    )
    .await;
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
}

#[sqlx::test]
async fn missing_scope_is_insufficient_scope(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k", "scopes": ["billing:read"]})).await;

    let answer = app.verify(&token, &["billing:read", "billing:write"]).await;

    assert_eq!(answer, json!({"valid": false, "code": "INSUFFICIENT_SCOPE"}));
}

#[sqlx::test]
async fn wildcard_scope_covers_a_suffix(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k", "scopes": ["billing:*"]})).await;

    assert_eq!(app.verify(&token, &["billing:read"]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &["billing:invoices:write"]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &["users:read"]).await["code"], "INSUFFICIENT_SCOPE");
}

#[sqlx::test]
async fn tenant_bound_verifier_cannot_see_another_tenants_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (_, acme_key) = app.key(&acme, json!({"name": "k"})).await;
    let (_, globex_key) = app.key(&globex, json!({"name": "k"})).await;
    let acme_verifier = app.service_token(Some(&acme), &[Permission::KeysVerify]).await;

    assert_eq!(app.verify_as(&acme_verifier, &acme_key, &[]).await["code"], "VALID");
    assert_eq!(
        app.verify_as(&acme_verifier, &globex_key, &[]).await,
        json!({"valid": false, "code": "NOT_FOUND"})
    );
}

#[sqlx::test]
async fn verify_needs_the_keys_verify_permission(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let reader = app.service_token(None, &[Permission::KeysRead]).await;

    let reply = app.post("/v1/verify", &reader, json!({"key": "sk_live_x"})).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type(), "application/problem+json");
}

#[sqlx::test]
async fn verify_without_credentials_is_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .call(
            reqwest::Method::POST,
            "/v1/verify",
            None,
            Some(json!({"key": "sk_live_x"})),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key("www-authenticate"));
}

#[sqlx::test]
async fn customer_key_never_authenticates_to_keywards_own_api(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;

    let reply = app.post("/v1/verify", &token, json!({"key": token})).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn invalid_required_scope_is_a_validation_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/verify",
            &app.admin,
            json!({"key": "sk_live_x", "scopes": ["Not A Scope"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "scopes[0]");
}

#[sqlx::test]
async fn malformed_token_is_refused_without_touching_the_database(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // A context whose database cannot be reached: any lookup would be an error.
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(200))
        .connect_lazy("postgres://nobody@127.0.0.1:1/nowhere")
        .unwrap();
    let ctx: keyward::service::Context = keyward::service::ContextParts {
        pool: unreachable,
        ..app.ctx.clone().into_parts()
    }
    .into();
    let caller = keyward::domain::permissions::Caller::service(
        keyward::domain::ids::KeyId::generate(keyward::domain::ids::KeyKind::Service),
        keyward::domain::permissions::TenantScope::Platform,
        vec![Permission::KeysVerify],
    );
    let meta = keyward::domain::audit::RequestMeta::default();

    let verdict = keyward::verify::verify_key(&ctx, &caller, &meta, "sk_live_not_a_real_token", None, &[])
        .await
        .unwrap();

    assert_eq!(verdict.code, keyward::verify::VerifyCode::Malformed);
}

#[sqlx::test]
async fn verify_records_last_used_without_a_write_per_call(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k"})).await;
    let id = key["id"].as_str().unwrap();
    for _ in 0..5 {
        assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    }
    let before_flush = app.get(&format!("/v1/tenants/{tenant}/keys/{id}"), &app.admin).await;
    assert_eq!(
        before_flush.body["last_used_at"],
        serde_json::Value::Null,
        "verify must not write synchronously"
    );

    app.flush().await;

    let shown = app.get(&format!("/v1/tenants/{tenant}/keys/{id}"), &app.admin).await;
    assert!(shown.body["last_used_at"].is_string(), "{:?}", shown.body);
}

/// The row version of a key: it changes with every write of the row.
async fn row_version(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT xmin::text FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn verifying_a_key_writes_no_key_row_yet_its_last_use_is_shown(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k"})).await;
    let id = key["id"].as_str().unwrap();
    let version = row_version(&app, id).await;

    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    app.flush().await;

    assert_eq!(row_version(&app, id).await, version, "the key's row was written");
    let shown = app.get(&format!("/v1/tenants/{tenant}/keys/{id}"), &app.admin).await;
    let last_used: chrono::DateTime<chrono::Utc> = shown.body["last_used_at"].as_str().unwrap().parse().unwrap();
    assert!((app.clock().now() - last_used).num_seconds().abs() <= 1, "{last_used}");
}

#[sqlx::test]
async fn the_last_use_is_the_newest_success_not_a_later_refusal(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "scopes": ["billing:read"]})).await;
    let id = key["id"].as_str().unwrap();
    assert_eq!(app.verify(&token, &["billing:read"]).await["code"], "VALID");
    app.flush().await;
    let after_success = app.get(&format!("/v1/tenants/{tenant}/keys/{id}"), &app.admin).await;

    app.advance(120);
    assert_eq!(
        app.verify(&token, &["billing:write"]).await["code"],
        "INSUFFICIENT_SCOPE"
    );
    app.flush().await;

    let shown = app.get(&format!("/v1/tenants/{tenant}/keys/{id}"), &app.admin).await;
    assert_eq!(shown.body["last_used_at"], after_success.body["last_used_at"]);
}

#[sqlx::test]
async fn a_keys_last_use_outlives_the_pruning_of_its_counts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k"})).await;
    let id = key["id"].as_str().unwrap();
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    app.flush().await;
    let used = app.get(&format!("/v1/tenants/{tenant}/keys/{id}"), &app.admin).await;
    assert!(used.body["last_used_at"].is_string(), "{:?}", used.body);

    app.advance(401 * 24 * 3600);
    keyward::background::prune(&app.pool, app.clock().now()).await.unwrap();

    let counts: i64 = sqlx::query_scalar("SELECT count(*) FROM verification_counts WHERE key_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(counts, 0, "the counts were not pruned");
    let shown = app.get(&format!("/v1/tenants/{tenant}/keys/{id}"), &app.admin).await;
    assert_eq!(shown.body["last_used_at"], used.body["last_used_at"]);
}

#[sqlx::test]
async fn failed_verification_is_audited_without_the_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "ttl_seconds": 10})).await;
    app.advance(11);
    assert_eq!(app.verify(&token, &[]).await["code"], "EXPIRED");

    app.flush().await;

    let events = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?action=key.verify_failed"),
            &app.admin,
        )
        .await;
    let event = &events.body["items"][0];
    assert_eq!(event["target_id"], key["id"]);
    assert_eq!(event["outcome"], "denied");
    assert_eq!(event["details"]["code"], "EXPIRED");
    assert!(!events.body.to_string().contains(&token[8..]));
}

#[sqlx::test]
async fn required_scopes_with_empty_segments_are_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k", "scopes": ["billing:*"]})).await;

    for empty in ["billing:", "billing::", "billing::read", ":billing"] {
        let reply = app
            .post("/v1/verify", &app.admin, json!({"key": token, "scopes": [empty]}))
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{empty}");
        assert_eq!(reply.body["errors"][0]["field"], "scopes[0]");
    }
}

#[sqlx::test]
async fn a_key_cannot_be_granted_a_scope_with_an_empty_segment(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "k", "scopes": ["billing::"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A key stored by an older version with a scope that has an empty segment (`billing:`, then
/// accepted): it keeps working with its other scopes, and can still be listed and revoked.
async fn key_with_a_legacy_scope(app: &TestApp, tenant: &str) -> (String, String) {
    let (key, token) = app
        .key(tenant, json!({"name": "old", "scopes": ["billing:read"]}))
        .await;
    let id = key["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE api_keys SET scopes = ARRAY['billing:', 'billing:read'] WHERE id = $1")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    (id, token)
}

#[sqlx::test]
async fn a_stored_scope_no_longer_valid_is_not_granted_and_the_rest_still_verify(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = key_with_a_legacy_scope(&app, &tenant).await;

    let answer = app.verify(&token, &["billing:read"]).await;

    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["scopes"], json!(["billing:read"]));
}

#[sqlx::test]
async fn a_key_with_a_stored_scope_no_longer_valid_can_be_listed_and_revoked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (id, token) = key_with_a_legacy_scope(&app, &tenant).await;

    let listing = app.get(&format!("/v1/tenants/{tenant}/keys"), &app.admin).await;
    let revoked = app
        .post(&format!("/v1/tenants/{tenant}/keys/{id}/revoke"), &app.admin, json!({}))
        .await;

    assert_eq!(listing.status, StatusCode::OK, "{:?}", listing.body);
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    assert_eq!(app.verify(&token, &[]).await["code"], "REVOKED");
}

#[sqlx::test]
async fn refusals_never_wait_for_the_usage_writer(pool: PgPool) {
    // Built but not served: nothing writes the tallies, as when the database is frozen.
    let app = keyward::app::App::build(
        &TestApp::config(),
        server_pool(&pool).await,
        keyward::clock::Clock::system(),
    )
    .unwrap();
    let caller = keyward::domain::permissions::Caller::service(
        keyward::domain::ids::KeyId::generate(keyward::domain::ids::KeyKind::Service),
        keyward::domain::permissions::TenantScope::Platform,
        vec![Permission::KeysVerify],
    );
    let meta = keyward::domain::audit::RequestMeta::default();
    let calls = 20_000;

    // A guard against a hang, not a speed check: each call needs no database at all.
    let answered = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        let mut codes = Vec::with_capacity(calls);
        for _ in 0..calls {
            let verdict = keyward::verify::verify_key(&app.ctx, &caller, &meta, "sk_live_garbage", None, &[])
                .await
                .unwrap();
            codes.push(verdict.code);
        }
        codes
    })
    .await
    .expect("a refusal waited for the usage writer");

    assert!(answered
        .iter()
        .all(|code| *code == keyward::verify::VerifyCode::Malformed));
    assert_eq!(
        app.ctx.verify.dropped_outcomes(),
        0,
        "all of them counted, in one counter"
    );
}
