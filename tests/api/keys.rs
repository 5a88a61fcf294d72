//! Key lifecycle over HTTP: create, list with filters and cursors, read, change, rotate, revoke.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;

fn keys_path(tenant: &str) -> String {
    format!("/v1/tenants/{tenant}/keys")
}

#[sqlx::test]
async fn created_key_shows_its_token_once_and_never_again(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let (key, token) = app
        .key(&tenant, json!({"name": "checkout", "scopes": ["billing:read"]}))
        .await;

    assert!(token.starts_with("sk_live_"));
    assert_eq!(token.len(), "sk_live_".len() + 49);
    assert_eq!(key["start"], &token[8..12]);
    assert_eq!(key["status"], "active");
    assert_eq!(key["environment"], "live");
    let id = key["id"].as_str().unwrap();
    assert!(id.starts_with("key_"));
    let shown = app.get(&format!("{}/{id}", keys_path(&tenant)), &app.admin).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.body.to_string().contains(&token[8..]));
    let listed = app.get(&keys_path(&tenant), &app.admin).await;
    assert!(!listed.body.to_string().contains(&token[8..]));
}

#[sqlx::test]
async fn test_environment_keys_get_the_test_prefix(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let (_, token) = app.key(&tenant, json!({"name": "ci", "environment": "test"})).await;

    assert!(token.starts_with("sk_test_"));
}

#[sqlx::test]
async fn invalid_key_settings_are_refused_field_by_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &keys_path(&tenant),
            &app.admin,
            json!({"name": " ", "scopes": ["ok", "NOT OK"], "metadata": {"big": "x".repeat(5000)},
                   "expires_at": "2000-01-01T00:00:00Z"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.content_type(), "application/problem+json");
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "scopes[1]", "metadata", "expires_at"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE kind = 'customer'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn rotated_key_and_its_successor_both_verify_during_the_grace_period(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app
        .key(
            &tenant,
            json!({"name": "k", "scopes": ["billing:read"], "metadata": {"a": 1}}),
        )
        .await;
    let old_id = old["id"].as_str().unwrap();

    let rotated = app
        .post(
            &format!("{}/{old_id}/rotate", keys_path(&tenant)),
            &app.admin,
            json!({"grace_period_seconds": 3600}),
        )
        .await;

    assert_eq!(rotated.status, StatusCode::CREATED);
    let new_token = rotated.body["token"].as_str().unwrap();
    assert_eq!(rotated.body["key"]["scopes"], json!(["billing:read"]));
    assert_eq!(rotated.body["key"]["metadata"], json!({"a": 1}));
    assert_eq!(rotated.body["key"]["rotated_from"], old_id);
    assert_eq!(rotated.body["previous"]["id"], old_id);
    assert_eq!(app.verify(&old_token, &["billing:read"]).await["code"], "VALID");
    assert_eq!(app.verify(new_token, &["billing:read"]).await["code"], "VALID");
}

#[sqlx::test]
async fn rotated_away_key_expires_after_the_grace_period(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k"})).await;
    let rotated = app
        .post(
            &format!("{}/{}/rotate", keys_path(&tenant), old["id"].as_str().unwrap()),
            &app.admin,
            json!({"grace_period_seconds": 3600}),
        )
        .await;
    let new_token = rotated.body["token"].as_str().unwrap().to_owned();

    app.advance(3601);

    assert_eq!(app.verify(&old_token, &[]).await["code"], "EXPIRED");
    assert_eq!(app.verify(&new_token, &[]).await["code"], "VALID");
}

#[sqlx::test]
async fn rotation_uses_a_one_day_grace_period_by_default(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k"})).await;

    let reply = app
        .call(
            reqwest::Method::POST,
            &format!("{}/{}/rotate", keys_path(&tenant), old["id"].as_str().unwrap()),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);

    app.advance(86_400 - 60);
    assert_eq!(app.verify(&old_token, &[]).await["code"], "VALID");
    app.advance(120);
    assert_eq!(app.verify(&old_token, &[]).await["code"], "EXPIRED");
}

#[sqlx::test]
async fn zero_grace_period_ends_the_old_key_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, old_token) = app.key(&tenant, json!({"name": "k"})).await;

    app.post(
        &format!("{}/{}/rotate", keys_path(&tenant), old["id"].as_str().unwrap()),
        &app.admin,
        json!({"grace_period_seconds": 0}),
    )
    .await;

    assert_eq!(app.verify(&old_token, &[]).await["code"], "EXPIRED");
}

