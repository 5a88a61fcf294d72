//! The two-role setup: migrations run as the owner of the tables
//! (`KEYWARD_MIGRATION_DATABASE_URL`), the server as a role that may only read and append to the
//! audit trail, so that a bug cannot change or remove events even with the triggers gone. Every
//! test server runs as that role (`helpers::SERVER_ROLE`).

use sqlx::PgPool;
use std::process::Output;

use crate::helpers::{database_url, ensure_role, server_database_url, server_pool, TestApp, SERVER_ROLE};

const APPEND_ONLY: [&str; 3] = ["audit_events", "audit_checkpoints", "audit_signing_keys"];

/// The SQLSTATE with which the server role is refused `sql`.
async fn refusal(server: &PgPool, sql: &str) -> String {
    let error = sqlx::query(sql)
        .execute(server)
        .await
        .expect_err(&format!("the server role may not: {sql}"));
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| panic!("not a database error: {error}"))
}

/// The privileges `role` holds on `table`, sorted, comma-separated.
async fn privileges(pool: &PgPool, role: &str, table: &str) -> String {
    sqlx::query_scalar(
        "SELECT coalesce(string_agg(p, ',' ORDER BY p), '') FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', \
         'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES']) p WHERE has_table_privilege($1, $2, p)",
    )
    .bind(role)
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `keyward migrate` with `DATABASE_URL` as `server` and `KEYWARD_MIGRATION_DATABASE_URL` as `owner`.
async fn migrate(server: String, owner: String) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .arg("migrate")
            .env("DATABASE_URL", server)
            .env("KEYWARD_MIGRATION_DATABASE_URL", owner)
            .output()
            .expect("the keyward binary runs")
    })
    .await
    .unwrap()
}

#[sqlx::test]
async fn the_server_role_cannot_change_or_remove_audit_rows_even_with_the_triggers_disabled(pool: PgPool) {
    let key =
        keyward::crypto::audit_key::AuditKey::from_pem(&keyward::crypto::audit_key::AuditKey::generate_pem()).unwrap();
    let app = TestApp::spawn_configured(pool.clone(), TestApp::config(), move |ctx| {
        keyward::service::ContextParts {
            audit_key: Some(std::sync::Arc::new(key)),
            ..ctx.into_parts()
        }
        .into()
    })
    .await;
    app.tenant("acme").await;
    keyward::service::audit::sign_checkpoints(&app.ctx).await.unwrap();
    for table in APPEND_ONLY {
        sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let server = server_pool(&pool).await;

    for table in APPEND_ONLY {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(rows > 0, "{table} holds rows to remove");
        assert_eq!(
            refusal(&server, &format!("DELETE FROM {table}")).await,
            "42501",
            "{table}"
        );
        assert_eq!(
            refusal(&server, &format!("UPDATE {table} SET id = id")).await,
            "42501",
            "{table}"
        );
        assert_eq!(refusal(&server, &format!("TRUNCATE {table}")).await, "42501", "{table}");
        // Only the owner may turn the triggers back on or off.
        assert_eq!(
            refusal(&server, &format!("ALTER TABLE {table} ENABLE TRIGGER USER")).await,
            "42501",
            "{table}"
        );
        let after: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(after, rows, "{table}");
    }
    server.close().await;
}

#[sqlx::test]
async fn the_test_server_serves_as_the_server_role_and_appends_to_the_trail(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app.ctx.pool)
        .await
        .unwrap();
    assert_eq!(role, SERVER_ROLE);

    let tenant = app.tenant("acme").await;
    let events = app
        .get(&format!("/v1/tenants/{tenant}/audit?action=tenant.created"), &app.admin)
        .await;
    assert_eq!(
        events.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        events.body
    );
}

#[sqlx::test(migrations = false)]
async fn migrate_as_the_owner_grants_the_server_role_only_reading_and_appending_on_the_audit_tables(pool: PgPool) {
    ensure_role(&pool, SERVER_ROLE, "keyward-test-server", "").await;

    let output = migrate(server_database_url(&pool), database_url(&pool)).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let owner: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    let owned_by_server: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tableowner <> $1")
            .bind(&owner)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(owned_by_server, 0, "the owner role owns every table");
    for table in APPEND_ONLY {
        assert_eq!(privileges(&pool, SERVER_ROLE, table).await, "INSERT,SELECT", "{table}");
    }
    for table in ["api_keys", "tenants", "verification_counts", "key_rate_windows"] {
        assert_eq!(
            privileges(&pool, SERVER_ROLE, table).await,
            "DELETE,INSERT,SELECT,UPDATE",
            "{table}"
        );
    }
    assert_eq!(privileges(&pool, SERVER_ROLE, "_sqlx_migrations").await, "");
    // Only the owner archives: the server role reads anchors and makes none.
    assert_eq!(privileges(&pool, SERVER_ROLE, "audit_anchors").await, "SELECT");
}

