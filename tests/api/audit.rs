//! The audit trail: one event per mutation in the mutation's own transaction, the reading API
//! with its filters and keyset pages, append-only storage and the per-tenant hash chain.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::permissions::Permission;

const PROBLEM: &str = "application/problem+json";

/// The id of the service token `token`, looked up by its hash.
async fn token_id(app: &TestApp, token: &str) -> String {
    let hash = keyward::domain::token::TokenHash::of(token);
    sqlx::query_scalar("SELECT id FROM api_keys WHERE token_hash = $1")
        .bind(hash.as_bytes().as_slice())
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The `items` of an audit listing, asserting it answered 200.
async fn events(app: &TestApp, path: &str) -> Vec<Value> {
    let reply = app.get(path, &app.admin).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {:?}", reply.body);
    reply.body["items"].as_array().unwrap().clone()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["action"].as_str().unwrap()).collect()
}

/// Makes every insert of an audit event with `action` fail, as if the audit store broke.
async fn break_audit_for(app: &TestApp, action: &str) {
    sqlx::query(
        "CREATE FUNCTION test_audit_store_down() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'audit store down (test)'; END; $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER test_audit_store_down BEFORE INSERT ON audit_events FOR EACH ROW
         WHEN (NEW.action = '{action}') EXECUTE FUNCTION test_audit_store_down()"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

// ---- one event per mutation -------------------------------------------------------------

#[sqlx::test]
async fn creating_a_tenant_writes_tenant_created_by_the_calling_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin_id = token_id(&app, &app.admin).await;

    let tenant = app.tenant("acme").await;

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit?action=tenant.created")).await;
    assert_eq!(found.len(), 1);
    let event = &found[0];
    assert_eq!(event["tenant_id"], tenant.as_str());
    assert_eq!(event["actor_kind"], "service");
    assert_eq!(event["actor_id"], admin_id.as_str());
    assert_eq!(event["target_kind"], "tenant");
    assert_eq!(event["target_id"], tenant.as_str());
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["details"]["slug"], "acme");
}

#[sqlx::test]
async fn an_event_carries_every_documented_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit")).await;

    let mut fields: Vec<&str> = found[0].as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "action",
            "actor_id",
            "actor_kind",
            "details",
            "hash",
            "id",
            "ip",
            "occurred_at",
            "outcome",
            "prev_hash",
            "request_id",
            "target_id",
            "target_kind",
            "tenant_id",
            "user_agent"
        ]
    );
    assert!(found[0]["id"].is_i64());
    assert!(chrono::DateTime::parse_from_rfc3339(found[0]["occurred_at"].as_str().unwrap()).is_ok());
}

#[sqlx::test]
async fn an_event_records_the_callers_ip_and_user_agent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .client
        .post(format!("{}/v1/tenants", app.base))
        .bearer_auth(&app.admin)
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    let tenant: Value = reply.json().await.unwrap();

    let found = events(&app, &format!("/v1/tenants/{}/audit", tenant["id"].as_str().unwrap())).await;
    assert_eq!(found[0]["ip"], "127.0.0.1");
    assert_eq!(found[0]["user_agent"], "audit-test/1.0");
}

#[sqlx::test]
async fn updating_a_tenant_writes_tenant_updated_with_the_change(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{tenant}"),
            &app.admin,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit?action=tenant.updated")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_id"], tenant.as_str());
    assert_eq!(found[0]["details"]["status"], "suspended");
}

#[sqlx::test]
async fn creating_a_key_writes_key_created_naming_the_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let (key, token) = app
        .key(&tenant, json!({"name": "checkout", "scopes": ["billing:read"]}))
        .await;

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit?action=key.created")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_kind"], "key");
    assert_eq!(found[0]["target_id"], key["id"]);
    assert_eq!(found[0]["details"]["scopes"], json!(["billing:read"]));
    assert!(!found[0].to_string().contains(&token[8..]));
}

#[sqlx::test]
async fn updating_a_key_writes_key_updated_listing_the_changed_fields(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, _) = app.key(&tenant, json!({"name": "checkout"})).await;
    let id = key["id"].as_str().unwrap();

    let reply = app
        .patch(
            &format!("/v1/tenants/{tenant}/keys/{id}"),
            &app.admin,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit?action=key.updated")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_id"], id);
    assert_eq!(found[0]["details"]["changed"], json!(["enabled"]));
}

