//! Signed checkpoints of the audit chains: the head of each chain with new events is signed
//! with the audit key, listed per chain, and verifies with the public key anyone can read.

use ed25519_dalek::Verifier;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::Arc;

use crate::helpers::TestApp;
use keyward::crypto::audit_key::AuditKey;
use keyward::domain::permissions::Permission;

fn audit_key() -> Arc<AuditKey> {
    Arc::new(AuditKey::from_pem(&AuditKey::generate_pem()).unwrap())
}

async fn signing(pool: PgPool, key: Arc<AuditKey>) -> TestApp {
    TestApp::spawn_configured(pool, TestApp::config(), move |ctx| {
        keyward::service::ContextParts {
            audit_key: Some(key),
            ..ctx.into_parts()
        }
        .into()
    })
    .await
}

async fn sign(app: &TestApp) {
    keyward::service::audit::sign_checkpoints(&app.ctx).await.unwrap();
}

async fn checkpoints(app: &TestApp, tenant: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/v1/tenants/{tenant}/audit/checkpoints"), &app.admin)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["items"].as_array().unwrap().clone()
}

async fn newest_events(app: &TestApp, tenant: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/v1/tenants/{tenant}/audit?limit=100"), &app.admin)
        .await;
    reply.body["items"].as_array().unwrap().clone()
}