#[sqlx::test]
async fn rotation_never_extends_the_old_keys_expiry(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (old, _) = app.key(&tenant, json!({"name": "k", "ttl_seconds": 600})).await;

    let rotated = app
        .post(
            &format!("{}/{}/rotate", keys_path(&tenant), old["id"].as_str().unwrap()),
            &app.admin,
            json!({"grace_period_seconds": 86400}),
        )
        .await;

    assert_eq!(rotated.body["previous"]["expires_at"], old["expires_at"]);
}

#[sqlx::test]
async fn revoked_key_cannot_be_rotated_changed_or_revoked_again(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, _) = app.key(&tenant, json!({"name": "k"})).await;
    let path = format!("{}/{}", keys_path(&tenant), key["id"].as_str().unwrap());
    let revoked = app.post(&format!("{path}/revoke"), &app.admin, json!({})).await;
    assert_eq!(revoked.body["status"], "revoked");

    assert_eq!(
        app.post(&format!("{path}/rotate"), &app.admin, json!({})).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.patch(&path, &app.admin, json!({"name": "x"})).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(&format!("{path}/revoke"), &app.admin, json!({})).await.status,
        StatusCode::CONFLICT
    );
}

#[sqlx::test]
async fn patch_changes_only_the_given_fields(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app
        .key(
            &tenant,
            json!({"name": "k", "scopes": ["a"], "owner_id": "u1", "metadata": {"x": 1}}),
        )
        .await;
    let path = format!("{}/{}", keys_path(&tenant), key["id"].as_str().unwrap());

    let reply = app
        .patch(&path, &app.admin, json!({"scopes": ["a", "b"], "owner_id": null}))
        .await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["name"], "k");
    assert_eq!(reply.body["scopes"], json!(["a", "b"]));
    assert_eq!(reply.body["owner_id"], serde_json::Value::Null);
    assert_eq!(reply.body["metadata"], json!({"x": 1}));
    assert_eq!(app.verify(&token, &["b"]).await["code"], "VALID");
}