#[sqlx::test]
async fn rotating_a_key_writes_key_rotated_naming_old_and_new_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, _) = app.key(&tenant, json!({"name": "checkout"})).await;
    let id = key["id"].as_str().unwrap();

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/keys/{id}/rotate"),
            &app.admin,
            json!({"grace_period_seconds": 60}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit?action=key.rotated")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_id"], id);
    assert_eq!(found[0]["details"]["new_key_id"], reply.body["key"]["id"]);
    assert_eq!(found[0]["details"]["grace_period_seconds"], 60);
    assert!(!found[0]
        .to_string()
        .contains(&reply.body["token"].as_str().unwrap()[8..]));
}

#[sqlx::test]
async fn revoking_a_key_writes_key_revoked_with_the_reason(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, _) = app.key(&tenant, json!({"name": "checkout"})).await;
    let id = key["id"].as_str().unwrap();

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/keys/{id}/revoke"),
            &app.admin,
            json!({"reason": "leaked in a log"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit?action=key.revoked")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_id"], id);
    assert_eq!(found[0]["details"]["reason"], "leaked in a log");
}

#[sqlx::test]
async fn creating_a_platform_service_token_writes_a_platform_service_token_created(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": ["keys:verify"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let id = reply.body["service_token"]["id"].as_str().unwrap();

    let found = events(&app, &format!("/v1/audit?action=service_token.created&target={id}")).await;
    assert_eq!(found.len(), 1);
    assert!(found[0]["tenant_id"].is_null());
    assert_eq!(found[0]["target_kind"], "service_token");
    assert_eq!(found[0]["details"]["permissions"], json!(["keys:verify"]));
    assert!(!found[0]
        .to_string()
        .contains(&reply.body["token"].as_str().unwrap()[7..]));
}

#[sqlx::test]
async fn creating_a_tenant_service_token_writes_service_token_created_in_that_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens"),
            &app.admin,
            json!({"name": "backend", "permissions": ["keys:verify"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);

    let found = events(
        &app,
        &format!("/v1/tenants/{tenant}/audit?action=service_token.created"),
    )
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_id"], reply.body["service_token"]["id"]);
}

#[sqlx::test]
async fn rotating_a_service_token_writes_service_token_rotated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": ["keys:verify"]}),
        )
        .await;
    let id = created.body["service_token"]["id"].as_str().unwrap();

    let reply = app
        .post(&format!("/v1/service-tokens/{id}/rotate"), &app.admin, json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);

    let found = events(&app, "/v1/audit?action=service_token.rotated").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_id"], id);
    assert_eq!(found[0]["details"]["new_key_id"], reply.body["service_token"]["id"]);
}

#[sqlx::test]
async fn revoking_a_service_token_writes_service_token_revoked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": ["keys:verify"]}),
        )
        .await;
    let id = created.body["service_token"]["id"].as_str().unwrap();

    let reply = app
        .post(&format!("/v1/service-tokens/{id}/revoke"), &app.admin, json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let found = events(&app, "/v1/audit?action=service_token.revoked").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["target_id"], id);
}

#[sqlx::test]
async fn a_failed_verification_writes_key_verify_failed_once_flushed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "checkout"})).await;
    let id = key["id"].as_str().unwrap();
    app.post(&format!("/v1/tenants/{tenant}/keys/{id}/revoke"), &app.admin, json!({}))
        .await;
    assert_eq!(app.verify(&token, &[]).await["code"], "REVOKED");

    app.flush().await;

    let found = events(&app, &format!("/v1/tenants/{tenant}/audit?action=key.verify_failed")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["outcome"], "denied");
    assert_eq!(found[0]["target_id"], id);
    assert_eq!(found[0]["details"]["code"], "REVOKED");
    assert!(!found[0].to_string().contains(&token[8..]));
}

#[sqlx::test]
async fn a_successful_verification_writes_no_audit_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "checkout"})).await;
    let before = count(&app, "SELECT count(*) FROM audit_events").await;

    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    app.flush().await;

    assert_eq!(count(&app, "SELECT count(*) FROM audit_events").await, before);
}

// ---- reading the trail ------------------------------------------------------------------

