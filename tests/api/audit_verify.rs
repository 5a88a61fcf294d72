//! `keyward audit verify`: a sound trail verifies from the database and offline from an export;
//! each way of tampering with the table (as the database superuser, triggers disabled) is named
//! by the first broken link, and the command exits non-zero.

use sqlx::PgPool;

use crate::helpers::{signed_trail as trail, TestApp};
use keyward::crypto::audit_key::AuditKey;

/// The tenant chain's event ids, oldest first.
async fn event_ids(app: &TestApp, tenant: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM audit_events WHERE tenant_id = $1::uuid ORDER BY id")
        .bind(tenant)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// Runs SQL as the superuser with the append-only triggers off.
async fn tamper(app: &TestApp, sql: &str) {
    let mut tx = app.pool.begin().await.unwrap();
    for statement in [
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER",
        sql,
        "ALTER TABLE audit_events ENABLE TRIGGER USER",
        "ALTER TABLE audit_checkpoints ENABLE TRIGGER USER",
    ] {
        sqlx::raw_sql(statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// `keyward audit verify ARGS` against the test's database: (exit 0?, stdout).
async fn verify(app: &TestApp, args: &[&str]) -> (bool, String) {
    let mut command = app.command();
    command.args(["audit", "verify"]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

async fn verify_chain(app: &TestApp, tenant: &str) -> (bool, String) {
    verify(app, &["--tenant", tenant]).await
}

#[sqlx::test]
async fn a_sound_trail_verifies_from_the_database(pool: PgPool) {
    let (app, tenant) = trail(pool).await;

    let (ok, out) = verify(&app, &[]).await;

    assert!(ok, "{out}");
    assert!(out.contains(&format!("ok: chain {tenant}: ")), "{out}");
    assert!(out.contains("ok: chain platform: "), "{out}");
}

#[sqlx::test]
async fn a_sound_export_verifies_offline_and_an_altered_one_is_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let dir = std::env::temp_dir().join(format!("keyward-offline-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let fetch = |path: String, accept: &'static str| {
        let app = &app;
        async move { app.text(&path, accept).await }
    };
    let export = fetch(format!("/v1/tenants/{tenant}/audit"), "application/x-ndjson").await;
    std::fs::write(dir.join("export.ndjson"), &export).unwrap();
    std::fs::write(
        dir.join("checkpoints.json"),
        fetch(format!("/v1/tenants/{tenant}/audit/checkpoints"), "application/json").await,
    )
    .unwrap();
    std::fs::write(
        dir.join("keys.json"),
        fetch("/v1/audit/public-key".into(), "application/json").await,
    )
    .unwrap();
    let offline = [
        "--export",
        dir.join("export.ndjson").to_str().unwrap(),
        "--checkpoints",
        dir.join("checkpoints.json").to_str().unwrap(),
        "--public-key",
        dir.join("keys.json").to_str().unwrap(),
    ]
    .map(str::to_owned);
    let offline: Vec<&str> = offline.iter().map(String::as_str).collect();

    let (ok, out) = verify(&app, &offline).await;
    assert!(ok, "{out}");
    assert!(out.contains("1 checkpoints"), "{out}");

    let altered = export.replacen("\"name\":\"two\"", "\"name\":\"TWO\"", 1);
    assert_ne!(altered, export);
    std::fs::write(dir.join("export.ndjson"), altered).unwrap();
    let (ok, out) = verify(&app, &offline).await;
    assert!(!ok);
    assert!(out.contains("its fields do not give its hash"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test]
async fn an_altered_row_is_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let ids = event_ids(&app, &tenant).await;

    tamper(
        &app,
        &format!(
            "UPDATE audit_events SET actor_id = 'someone-else' WHERE id = {}",
            ids[2]
        ),
    )
    .await;

    let (ok, out) = verify_chain(&app, &tenant).await;
    assert!(!ok);
    assert!(
        out.contains(&format!("event {}: its fields do not give its hash", ids[2])),
        "{out}"
    );
}

#[sqlx::test]
async fn a_removed_row_is_named_by_the_event_after_it(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let ids = event_ids(&app, &tenant).await;

    tamper(&app, &format!("DELETE FROM audit_events WHERE id = {}", ids[1])).await;

    let (ok, out) = verify_chain(&app, &tenant).await;
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "event {}: prev_hash does not name the event before it",
            ids[2]
        )),
        "{out}"
    );
}

#[sqlx::test]
async fn reordered_rows_are_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let ids = event_ids(&app, &tenant).await;
    let (a, b) = (ids[1], ids[2]);

    tamper(
        &app,
        &format!("UPDATE audit_events SET id = -1 WHERE id = {a}; UPDATE audit_events SET id = {a} WHERE id = {b}; UPDATE audit_events SET id = {b} WHERE id = -1"),
    )
    .await;

    let (ok, out) = verify_chain(&app, &tenant).await;
    assert!(!ok);
    assert!(
        out.contains(&format!("event {a}: prev_hash does not name the event before it")),
        "{out}"
    );
}

#[sqlx::test]
async fn a_forged_checkpoint_is_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let checkpoint: i64 = sqlx::query_scalar("SELECT id FROM audit_checkpoints WHERE tenant_id = $1::uuid")
        .bind(&tenant)
        .fetch_one(&app.pool)
        .await
        .unwrap();

    tamper(
        &app,
        &format!("UPDATE audit_checkpoints SET event_count = event_count + 1 WHERE id = {checkpoint}"),
    )
    .await;

    let (ok, out) = verify_chain(&app, &tenant).await;
    assert!(!ok);
    assert!(
        out.contains(&format!("checkpoint {checkpoint}: its signature does not verify")),
        "{out}"
    );
}

#[sqlx::test]
async fn events_cut_off_under_a_checkpoint_are_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let ids = event_ids(&app, &tenant).await;
    let covered: i64 = sqlx::query_scalar("SELECT event_id FROM audit_checkpoints WHERE tenant_id = $1::uuid")
        .bind(&tenant)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let kept = ids.iter().copied().filter(|id| *id < covered).max().unwrap();

    tamper(
        &app,
        &format!("DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND id > {kept}"),
    )
    .await;

    let (ok, out) = verify_chain(&app, &tenant).await;
    assert!(!ok);
    assert!(
        out.contains(&format!("covers up to event {covered}, the chain ends at event {kept}")),
        "{out}"
    );
}

/// The check as the service runs it, at the app's clock.
async fn checked_at_the_apps_clock(
    app: &TestApp,
    tenant: &str,
) -> Result<keyward::domain::audit_check::Checked, keyward::domain::audit_check::Broken> {
    let tenant = keyward::domain::ids::TenantId::parse(tenant).unwrap();
    keyward::service::audit::check_stored_chain(&app.ctx, Some(tenant), None)
        .await
        .unwrap()
}

#[sqlx::test]
async fn events_left_unsigned_for_long_are_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let first_unsigned = *event_ids(&app, &tenant).await.last().unwrap() - 1;
    assert!(checked_at_the_apps_clock(&app, &tenant).await.is_ok());

    app.clock().advance(chrono::Duration::minutes(10));

    let broken = checked_at_the_apps_clock(&app, &tenant).await.unwrap_err();
    assert!(
        matches!(broken, keyward::domain::audit_check::Broken::Unsigned { event, .. } if event == first_unsigned),
        "{broken}"
    );
}

