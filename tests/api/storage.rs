//! What keyward stores: a full `pg_dump` after issuing, rotating and revoking every kind of
//! token holds none of them in any common encoding, only their SHA-256.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::helpers::{own_pool, pg_program, TestApp};

const BODY_LEN: usize = 43;

/// The plain-SQL dump of this test's whole database; panics if pg_dump fails.
async fn pg_dump(app: &TestApp) -> String {
    let url = app.database_url();
    let program = pg_program("pg_dump");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(["--no-password", "--dbname", &url])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the dump is UTF-8")
}

fn prefix_len(token: &str) -> usize {
    ["sk_live_", "sk_test_", "kw_svc_"]
        .iter()
        .find(|p| token.starts_with(*p))
        .unwrap_or_else(|| panic!("unexpected token shape {token:?}"))
        .len()
}

/// Every text form of `token` that must not appear in storage: the token, its body (the 43
/// random characters), body + checksum, each raw and in base64 (standard and URL-safe, with and
/// without padding) and hex (lower and upper case).
fn forbidden_forms(token: &str) -> Vec<(String, String)> {
    let p = prefix_len(token);
    let parts = [
        ("token", token),
        ("body", &token[p..p + BODY_LEN]),
        ("body+checksum", &token[p..]),
    ];
    let mut forms = Vec::new();
    for (part, text) in parts {
        let bytes = text.as_bytes();
        forms.push((format!("{part} raw"), text.to_owned()));
        forms.push((format!("{part} base64"), STANDARD.encode(bytes)));
        forms.push((format!("{part} base64 no pad"), STANDARD_NO_PAD.encode(bytes)));
        forms.push((format!("{part} base64url"), URL_SAFE.encode(bytes)));
        forms.push((format!("{part} base64url no pad"), URL_SAFE_NO_PAD.encode(bytes)));
        forms.push((format!("{part} hex"), hex::encode(bytes)));
        forms.push((format!("{part} HEX"), hex::encode_upper(bytes)));
    }
    forms
}

#[sqlx::test]
async fn a_full_pg_dump_holds_no_token_in_any_encoding(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut tokens = vec![app.admin.clone()];
    let mut ids = Vec::new();

    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    for (tenant, environment) in [(&acme, "live"), (&acme, "test"), (&globex, "live")] {
        let (key, token) = app
            .key(
                tenant,
                json!({"name": "k", "environment": environment, "scopes": ["billing:read"],
                       "metadata": {"plan": "pro"}}),
            )
            .await;
        assert!(token.starts_with(&format!("sk_{environment}_")));
        let id = key["id"].as_str().unwrap().to_owned();
        let rotated = app
            .post(&format!("/v1/tenants/{tenant}/keys/{id}/rotate"), &app.admin, json!({}))
            .await;
        assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
        tokens.push(token);
        tokens.push(rotated.body["token"].as_str().unwrap().to_owned());
        ids.push(id);
        ids.push(rotated.body["key"]["id"].as_str().unwrap().to_owned());
    }
    // One key revoked, one verified (last use and a failed-verify event are written).
    let revoked = app
        .post(
            &format!("/v1/tenants/{acme}/keys/{}/revoke", ids[0]),
            &app.admin,
            json!({"reason": "test"}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(app.verify(&tokens[1], &[]).await["code"], "REVOKED");
    assert_eq!(app.verify(&tokens[2], &[]).await["code"], "VALID");
    for (path, name) in [
        ("/v1/service-tokens".to_owned(), "platform"),
        (format!("/v1/tenants/{acme}/service-tokens"), "acme"),
    ] {
        let created = app
            .post(&path, &app.admin, json!({"name": name, "permissions": ["keys:verify"]}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let id = created.body["service_token"]["id"].as_str().unwrap().to_owned();
        tokens.push(created.body["token"].as_str().unwrap().to_owned());
        let rotate = format!("{path}/{id}/rotate");
        let rotated = app.post(&rotate, &app.admin, json!({})).await;
        assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
        tokens.push(rotated.body["token"].as_str().unwrap().to_owned());
        ids.push(id);
    }
    tokens.push(
        app.service_token(Some(&globex), &[keyward::domain::permissions::Permission::KeysRead])
            .await,
    );
    app.flush().await;

    let dump = pg_dump(&app).await;

    // The dump really holds the keys: their ids and the hex of each token's SHA-256.
    for id in &ids {
        assert!(dump.contains(id.as_str()), "the dump lacks key {id}");
    }
    for token in &tokens {
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        assert!(dump.contains(&digest), "the dump lacks the hash of a token");
    }
    assert_eq!(tokens.len(), 12);
    for token in &tokens {
        for (form, text) in forbidden_forms(token) {
            assert!(
                !dump.contains(&text),
                "the dump holds a {}… token as {form}",
                &token[..prefix_len(token)]
            );
        }
    }
}

#[sqlx::test]
async fn pg_dump_is_installed_and_dumps_this_tests_database(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("storage-probe").await;

    let dump = pg_dump(&app).await;

    assert!(dump.contains("CREATE TABLE public.api_keys"));
    assert!(dump.contains(&tenant));
    assert!(dump.contains("storage-probe"));
}

#[sqlx::test]
async fn a_full_pg_dump_holds_no_signing_secret_in_any_encoding(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["key"]["id"].as_str().unwrap();
    let rotated = app
        .post(&format!("/v1/tenants/{tenant}/keys/{id}/rotate"), &app.admin, json!({}))
        .await;
    let mut secrets = Vec::new();
    for reply in [&created.body, &rotated.body] {
        secrets.push(reply["signing_secret"].as_str().unwrap().to_owned());
    }

    let dump = pg_dump(&app).await;

    for secret in &secrets {
        let raw = URL_SAFE_NO_PAD.decode(secret).unwrap();
        let forms = [
            secret.clone(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            hex::encode(secret),
            hex::encode_upper(secret),
            STANDARD.encode(&raw),
            hex::encode(&raw),
            hex::encode_upper(&raw),
        ];
        for form in forms {
            assert!(!dump.contains(&form), "a signing secret is recoverable from the dump");
        }
    }
    assert!(dump.contains(id), "the dump holds the keys themselves");
}

#[sqlx::test]
async fn a_table_locked_by_another_session_answers_503_instead_of_waiting(pool: PgPool) {
    let limited = own_pool(&pool, "limited", 300).await;
    let app = TestApp::spawn_configured(limited, TestApp::config(), |ctx| ctx).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, serde_json::json!({"name": "k"})).await;
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();

    let reply = app
        .post("/v1/verify", &app.admin, serde_json::json!({"key": token}))
        .await;

    assert_eq!(
        reply.status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["type"], "urn:keyward:problem:unavailable");
    locker.rollback().await.unwrap();
    // This pool is the test's own: close it so that the test database can be dropped.
    app.pool.close().await;
}