#[sqlx::test]
async fn the_platform_listing_shows_every_tenants_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;

    let found = events(&app, "/v1/audit?action=tenant.created").await;

    let mut tenants: Vec<&str> = found.iter().map(|e| e["tenant_id"].as_str().unwrap()).collect();
    tenants.sort_unstable();
    let mut expected = [acme.as_str(), globex.as_str()];
    expected.sort_unstable();
    assert_eq!(tenants, expected);
}

#[sqlx::test]
async fn the_platform_listing_filters_by_tenant_id(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.key(&globex, json!({"name": "globex key"})).await;

    let found = events(&app, &format!("/v1/audit?tenant_id={acme}")).await;

    assert_eq!(actions(&found), ["tenant.created"]);
    assert_eq!(found[0]["tenant_id"], acme.as_str());
}

#[sqlx::test]
async fn a_tenants_listing_shows_only_that_tenants_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.key(&acme, json!({"name": "acme key"})).await;
    app.key(&globex, json!({"name": "globex key"})).await;

    let found = events(&app, &format!("/v1/tenants/{acme}/audit")).await;

    assert_eq!(actions(&found), ["key.created", "tenant.created"]);
    assert!(found.iter().all(|e| e["tenant_id"] == acme.as_str()));
}

#[sqlx::test]
async fn a_tenant_bound_token_with_audit_read_reads_its_own_tenants_trail(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let auditor = app.service_token(Some(&acme), &[Permission::AuditRead]).await;

    let reply = app.get(&format!("/v1/tenants/{acme}/audit"), &auditor).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert!(actions(reply.body["items"].as_array().unwrap()).contains(&"tenant.created"));
}

#[sqlx::test]
async fn a_tenant_bound_token_gets_403_on_the_platform_listing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let auditor = app.service_token(Some(&acme), &Permission::ALL).await;

    let reply = app.get(&format!("/v1/audit?tenant_id={acme}"), &auditor).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_tenant_bound_token_gets_404_for_another_tenants_trail(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let auditor = app.service_token(Some(&acme), &Permission::ALL).await;

    let reply = app.get(&format!("/v1/tenants/{globex}/audit"), &auditor).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn reading_the_trail_without_audit_read_is_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let keys_only = app
        .service_token(None, &[Permission::KeysRead, Permission::KeysWrite])
        .await;

    let reply = app.get(&format!("/v1/tenants/{acme}/audit"), &keys_only).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn the_trail_of_a_tenant_that_does_not_exist_is_404(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .get("/v1/tenants/0190a0b0-0000-7000-8000-000000000000/audit", &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{:?}", reply.body);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn tenant_id_in_the_query_of_a_tenants_listing_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;

    let reply = app
        .get(&format!("/v1/tenants/{acme}/audit?tenant_id={acme}"), &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "tenant_id");
}

#[sqlx::test]
async fn filtering_by_action_returns_only_that_action(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    app.key(&acme, json!({"name": "one"})).await;
    app.key(&acme, json!({"name": "two"})).await;

    let found = events(&app, &format!("/v1/tenants/{acme}/audit?action=key.created")).await;

    assert_eq!(actions(&found), ["key.created", "key.created"]);
}

#[sqlx::test]
async fn filtering_by_actor_returns_only_that_tokens_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let writer = app.service_token(None, &[Permission::KeysWrite]).await;
    let writer_id = token_id(&app, &writer).await;
    let by_writer = app
        .post(
            &format!("/v1/tenants/{acme}/keys"),
            &writer,
            json!({"name": "by writer"}),
        )
        .await;
    assert_eq!(by_writer.status, StatusCode::CREATED);
    app.key(&acme, json!({"name": "by admin"})).await;

    let found = events(&app, &format!("/v1/tenants/{acme}/audit?actor={writer_id}")).await;

    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["actor_id"], writer_id.as_str());
    assert_eq!(found[0]["target_id"], by_writer.body["key"]["id"]);
}

#[sqlx::test]
async fn filtering_by_target_returns_only_that_keys_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let (key, _) = app.key(&acme, json!({"name": "watched"})).await;
    app.key(&acme, json!({"name": "other"})).await;
    let id = key["id"].as_str().unwrap();
    app.post(&format!("/v1/tenants/{acme}/keys/{id}/revoke"), &app.admin, json!({}))
        .await;

    let found = events(&app, &format!("/v1/tenants/{acme}/audit?target={id}")).await;

    assert_eq!(actions(&found), ["key.revoked", "key.created"]);
    assert!(found.iter().all(|e| e["target_id"] == id));
}

