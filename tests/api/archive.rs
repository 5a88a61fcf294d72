//! `keyward audit archive --before DATE --out FILE`: the events up to each chain's newest
//! checkpoint before DATE go to the archive with their checkpoints, and then from the database,
//! the checkpoint staying as the chain's anchor; the remaining chain verifies from it, and the
//! archive verifies on its own. Nothing else can remove an event.

use serde_json::{json, Value};
use sqlx::PgPool;
use std::path::PathBuf;

use crate::helpers::{signed_trail as trail, TestApp};

fn archive_path() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyward-archive-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("archive.ndjson")
}

/// An hour from now: everything under a checkpoint is before it.
fn later() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()
}

/// Runs `command` with `args`: (exit 0?, stdout, stderr).
async fn run(mut command: std::process::Command, args: &[&str]) -> (bool, String, String) {
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn archive(app: &TestApp, out: &std::path::Path, before: &str) -> (bool, String, String) {
    run(
        app.command(),
        &["audit", "archive", "--before", before, "--out", out.to_str().unwrap()],
    )
    .await
}

async fn tenant_event_ids(app: &TestApp, tenant: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM audit_events WHERE tenant_id = $1::uuid ORDER BY id")
        .bind(tenant)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

fn archived_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["type"] == "event")
        .map(|line| line["event"].clone())
        .collect()
}

#[sqlx::test]
async fn archive_moves_the_events_under_the_last_checkpoint_before_the_date_to_the_file(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let before = tenant_event_ids(&app, &tenant).await;
    let out = archive_path();

    let (ok, _, stderr) = archive(&app, &out, &later()).await;

    assert!(ok, "{stderr}");
    let remaining = tenant_event_ids(&app, &tenant).await;
    // tenant.created and three key.created were under the checkpoint; four and five were not.
    assert_eq!(remaining, before[4..].to_vec());
    let archived: Vec<i64> = archived_events(&out)
        .iter()
        .filter(|e| e["tenant_id"] == tenant.as_str())
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(archived, before[..4].to_vec());
}

#[sqlx::test]
async fn after_an_archive_the_database_and_the_archive_each_verify(pool: PgPool) {
    let (app, _) = trail(pool).await;
    let out = archive_path();
    archive(&app, &out, &later()).await;

    let (stored_ok, stored, _) = run(app.command(), &["audit", "verify"]).await;
    let (archive_ok, archived, _) = run(app.command(), &["audit", "verify", "--archive", out.to_str().unwrap()]).await;

    assert!(stored_ok, "{stored}");
    assert!(archive_ok, "{archived}");
    assert!(archived.contains("ok: chain platform: "), "{archived}");
}

#[sqlx::test]
async fn an_archive_verifies_offline_with_the_public_key_an_auditor_saved(pool: PgPool) {
    let (app, _) = trail(pool).await;
    let keys_file = archive_path().with_file_name("keys.json");
    std::fs::write(&keys_file, app.text("/v1/audit/public-key", "application/json").await).unwrap();
    let out = archive_path();
    archive(&app, &out, &later()).await;

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"));
    command.env_clear();
    let (ok, stdout, stderr) = run(
        command,
        &[
            "audit",
            "verify",
            "--archive",
            out.to_str().unwrap(),
            "--public-key",
            keys_file.to_str().unwrap(),
        ],
    )
    .await;

    assert!(ok, "{stdout}{stderr}");
}

#[sqlx::test]
async fn an_altered_event_in_an_archive_is_named(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let out = archive_path();
    archive(&app, &out, &later()).await;
    let victim = archived_events(&out)
        .iter()
        .find(|e| e["action"] == "key.created")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let altered: Vec<String> = text
        .lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            if value["type"] == "event" && value["event"]["id"] == victim {
                value["event"]["actor_id"] = json!("someone-else");
            }
            value.to_string()
        })
        .collect();
    std::fs::write(&out, altered.join("\n")).unwrap();

    let (ok, stdout, _) = run(app.command(), &["audit", "verify", "--archive", out.to_str().unwrap()]).await;

    assert!(!ok);
    assert!(
        stdout.contains(&format!(
            "broken: chain {tenant}: event {victim}: its fields do not give its hash"
        )),
        "{stdout}"
    );
}

#[sqlx::test]
async fn an_archive_cut_short_of_its_anchor_does_not_verify(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let out = archive_path();
    archive(&app, &out, &later()).await;
    let text = std::fs::read_to_string(&out).unwrap();
    // Without the chain's last archived event (the anchor's).
    let last = archived_events(&out)
        .iter()
        .filter(|e| e["tenant_id"] == tenant.as_str())
        .map(|e| e["id"].as_i64().unwrap())
        .max()
        .unwrap();
    let cut: Vec<&str> = text
        .lines()
        .filter(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            !(value["type"] == "event" && value["event"]["id"] == last)
        })
        .collect();
    std::fs::write(&out, cut.join("\n")).unwrap();

    let (ok, stdout, _) = run(app.command(), &["audit", "verify", "--archive", out.to_str().unwrap()]).await;

    assert!(!ok);
    assert!(
        stdout.contains(&format!("broken: chain {tenant}: events cut off")),
        "{stdout}"
    );
}