/// The public keys served to anyone, by key id.
async fn public_keys(app: &TestApp) -> Value {
    let reply = app.call(reqwest::Method::GET, "/v1/audit/public-key", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

/// Whether `checkpoint` verifies with the served key it names, over the documented message.
fn verifies(checkpoint: &Value, keys: &Value) -> bool {
    let key = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == checkpoint["key_id"])
        .expect("the checkpoint's key is served");
    let public: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let chain = checkpoint["tenant_id"].as_str().unwrap_or("platform");
    let message = format!(
        "keyward-audit-checkpoint-v1\n{chain}\n{}\n{}\n{}\n{}",
        checkpoint["event_id"],
        checkpoint["event_count"],
        checkpoint["hash"].as_str().unwrap(),
        checkpoint["signed_at"].as_str().unwrap()
    );
    let signature: [u8; 64] = hex::decode(checkpoint["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature))
        .is_ok()
}

#[sqlx::test]
async fn the_head_of_a_chain_is_signed_and_verifies_with_the_served_public_key(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    let tenant = app.tenant("acme").await;
    app.key(&tenant, json!({"name": "checkout"})).await;

    sign(&app).await;

    let events = newest_events(&app, &tenant).await;
    let found = checkpoints(&app, &tenant).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["event_id"], events[0]["id"]);
    assert_eq!(found[0]["hash"], events[0]["hash"]);
    assert_eq!(found[0]["event_count"], json!(events.len()));
    assert!(verifies(&found[0], &public_keys(&app).await));
}

#[sqlx::test]
async fn a_forged_checkpoint_does_not_verify(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    let tenant = app.tenant("acme").await;
    sign(&app).await;
    let mut forged = checkpoints(&app, &tenant).await[0].clone();

    forged["event_count"] = json!(forged["event_count"].as_i64().unwrap() + 1);

    assert!(!verifies(&forged, &public_keys(&app).await));
}

#[sqlx::test]
async fn a_chain_without_new_events_gets_no_new_checkpoint(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    let tenant = app.tenant("acme").await;
    sign(&app).await;
    sign(&app).await;
    assert_eq!(checkpoints(&app, &tenant).await.len(), 1);

    app.key(&tenant, json!({"name": "checkout"})).await;
    sign(&app).await;

    let found = checkpoints(&app, &tenant).await;
    assert_eq!(found.len(), 2);
    assert_eq!(
        found[0]["event_count"].as_i64().unwrap(),
        found[1]["event_count"].as_i64().unwrap() + 1
    );
}

#[sqlx::test]
async fn the_platform_chain_has_its_own_checkpoints(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    app.tenant("acme").await;

    sign(&app).await;

    let reply = app.get("/v1/audit/checkpoints", &app.admin).await;
    assert_eq!(reply.status, StatusCode::OK);
    let platform = &reply.body["items"][0];
    assert_eq!(platform["tenant_id"], Value::Null);
    assert!(verifies(platform, &public_keys(&app).await));
}

#[sqlx::test]
async fn after_a_key_rotation_old_checkpoints_still_verify(pool: PgPool) {
    let first = signing(pool.clone(), audit_key()).await;
    let tenant = first.tenant("acme").await;
    sign(&first).await;
    let second = signing(pool, audit_key()).await;
    second.key(&tenant, json!({"name": "checkout"})).await;

    sign(&second).await;

    let found = checkpoints(&second, &tenant).await;
    let keys = public_keys(&second).await;
    assert_eq!(found.len(), 2);
    assert_ne!(found[0]["key_id"], found[1]["key_id"]);
    assert_eq!(keys["current"], found[0]["key_id"]);
    assert!(found.iter().all(|checkpoint| verifies(checkpoint, &keys)));
}

#[sqlx::test]
async fn another_tenants_checkpoints_are_not_found(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    sign(&app).await;
    let auditor = app.service_token(Some(&acme), &[Permission::AuditRead]).await;

    let own = app
        .get(&format!("/v1/tenants/{acme}/audit/checkpoints"), &auditor)
        .await;
    let other = app
        .get(&format!("/v1/tenants/{globex}/audit/checkpoints"), &auditor)
        .await;
    let platform = app.get("/v1/audit/checkpoints", &auditor).await;

    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(platform.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn checkpoints_cannot_be_altered_or_removed(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    app.tenant("acme").await;
    sign(&app).await;

    let altered = sqlx::query("UPDATE audit_checkpoints SET event_count = event_count + 1")
        .execute(&app.pool)
        .await;
    let removed = sqlx::query("DELETE FROM audit_checkpoints").execute(&app.pool).await;

    assert!(altered.unwrap_err().to_string().contains("append-only"));
    assert!(removed.unwrap_err().to_string().contains("append-only"));
}

#[sqlx::test]
async fn a_shutdown_signs_the_chains_as_they_end(pool: PgPool) {
    let app = signing(pool.clone(), audit_key()).await;
    let tenant = app.tenant("acme").await;
    app.key(&tenant, json!({"name": "checkout"})).await;
    let newest = newest_events(&app, &tenant).await[0]["id"].as_i64().unwrap();

    drop(app);

    let mut covered = None;
    for _ in 0..100 {
        covered =
            sqlx::query_scalar::<_, i64>("SELECT max(event_id) FROM audit_checkpoints WHERE tenant_id IS NOT NULL")
                .fetch_one(&pool)
                .await
                .ok();
        if covered == Some(newest) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(covered, Some(newest));
}

#[sqlx::test]
async fn without_an_audit_key_nothing_is_signed_and_no_key_is_served(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;

    sign(&app).await;

    let keys = public_keys(&app).await;
    assert_eq!(keys, json!({"current": null, "keys": []}));
}

#[sqlx::test]
async fn checkpoints_need_audit_read_and_a_credential(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    let acme = app.tenant("acme").await;
    sign(&app).await;
    let writer = app
        .service_token(Some(&acme), &[Permission::KeysWrite, Permission::KeysRead])
        .await;
    let path = format!("/v1/tenants/{acme}/audit/checkpoints");

    let without_permission = app.get(&path, &writer).await;
    let nobody = app.call(reqwest::Method::GET, &path, None, None).await;

    assert_eq!(without_permission.status, StatusCode::FORBIDDEN);
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn a_chain_rewritten_since_its_last_checkpoint_is_not_signed_again(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    let tenant = app.tenant("acme").await;
    sign(&app).await;
    app.key(&tenant, json!({"name": "checkout"})).await;
    // As the superuser, triggers off: an event after the checkpoint rewritten in place.
    let mut tx = app.pool.begin().await.unwrap();
    for statement in [
        "ALTER TABLE audit_events DISABLE TRIGGER USER".to_owned(),
        format!(
            "UPDATE audit_events SET actor_id = 'someone-else' WHERE id = \
             (SELECT max(id) FROM audit_events WHERE tenant_id = '{tenant}')"
        ),
        "ALTER TABLE audit_events ENABLE TRIGGER USER".to_owned(),
    ] {
        sqlx::raw_sql(&statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    sign(&app).await;

    assert_eq!(
        checkpoints(&app, &tenant).await.len(),
        1,
        "the rewritten head stays unsigned"
    );
}

#[sqlx::test]
async fn the_public_keys_are_read_from_the_database_at_most_once_a_minute(pool: PgPool) {
    let app = signing(pool, audit_key()).await;
    app.tenant("acme").await;
    sign(&app).await;
    let served = public_keys(&app).await;
    // Another replica's new key, recorded after the first answer.
    let other = AuditKey::from_pem(&AuditKey::generate_pem()).unwrap();
    sqlx::query("INSERT INTO audit_signing_keys (id, public_key) VALUES ($1, $2)")
        .bind(other.id())
        .bind(other.public_key().to_vec())
        .execute(&app.pool)
        .await
        .unwrap();

    let again = public_keys(&app).await;

    assert_eq!(again, served, "answered from memory");
}