#[sqlx::test]
async fn filtering_by_outcome_denied_returns_only_failed_verifications(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let (_, token) = app
        .key(&acme, json!({"name": "narrow", "scopes": ["billing:read"]}))
        .await;
    assert_eq!(
        app.verify(&token, &["billing:write"]).await["code"],
        "INSUFFICIENT_SCOPE"
    );
    app.flush().await;

    let found = events(&app, &format!("/v1/tenants/{acme}/audit?outcome=denied")).await;

    assert_eq!(actions(&found), ["key.verify_failed"]);
    assert_eq!(found[0]["outcome"], "denied");
}

#[sqlx::test]
async fn since_and_until_bound_the_events_by_time(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    app.advance(3600);
    let middle =
        (app.clock().now() - chrono::Duration::seconds(1800)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    app.key(&acme, json!({"name": "later"})).await;

    let since = events(&app, &format!("/v1/tenants/{acme}/audit?since={middle}")).await;
    let until = events(&app, &format!("/v1/tenants/{acme}/audit?until={middle}")).await;

    assert_eq!(actions(&since), ["key.created"]);
    assert_eq!(actions(&until), ["tenant.created"]);
}

#[sqlx::test]
async fn an_unparsable_since_is_a_400_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;

    let reply = app
        .get(&format!("/v1/tenants/{acme}/audit?since=yesterday"), &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn keyset_pages_walk_the_trail_newest_first_without_gaps_or_repeats(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    for name in ["one", "two", "three", "four"] {
        app.key(&acme, json!({"name": name})).await;
    }
    let everything = events(&app, &format!("/v1/tenants/{acme}/audit")).await;
    assert_eq!(everything.len(), 5);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tenants/{acme}/audit?limit=2&cursor={c}"),
            None => format!("/v1/tenants/{acme}/audit?limit=2"),
        };
        let reply = app.get(&path, &app.admin).await;
        assert_eq!(reply.status, StatusCode::OK);
        let items = reply.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|e| e["id"].as_i64().unwrap()));
        pages += 1;
        match reply.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }

    let all_ids: Vec<i64> = everything.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(pages, 3);
    assert_eq!(seen, all_ids);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first: {seen:?}");
}

#[sqlx::test]
async fn an_audit_limit_above_100_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/audit?limit=101", &app.admin).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "limit");
}

#[sqlx::test]
async fn an_audit_cursor_the_api_never_returned_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/audit?cursor=abc", &app.admin).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "cursor");
}

// ---- append-only storage and the hash chain ---------------------------------------------

#[sqlx::test]
async fn the_database_refuses_to_update_an_audit_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;

    let result = sqlx::query("UPDATE audit_events SET outcome = 'failure'")
        .execute(&app.pool)
        .await;

    assert!(result.is_err(), "UPDATE on audit_events succeeded");
    assert_eq!(
        count(&app, "SELECT count(*) FROM audit_events WHERE outcome = 'failure'").await,
        0
    );
}

#[sqlx::test]
async fn the_database_refuses_to_delete_an_audit_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;
    let before = count(&app, "SELECT count(*) FROM audit_events").await;

    let result = sqlx::query("DELETE FROM audit_events").execute(&app.pool).await;

    assert!(result.is_err(), "DELETE on audit_events succeeded");
    assert_eq!(count(&app, "SELECT count(*) FROM audit_events").await, before);
}

#[sqlx::test]
async fn the_database_refuses_to_truncate_the_audit_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;
    let before = count(&app, "SELECT count(*) FROM audit_events").await;

    let result = sqlx::query("TRUNCATE audit_events").execute(&app.pool).await;

    assert!(result.is_err(), "TRUNCATE on audit_events succeeded");
    assert_eq!(count(&app, "SELECT count(*) FROM audit_events").await, before);
}