#[sqlx::test]
async fn a_second_archive_resumes_where_the_first_ended_and_all_verifies(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let first = archive_path();
    archive(&app, &first, &later()).await;
    keyward::service::audit::sign_checkpoints(&app.ctx).await.unwrap();
    app.key(&tenant, json!({"name": "six"})).await;
    let second = archive_path();

    let (ok, _, stderr) = archive(&app, &second, &later()).await;

    assert!(ok, "{stderr}");
    let resumed: Vec<Value> = std::fs::read_to_string(&second)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["type"] == "chain" && line["tenant_id"] == tenant.as_str())
        .collect();
    assert!(resumed[0]["resumes_at"].is_i64(), "{resumed:?}");
    for file in [&first, &second] {
        let (ok, stdout, _) = run(app.command(), &["audit", "verify", "--archive", file.to_str().unwrap()]).await;
        assert!(ok, "{stdout}");
    }
    let (ok, stdout, _) = run(app.command(), &["audit", "verify"]).await;
    assert!(ok, "{stdout}");
    // Only "six" is left: after the newest checkpoint.
    assert_eq!(tenant_event_ids(&app, &tenant).await.len(), 1);
}

#[sqlx::test]
async fn an_export_of_an_archived_chain_verifies_offline_from_its_anchor(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    archive(&app, &archive_path(), &later()).await;
    let dir = archive_path().parent().unwrap().to_path_buf();
    let export = dir.join("export.ndjson");
    let checkpoints = dir.join("checkpoints.json");
    let keys = dir.join("keys.json");
    std::fs::write(
        &export,
        app.text(&format!("/v1/tenants/{tenant}/audit"), "application/x-ndjson")
            .await,
    )
    .unwrap();
    std::fs::write(
        &checkpoints,
        app.text(
            &format!("/v1/tenants/{tenant}/audit/checkpoints?limit=100"),
            "application/json",
        )
        .await,
    )
    .unwrap();
    std::fs::write(&keys, app.text("/v1/audit/public-key", "application/json").await).unwrap();

    let (ok, stdout, stderr) = run(
        app.command(),
        &[
            "audit",
            "verify",
            "--export",
            export.to_str().unwrap(),
            "--checkpoints",
            checkpoints.to_str().unwrap(),
            "--public-key",
            keys.to_str().unwrap(),
        ],
    )
    .await;

    assert!(ok, "{stdout}{stderr}");
}

#[sqlx::test]
async fn the_server_role_cannot_archive_and_nothing_is_removed(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let before = tenant_event_ids(&app, &tenant).await;
    let mut command = app.command();
    command.env_remove("KEYWARD_MIGRATION_DATABASE_URL");
    let out = archive_path();

    let (ok, _, stderr) = run(
        command,
        &["audit", "archive", "--before", &later(), "--out", out.to_str().unwrap()],
    )
    .await;

    assert!(!ok);
    assert!(stderr.contains("owner role"), "{stderr}");
    assert_eq!(tenant_event_ids(&app, &tenant).await, before);
}

#[sqlx::test]
async fn without_an_anchor_not_even_the_owner_can_delete_an_event(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let first = tenant_event_ids(&app, &tenant).await[0];

    let refused = sqlx::query("DELETE FROM audit_events WHERE id = $1")
        .bind(first)
        .execute(&app.pool)
        .await
        .unwrap_err();

    assert!(refused.to_string().contains("append-only"), "{refused}");
    assert_eq!(tenant_event_ids(&app, &tenant).await[0], first);
}

#[sqlx::test]
async fn an_anchor_lets_no_event_after_it_be_deleted(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    archive(&app, &archive_path(), &later()).await;
    let after_anchor = tenant_event_ids(&app, &tenant).await[0];

    let refused = sqlx::query("DELETE FROM audit_events WHERE id = $1")
        .bind(after_anchor)
        .execute(&app.pool)
        .await
        .unwrap_err();

    assert!(refused.to_string().contains("append-only"), "{refused}");
}

#[sqlx::test]
async fn events_a_sink_has_not_delivered_are_not_archived(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    sqlx::query("INSERT INTO audit_sinks (name) VALUES ('syslog')")
        .execute(&app.pool)
        .await
        .unwrap();
    let before = tenant_event_ids(&app, &tenant).await;

    let (ok, _, stderr) = archive(&app, &archive_path(), &later()).await;

    assert!(ok, "{stderr}");
    assert_eq!(tenant_event_ids(&app, &tenant).await, before);
}

#[sqlx::test]
async fn nothing_before_the_first_checkpoint_is_archived(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let before = tenant_event_ids(&app, &tenant).await;

    let (ok, _, stderr) = archive(&app, &archive_path(), "2000-01-01").await;

    assert!(ok, "{stderr}");
    assert_eq!(tenant_event_ids(&app, &tenant).await, before);
}

#[sqlx::test]
async fn an_existing_archive_file_is_never_overwritten(pool: PgPool) {
    let (app, tenant) = trail(pool).await;
    let out = archive_path();
    std::fs::write(&out, "keep me").unwrap();
    let before = tenant_event_ids(&app, &tenant).await;

    let (ok, _, _) = archive(&app, &out, &later()).await;

    assert!(!ok);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    assert_eq!(tenant_event_ids(&app, &tenant).await, before);
}