#[sqlx::test(migrations = false)]
async fn migrate_refuses_a_server_role_that_is_the_owner(pool: PgPool) {
    let output = migrate(database_url(&pool), database_url(&pool)).await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is the owner role"), "{stderr}");
}

#[sqlx::test(migrations = false)]
async fn migrate_refuses_a_server_role_that_is_a_superuser(pool: PgPool) {
    ensure_role(&pool, "keyward_test_superuser", "keyward-test-superuser", "SUPERUSER").await;
    let owner = database_url(&pool);
    let server = server_database_url(&pool)
        .replace(SERVER_ROLE, "keyward_test_superuser")
        .replace("keyward-test-server", "keyward-test-superuser");

    let output = migrate(server, owner).await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a superuser"), "{stderr}");
}

#[sqlx::test(migrations = false)]
async fn migrate_refuses_a_server_role_that_is_a_member_of_the_owner_role(pool: PgPool) {
    let owner: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    ensure_role(
        &pool,
        "keyward_test_member",
        "keyward-test-member",
        &format!("IN ROLE {owner}"),
    )
    .await;
    let server = server_database_url(&pool)
        .replace(SERVER_ROLE, "keyward_test_member")
        .replace("keyward-test-server", "keyward-test-member");

    let output = migrate(server, database_url(&pool)).await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a member of the owner role"), "{stderr}");
}

#[sqlx::test(migrations = false)]
async fn migrate_refuses_a_server_role_that_may_create_roles(pool: PgPool) {
    ensure_role(
        &pool,
        "keyward_test_createrole",
        "keyward-test-createrole",
        "CREATEROLE",
    )
    .await;
    let server = server_database_url(&pool)
        .replace(SERVER_ROLE, "keyward_test_createrole")
        .replace("keyward-test-server", "keyward-test-createrole");

    let output = migrate(server, database_url(&pool)).await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("may create roles"), "{stderr}");
}

#[sqlx::test]
async fn migrating_takes_back_what_was_granted_the_server_role_by_hand(pool: PgPool) {
    ensure_role(&pool, SERVER_ROLE, "keyward-test-server", "").await;
    for grant in [
        "GRANT TRUNCATE, TRIGGER ON api_keys TO keyward_test_server",
        "GRANT UPDATE ON SEQUENCE audit_events_id_seq TO keyward_test_server",
        "GRANT CREATE ON SCHEMA public TO keyward_test_server",
    ] {
        sqlx::query(grant).execute(&pool).await.unwrap();
    }

    let output = migrate(server_database_url(&pool), database_url(&pool)).await;

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        privileges(&pool, SERVER_ROLE, "api_keys").await,
        "DELETE,INSERT,SELECT,UPDATE"
    );
    let (sequence_update, schema_create): (bool, bool) = sqlx::query_as(
        "SELECT has_sequence_privilege($1, 'audit_events_id_seq', 'UPDATE'), has_schema_privilege($1, 'public', 'CREATE')",
    )
    .bind(SERVER_ROLE)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!sequence_update, "setval on the audit sequence");
    assert!(!schema_create, "objects of its own in the schema");
}

#[sqlx::test]
async fn one_role_for_migrations_and_serving_is_warned_about_at_start(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let log = std::env::temp_dir().join(format!("keyward-roles-{}.log", rand::random::<u64>()));
    let mut one_role = app.command();
    one_role
        .env("DATABASE_URL", app.database_url())
        .env_remove("KEYWARD_MIGRATION_DATABASE_URL");
    let server = crate::helpers::ServeProcess::start(one_role, std::fs::File::create(&log).unwrap().into()).await;
    drop(server);
    let warned = std::fs::read_to_string(&log).unwrap();

    let two_roles_log = std::env::temp_dir().join(format!("keyward-roles-{}.log", rand::random::<u64>()));
    let server =
        crate::helpers::ServeProcess::start(app.command(), std::fs::File::create(&two_roles_log).unwrap().into()).await;
    drop(server);
    let quiet = std::fs::read_to_string(&two_roles_log).unwrap();
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&two_roles_log);

    assert!(warned.contains("may change or remove audit events"), "{warned}");
    assert!(!quiet.contains("may change or remove audit events"), "{quiet}");
}