#[sqlx::test]
async fn each_tenants_events_form_a_hash_chain_even_when_interleaved(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    for name in ["one", "two"] {
        app.key(&acme, json!({"name": name})).await;
        app.key(&globex, json!({"name": name})).await;
    }

    for tenant in [&acme, &globex] {
        let chain: Vec<(Option<Vec<u8>>, Vec<u8>)> =
            sqlx::query_as("SELECT prev_hash, hash FROM audit_events WHERE tenant_id = $1 ORDER BY id")
                .bind(uuid::Uuid::parse_str(tenant).unwrap())
                .fetch_all(&app.pool)
                .await
                .unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[0].0, None, "the first event of a chain has no prev_hash");
        for pair in chain.windows(2) {
            assert_eq!(pair[1].0.as_deref(), Some(pair[0].1.as_slice()));
        }
        assert!(chain.iter().all(|(_, hash)| hash.len() == 32));
    }
}

#[sqlx::test]
async fn platform_events_form_their_own_hash_chain(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;
    for name in ["one", "two"] {
        let reply = app
            .post(
                "/v1/service-tokens",
                &app.admin,
                json!({"name": name, "permissions": ["keys:verify"]}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }

    let chain: Vec<(Option<Vec<u8>>, Vec<u8>)> =
        sqlx::query_as("SELECT prev_hash, hash FROM audit_events WHERE tenant_id IS NULL ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();

    // The harness's admin token, then the two above.
    assert_eq!(chain.len(), 3);
    assert_eq!(chain[0].0, None);
    for pair in chain.windows(2) {
        assert_eq!(pair[1].0.as_deref(), Some(pair[0].1.as_slice()));
    }
}

// ---- a mutation and its event commit together or not at all -----------------------------

#[sqlx::test]
async fn when_writing_key_created_fails_the_key_is_not_created(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    break_audit_for(&app, "key.created").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{acme}/keys"),
            &app.admin,
            json!({"name": "checkout"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(reply.body["status"], 500);
    assert!(reply.body.get("token").is_none());
    assert!(!reply.body.to_string().contains("audit store down"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM api_keys WHERE kind = 'customer'").await,
        0
    );
}

#[sqlx::test]
async fn when_writing_tenant_created_fails_the_tenant_is_not_created(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    break_audit_for(&app, "tenant.created").await;

    let reply = app
        .post("/v1/tenants", &app.admin, json!({"slug": "acme", "name": "Acme"}))
        .await;

    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(count(&app, "SELECT count(*) FROM tenants").await, 0);
}

#[sqlx::test]
async fn when_writing_key_revoked_fails_the_key_stays_valid(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let (key, token) = app.key(&acme, json!({"name": "checkout"})).await;
    break_audit_for(&app, "key.revoked").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{acme}/keys/{}/revoke", key["id"].as_str().unwrap()),
            &app.admin,
            json!({}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
}

#[sqlx::test]
async fn when_writing_key_rotated_fails_no_successor_exists_and_the_old_key_keeps_its_expiry(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let (key, _) = app.key(&acme, json!({"name": "checkout"})).await;
    break_audit_for(&app, "key.rotated").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{acme}/keys/{}/rotate", key["id"].as_str().unwrap()),
            &app.admin,
            json!({"grace_period_seconds": 0}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        count(&app, "SELECT count(*) FROM api_keys WHERE kind = 'customer'").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM api_keys WHERE expires_at IS NOT NULL").await,
        0
    );
}

#[sqlx::test]
async fn when_writing_tenant_updated_fails_the_tenant_stays_active(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    break_audit_for(&app, "tenant.updated").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{acme}"),
            &app.admin,
            json!({"status": "suspended"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let read = app.get(&format!("/v1/tenants/{acme}"), &app.admin).await;
    assert_eq!(read.body["status"], "active");
}

#[sqlx::test]
async fn when_writing_service_token_created_fails_no_token_is_issued(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let before = count(&app, "SELECT count(*) FROM api_keys WHERE kind = 'service'").await;
    break_audit_for(&app, "service_token.created").await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.get("token").is_none());
    assert_eq!(
        count(&app, "SELECT count(*) FROM api_keys WHERE kind = 'service'").await,
        before
    );
}

#[sqlx::test]
async fn every_stored_hash_recomputes_from_its_row_and_the_previous_hash(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let (key, token) = app
        .key(
            &acme,
            json!({"name": "checkout", "scopes": ["billing:read"], "ttl_seconds": 60}),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    app.post(
        &format!("/v1/tenants/{acme}/keys/{id}/rotate"),
        &app.admin,
        json!({"grace_period_seconds": 30}),
    )
    .await;
    app.verify(&token, &["billing:write"]).await;
    app.flush().await;

    type Row = (
        chrono::DateTime<chrono::Utc>,
        Option<uuid::Uuid>,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Value,
        Option<Vec<u8>>,
        Vec<u8>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT occurred_at, tenant_id, actor_kind, actor_id, action, target_kind, target_id,
                outcome, request_id, host(ip), user_agent, details, prev_hash, hash
         FROM audit_events WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(uuid::Uuid::parse_str(&acme).unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();

    use keyward::domain::audit::{Actor, ActorKind, AuditAction, NewAuditEvent, Outcome, RequestMeta};
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    assert_eq!(
        rows.len(),
        4,
        "tenant.created, key.created, key.rotated, key.verify_failed"
    );
    for row in rows {
        let action = row.4.clone();
        let event = NewAuditEvent {
            occurred_at: row.0,
            tenant_id: row.1.map(keyward::domain::ids::TenantId),
            actor: Actor {
                kind: ActorKind::parse(&row.2).unwrap(),
                id: row.3,
            },
            action: AuditAction::parse(&row.4).unwrap(),
            target_kind: row.5.map(leak),
            target_id: row.6,
            outcome: Outcome::parse(&row.7).unwrap(),
            meta: RequestMeta {
                request_id: row.8,
                ip: row.9.map(|ip| ip.parse().unwrap()),
                user_agent: row.10,
            },
            details: row.11,
        };
        assert_eq!(
            event.chain_hash(row.12.as_deref()).as_slice(),
            row.13.as_slice(),
            "the stored hash of {action} does not match its stored fields"
        );
    }
}

#[sqlx::test]
async fn concurrent_mutations_in_one_tenant_keep_one_unbroken_chain(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let request = app
            .client
            .post(format!("{}/v1/tenants/{acme}/keys", app.base))
            .bearer_auth(&app.admin)
            .json(&json!({"name": format!("key {i}")}));
        tasks.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }

    let chain: Vec<(Option<Vec<u8>>, Vec<u8>)> =
        sqlx::query_as("SELECT prev_hash, hash FROM audit_events WHERE tenant_id = $1 ORDER BY id")
            .bind(uuid::Uuid::parse_str(&acme).unwrap())
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(chain.len(), 13);
    assert_eq!(chain[0].0, None);
    for pair in chain.windows(2) {
        assert_eq!(pair[1].0.as_deref(), Some(pair[0].1.as_slice()), "the chain forks");
    }
}

#[sqlx::test]
async fn batched_verify_failures_of_several_tenants_extend_each_tenants_chain(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (_, acme_key) = app.key(&acme, json!({"name": "a", "scopes": ["x"]})).await;
    let (_, globex_key) = app.key(&globex, json!({"name": "g", "scopes": ["x"]})).await;
    for _ in 0..3 {
        app.verify(&acme_key, &["y"]).await;
        app.verify(&globex_key, &["y"]).await;
    }
    app.key(&acme, json!({"name": "after"})).await;

    app.flush().await;

    for tenant in [&acme, &globex] {
        type Link = (Option<Vec<u8>>, Vec<u8>, String, serde_json::Value);
        let chain: Vec<Link> = sqlx::query_as(
            "SELECT prev_hash, hash, action, details FROM audit_events WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(uuid::Uuid::parse_str(tenant).unwrap())
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let refused: i64 = chain
            .iter()
            .filter(|(_, _, action, _)| action == "key.verify_failed")
            .map(|(_, _, _, details)| details["count"].as_i64().unwrap())
            .sum();
        assert_eq!(refused, 3, "three refusals, coalesced per minute");
        assert_eq!(chain[0].0, None);
        for pair in chain.windows(2) {
            assert_eq!(pair[1].0.as_deref(), Some(pair[0].1.as_slice()));
        }
    }
}

#[sqlx::test]
async fn verify_failures_still_queued_are_written_on_clean_shutdown(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let (_, token) = app.key(&acme, json!({"name": "narrow", "scopes": ["a"]})).await;
    assert_eq!(app.verify(&token, &["b"]).await["code"], "INSUFFICIENT_SCOPE");
    let pool = app.pool.clone();

    // Shuts the server down; nothing calls flush.
    drop(app);

    let mut written = 0;
    for _ in 0..100 {
        written = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_events WHERE action = 'key.verify_failed'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if written > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(written, 1, "the queued failure was lost at shutdown");
}