#[sqlx::test]
async fn list_filters_by_status_environment_and_owner(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (active, _) = app.key(&tenant, json!({"name": "a", "owner_id": "alice"})).await;
    let (revoked, _) = app.key(&tenant, json!({"name": "r", "environment": "test"})).await;
    let (expiring, _) = app.key(&tenant, json!({"name": "e", "ttl_seconds": 5})).await;
    app.post(
        &format!("{}/{}/revoke", keys_path(&tenant), revoked["id"].as_str().unwrap()),
        &app.admin,
        json!({}),
    )
    .await;
    app.advance(6);

    let ids = |reply: crate::helpers::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let base = keys_path(&tenant);
    assert_eq!(
        ids(app.get(&format!("{base}?status=active"), &app.admin).await),
        [active["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(app.get(&format!("{base}?status=revoked"), &app.admin).await),
        [revoked["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(app.get(&format!("{base}?status=expired"), &app.admin).await),
        [expiring["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(app.get(&format!("{base}?environment=test"), &app.admin).await),
        [revoked["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(app.get(&format!("{base}?owner_id=alice"), &app.admin).await),
        [active["id"].as_str().unwrap()]
    );
}

#[sqlx::test]
async fn list_pages_through_every_key_with_the_cursor(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let mut created = Vec::new();
    for i in 0..5 {
        let (key, _) = app.key(&tenant, json!({"name": format!("k{i}")})).await;
        created.push(key["id"].as_str().unwrap().to_owned());
    }

    let mut seen = Vec::new();
    let mut path = format!("{}?limit=2", keys_path(&tenant));
    loop {
        let page = app.get(&path, &app.admin).await;
        assert_eq!(page.status, StatusCode::OK);
        for key in page.body["items"].as_array().unwrap() {
            seen.push(key["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("{}?limit=2&cursor={cursor}", keys_path(&tenant)),
            None => break,
        }
    }

    created.reverse();
    assert_eq!(seen, created, "newest first, each once");
}

#[sqlx::test]
async fn list_limit_above_100_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app.get(&format!("{}?limit=101", keys_path(&tenant)), &app.admin).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "limit");
}

#[sqlx::test]
async fn keys_of_another_tenant_are_not_found_for_a_tenant_bound_caller(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (globex_key, _) = app.key(&globex, json!({"name": "k"})).await;
    let acme_admin = app
        .service_token(
            Some(&acme),
            &[
                keyward::domain::permissions::Permission::KeysRead,
                keyward::domain::permissions::Permission::KeysWrite,
            ],
        )
        .await;
    let gid = globex_key["id"].as_str().unwrap();

    assert_eq!(
        app.get(&keys_path(&globex), &acme_admin).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{}/{gid}", keys_path(&globex)), &acme_admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Naming the other tenant's key under one's own tenant finds nothing either.
    assert_eq!(
        app.get(&format!("{}/{gid}", keys_path(&acme)), &acme_admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(&format!("{}/{gid}/revoke", keys_path(&acme)), &acme_admin, json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test]
async fn keys_cannot_be_issued_in_a_suspended_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"status": "suspended"}),
    )
    .await;

    let reply = app.post(&keys_path(&tenant), &app.admin, json!({"name": "k"})).await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
}

#[sqlx::test]
async fn unknown_or_malformed_key_ids_are_not_found(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    for id in [
        "key_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "nope",
        "svc_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "'%20OR%201=1",
    ] {
        let reply = app.get(&format!("{}/{id}", keys_path(&tenant)), &app.admin).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(reply.content_type(), "application/problem+json");
    }
}

#[sqlx::test]
async fn a_signing_key_shows_its_signing_secret_once_and_stores_it_encrypted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &keys_path(&tenant),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let secret = reply.body["signing_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 43);
    assert_eq!(reply.body["key"]["signing"], true);
    let id = reply.body["key"]["id"].as_str().unwrap();
    let shown = app.get(&format!("{}/{id}", keys_path(&tenant)), &app.admin).await;
    assert!(!shown.body.to_string().contains(secret));
    let stored: Vec<u8> = sqlx::query_scalar("SELECT signing_secret FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

#[sqlx::test]
async fn rotating_a_signing_key_issues_a_new_signing_secret(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &keys_path(&tenant),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    let id = created.body["key"]["id"].as_str().unwrap();

    let rotated = app
        .post(&format!("{}/{id}/rotate", keys_path(&tenant)), &app.admin, json!({}))
        .await;

    assert_eq!(rotated.status, StatusCode::CREATED);
    assert_eq!(rotated.body["key"]["signing"], true);
    assert_ne!(rotated.body["signing_secret"], created.body["signing_secret"]);
    assert_eq!(rotated.body["signing_secret"].as_str().unwrap().len(), 43);
}

#[sqlx::test]
async fn a_key_without_signing_has_no_signing_secret(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(&keys_path(&tenant), &app.admin, json!({"name": "plain"}))
        .await;

    assert!(reply.body.get("signing_secret").is_none());
    assert_eq!(reply.body["key"]["signing"], false);
}

#[sqlx::test]
async fn an_expired_key_cannot_be_brought_back_by_patching_its_expiry(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k", "ttl_seconds": 60})).await;
    app.advance(61);

    let reply = app
        .patch(
            &format!("{}/{}", keys_path(&tenant), key["id"].as_str().unwrap()),
            &app.admin,
            json!({"expires_at": null}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(app.verify(&token, &[]).await["code"], "EXPIRED");
}

#[sqlx::test]
async fn rotating_with_signing_true_gives_a_plain_key_a_signing_secret(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, _) = app.key(&tenant, json!({"name": "plain"})).await;

    let rotated = app
        .post(
            &format!("{}/{}/rotate", keys_path(&tenant), key["id"].as_str().unwrap()),
            &app.admin,
            json!({"signing": true}),
        )
        .await;

    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    assert_eq!(rotated.body["key"]["signing"], true);
    assert_eq!(rotated.body["signing_secret"].as_str().unwrap().len(), 43);
}
