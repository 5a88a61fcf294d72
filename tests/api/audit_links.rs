//! Audit events carry their chain links (`prev_hash`, `hash`) in every form, and a third party
//! recomputes them from an export with the Python snippet of `docs/audit.md`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;

/// A tenant with a few events on its chain: created, two keys, one revoked.
async fn tenant_with_events(app: &TestApp) -> String {
    let tenant = app.tenant("acme").await;
    let (key, _) = app
        .key(&tenant, json!({"name": "checkout", "metadata": {"b": 1, "a": "é\n"}}))
        .await;
    app.key(&tenant, json!({"name": "reports"})).await;
    let path = format!("/v1/tenants/{tenant}/keys/{}/revoke", key["id"].as_str().unwrap());
    assert_eq!(
        app.post(&path, &app.admin, json!({"reason": "leaked \"here\""}))
            .await
            .status,
        StatusCode::OK
    );
    tenant
}

async fn export(app: &TestApp, tenant: &str, accept: &str) -> String {
    app.text(&format!("/v1/tenants/{tenant}/audit"), accept).await
}

#[sqlx::test]
async fn each_event_names_the_hash_of_the_event_before_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = tenant_with_events(&app).await;

    let reply = app.get(&format!("/v1/tenants/{tenant}/audit"), &app.admin).await;

    let newest_first = reply.body["items"].as_array().unwrap();
    assert!(newest_first.len() >= 4, "{newest_first:?}");
    for pair in newest_first.windows(2) {
        assert_eq!(
            pair[0]["prev_hash"], pair[1]["hash"],
            "{} after {}",
            pair[0]["id"], pair[1]["id"]
        );
        assert_eq!(pair[0]["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(newest_first.last().unwrap()["prev_hash"], Value::Null);
}

#[sqlx::test]
async fn csv_exports_end_with_prev_hash_and_hash(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = tenant_with_events(&app).await;

    let csv = export(&app, &tenant, "text/csv").await;

    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",details,prev_hash,hash"), "{header}");
    let oldest = csv.lines().nth(1).unwrap();
    let last_two: Vec<&str> = oldest.rsplitn(3, ',').take(2).collect();
    assert_eq!(last_two[1], "", "the chain's first event has no prev_hash: {oldest}");
    assert!(
        last_two[0].len() == 64 && last_two[0].bytes().all(|b| b.is_ascii_hexdigit()),
        "{oldest}"
    );
}

/// The ```python block of docs/audit.md, as a user would copy it.
fn documented_snippet() -> String {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/audit.md")).unwrap();
    let (_, rest) = docs
        .split_once("```python\n")
        .expect("docs/audit.md has a python block");
    let (snippet, _) = rest.split_once("```").unwrap();
    snippet.to_owned()
}

/// Runs the snippet on `export`; its exit status and what it printed.
fn run_snippet(export: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("keyward-audit-snippet-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("check.py"), documented_snippet()).unwrap();
    std::fs::write(dir.join("export.ndjson"), export).unwrap();
    let output = std::process::Command::new("python3")
        .arg(dir.join("check.py"))
        .arg(dir.join("export.ndjson"))
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

#[sqlx::test]
async fn the_documented_python_snippet_verifies_an_export_and_names_an_altered_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = tenant_with_events(&app).await;
    let ndjson = export(&app, &tenant, "application/x-ndjson").await;

    assert_eq!(run_snippet(&ndjson), (true, "ok".to_owned()));

    let mut events: Vec<Value> = ndjson.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    events[1]["details"]["name"] = json!("altered");
    let altered: Vec<String> = events.iter().map(Value::to_string).collect();
    let named = format!("event {}: its fields do not give its hash", events[1]["id"]);
    assert_eq!(run_snippet(&altered.join("\n")), (false, named));
}

#[sqlx::test]
async fn the_documented_python_snippet_names_the_event_after_a_removed_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = tenant_with_events(&app).await;
    let ndjson = export(&app, &tenant, "application/x-ndjson").await;

    let mut lines: Vec<&str> = ndjson.lines().collect();
    lines.remove(1);
    let after: Value = serde_json::from_str(lines[1]).unwrap();
    let named = format!("event {}: prev_hash does not name the event before it", after["id"]);
    assert_eq!(run_snippet(&lines.join("\n")), (false, named));
}

#[sqlx::test]
async fn events_from_addresses_postgresql_writes_otherwise_still_give_their_hash(pool: PgPool) {
    use keyward::domain::audit::{Actor, ActorKind, AuditAction, NewAuditEvent, Outcome, RequestMeta};
    let app = TestApp::spawn(pool).await;
    let actor = Actor {
        kind: ActorKind::System,
        id: "test".into(),
    };
    let mut conn = app.pool.acquire().await.unwrap();
    // PostgreSQL writes these `::0.1.0.0`, `::1.2.3.4`, `::ffff:0.0.0.1`.
    for address in ["::1:0", "::102:304", "::ffff:0:1", "2001:db8::1", "192.0.2.1"] {
        let meta = RequestMeta {
            ip: Some(address.parse().unwrap()),
            ..RequestMeta::default()
        };
        let event = NewAuditEvent::new(
            app.clock().now(),
            &actor,
            &meta,
            None,
            AuditAction::TenantCreated,
            Outcome::Success,
        );
        keyward::repo::audit::append(&mut conn, &event).await.unwrap();
    }

    let stored = keyward::repo::audit::chain_page(&app.pool, None, 0, 100).await.unwrap();

    for event in stored.iter().filter(|e| e.ip.is_some()) {
        assert_eq!(
            event.recomputed_hash().as_deref(),
            Some(event.hash.as_str()),
            "{:?}",
            event.ip
        );
    }
}