#[sqlx::test]
async fn a_chain_whose_checkpoints_were_removed_is_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let first = event_ids(&app, &tenant).await[0];
    app.clock().advance(chrono::Duration::minutes(10));
    keyward::service::audit::sign_checkpoints(&app.ctx).await.unwrap();
    assert!(checked_at_the_apps_clock(&app, &tenant).await.is_ok());

    tamper(
        &app,
        &format!("DELETE FROM audit_checkpoints WHERE tenant_id = '{tenant}'"),
    )
    .await;

    let broken = checked_at_the_apps_clock(&app, &tenant).await.unwrap_err();
    assert!(
        matches!(broken, keyward::domain::audit_check::Broken::Unsigned { event, .. } if event == first),
        "{broken}"
    );
}

#[sqlx::test]
async fn a_stored_key_row_cannot_claim_another_keys_id(pool: PgPool) {
    let (app, _) = trail(pool).await;
    let genuine: String = sqlx::query_scalar("SELECT id FROM audit_signing_keys LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let other = AuditKey::from_pem(&AuditKey::generate_pem()).unwrap();

    let claimed = sqlx::query("INSERT INTO audit_signing_keys (id, public_key) VALUES ($1, $2)")
        .bind(format!("{}0", &genuine[..15]))
        .bind(other.public_key().as_slice())
        .execute(&app.pool)
        .await;

    assert!(claimed
        .unwrap_err()
        .to_string()
        .contains("audit_signing_keys_id_of_key"));
}

#[sqlx::test]
async fn an_export_of_another_chain_than_the_one_named_is_refused(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let dir = std::env::temp_dir().join(format!("keyward-stray-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = app
        .text(&format!("/v1/tenants/{tenant}/audit"), "application/x-ndjson")
        .await;
    std::fs::write(dir.join("export.ndjson"), export).unwrap();
    std::fs::write(dir.join("checkpoints.json"), "[]").unwrap();
    std::fs::write(dir.join("keys.json"), r#"{"current": null, "keys": []}"#).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();

    let (ok, out) = verify(
        &app,
        &[
            "--platform",
            "--export",
            &path("export.ndjson"),
            "--checkpoints",
            &path("checkpoints.json"),
            "--public-key",
            &path("keys.json"),
        ],
    )
    .await;

    assert!(!ok);
    assert!(out.contains("belongs to another chain"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
