//! The `keyward` binary: `admin create-service-token` bootstraps a working credential and prints
//! only the token on stdout; `openapi` prints the committed document.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::process::Output;

use crate::helpers::TestApp;

/// Runs the keyward binary with `args` against `database_url` (off the async runtime).
async fn keyward(database_url: Option<String>, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"));
        command.args(&args).env_remove("DATABASE_URL");
        if let Some(url) = database_url {
            command.env("DATABASE_URL", url);
        }
        command.output().expect("the keyward binary runs")
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The single line the command printed, which must be a whole service token.
fn printed_token(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", stderr(output));
    let out = stdout(output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "stdout holds only the token: {out:?}");
    let token = lines[0];
    assert!(token.starts_with("kw_svc_"), "{token:?}");
    assert_eq!(token.len(), "kw_svc_".len() + 49, "{token:?}");
    assert!(token[7..].bytes().all(|b| b.is_ascii_alphanumeric()));
    token.to_owned()
}

#[sqlx::test]
async fn create_service_token_prints_only_the_token_on_stdout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--permissions",
            "tenants:admin,keys:write",
        ],
    )
    .await;

    let token = printed_token(&output);
    assert_eq!(stdout(&output), format!("{token}\n"));
    assert!(!stderr(&output).contains(&token[7..]), "the token leaked to stderr");
}

#[sqlx::test]
async fn a_platform_token_from_the_cli_creates_tenants_over_http(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--permissions",
            "tenants:admin,keys:write",
        ],
    )
    .await;
    let token = printed_token(&output);

    let reply = app
        .post("/v1/tenants", &token, json!({"slug": "acme", "name": "Acme"}))
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
}

#[sqlx::test]
async fn a_cli_token_holds_exactly_the_permissions_asked_for(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--permissions",
            "tenants:admin,keys:write",
        ],
    )
    .await;
    let token = printed_token(&output);

    let reply = app.get("/v1/audit", &token).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_tenant_token_from_the_cli_is_bound_to_that_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--tenant",
            &tenant,
            "--permissions",
            "keys:read,tenants:admin",
        ],
    )
    .await;
    let token = printed_token(&output);

    let listing = app.get("/v1/tenants", &token).await;
    let own = app.get(&format!("/v1/tenants/{tenant}"), &token).await;

    assert_eq!(listing.status, StatusCode::FORBIDDEN);
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["slug"], "acme");
}

#[sqlx::test]
async fn a_cli_token_with_a_ttl_stops_working_when_it_expires(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--permissions",
            "tenants:admin",
            "--ttl-seconds",
            "600",
        ],
    )
    .await;
    let token = printed_token(&output);
    assert_eq!(app.get("/v1/tenants", &token).await.status, StatusCode::OK);

    app.advance(601);

    assert_eq!(app.get("/v1/tenants", &token).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn the_cli_token_is_audited_as_created_by_the_system(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--name",
            "bootstrap",
            "--permissions",
            "keys:verify",
        ],
    )
    .await;
    let token = printed_token(&output);

    let reply = app
        .get("/v1/audit?action=service_token.created&actor=cli", &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::OK);
    let events = reply.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor_kind"], "system");
    assert_eq!(events[0]["details"]["name"], "bootstrap");
    assert!(!reply.body.to_string().contains(&token[7..]));
}

#[sqlx::test]
async fn an_unknown_permission_fails_with_nothing_on_stdout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--permissions",
            "tenants:admin,keys:destroy",
        ],
    )
    .await;

    assert!(!output.status.success());
    assert_eq!(stdout(&output), "");
    assert!(stderr(&output).contains("permissions"), "{}", stderr(&output));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE name = 'bootstrap'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn a_tenant_that_does_not_exist_fails_with_nothing_on_stdout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--tenant",
            "0190a0b0-0000-7000-8000-000000000000",
            "--permissions",
            "keys:verify",
        ],
    )
    .await;

    assert!(!output.status.success());
    assert_eq!(stdout(&output), "");
}

#[sqlx::test]
async fn a_tenant_that_is_not_a_uuid_fails_with_nothing_on_stdout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--tenant",
            "acme",
            "--permissions",
            "keys:verify",
        ],
    )
    .await;

    assert!(!output.status.success());
    assert_eq!(stdout(&output), "");
}

#[sqlx::test]
async fn platform_and_tenant_together_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let output = keyward(
        Some(app.database_url()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--tenant",
            &tenant,
            "--permissions",
            "keys:verify",
        ],
    )
    .await;

    assert!(!output.status.success());
    assert_eq!(stdout(&output), "");
}

#[sqlx::test]
async fn an_unreachable_database_fails_with_nothing_on_stdout(pool: PgPool) {
    let _app = TestApp::spawn(pool).await;

    let output = keyward(
        Some("postgres://nobody@127.0.0.1:1/nothing".to_owned()),
        &[
            "admin",
            "create-service-token",
            "--platform",
            "--permissions",
            "keys:verify",
        ],
    )
    .await;

    assert!(!output.status.success());
    assert_eq!(stdout(&output), "");
}

#[sqlx::test]
async fn keyward_openapi_prints_the_committed_document(pool: PgPool) {
    let _app = TestApp::spawn(pool).await;
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap();

    let output = keyward(None, &["openapi"]).await;

    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(
        stdout(&output) == committed,
        "`keyward openapi` differs from openapi/openapi.json: run `make openapi` and commit"
    );
}

#[tokio::test]
async fn audit_keygen_writes_a_key_only_its_owner_reads_and_never_overwrites_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("keyward-keygen-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("audit.pem");
    let path = out.to_str().unwrap();

    let first = keyward(None, &["audit", "keygen", "--out", path]).await;
    let written = std::fs::read_to_string(&out).unwrap();
    let again = keyward(None, &["audit", "keygen", "--out", path]).await;

    assert!(first.status.success(), "{}", stderr(&first));
    assert!(keyward::crypto::audit_key::AuditKey::from_pem(&written).is_ok());
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written, "the key was replaced");
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test]
async fn serve_refuses_an_audit_key_file_that_is_not_a_key_naming_the_setting(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let bad = std::env::temp_dir().join(format!("keyward-bad-audit-key-{}", rand::random::<u64>()));
    std::fs::write(&bad, "not a key").unwrap();
    let bad_path = bad.to_str().unwrap().to_owned();
    let url = app.database_url();

    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["serve", "--skip-migrations"])
            .env("DATABASE_URL", url)
            .env("KEYWARD_LISTEN", "127.0.0.1:0")
            .env("KEYWARD_AUDIT_SIGNING_KEY_FILE", &bad_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("KEYWARD_AUDIT_SIGNING_KEY_FILE"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_file(&bad);
}

#[sqlx::test]
async fn a_command_run_by_hand_prints_no_log_noise(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut command = app.command();
    command.env_remove("KEYWARD_LOG").arg("migrate");

    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(!said.contains("already exists"), "{said}");
    assert!(!said.contains("INFO"), "{said}");
    assert!(
        !said.contains('\u{1b}'),
        "colour codes when not on a terminal: {said:?}"
    );
}

#[test]
fn a_database_that_cannot_be_reached_is_named_with_why_at_once() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://nobody:hunter2@127.0.0.1:1/nowhere")
        .env_remove("KEYWARD_MIGRATION_DATABASE_URL")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(said.contains("cannot connect to the database at 127.0.0.1:1"), "{said}");
    assert!(said.to_lowercase().contains("refused"), "{said}");
    assert!(!said.contains("pool timed out"), "{said}");
    assert!(!said.contains("hunter2"), "the password reached the message");
}
