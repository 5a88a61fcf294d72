//! `/v1/tenants`: create, list with cursors, read, rename, suspend and resume, and who may do it.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::permissions::Permission;

const PROBLEM: &str = "application/problem+json";

fn fields(body: &serde_json::Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .expect("a validation problem lists its `errors`")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn creating_a_tenant_returns_201_with_id_slug_name_status_and_created_at(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "acme-corp", "name": "Acme Corp"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["slug"], "acme-corp");
    assert_eq!(reply.body["name"], "Acme Corp");
    assert_eq!(reply.body["status"], "active");
    let id = reply.body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id {id} is a UUID");
    let created_at = reply.body["created_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created_at).is_ok());
    let mut keys: Vec<&str> = reply.body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "id", "name", "settings", "slug", "status"]);
    assert_eq!(
        reply.body["settings"],
        json!({"sigv2_enabled": false, "replay_protection": true, "signature_max_skew_seconds": 300})
    );
}

#[sqlx::test]
async fn patching_settings_changes_only_the_given_ones(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{id}"),
            &app.admin,
            json!({"settings": {"sigv2_enabled": true}}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        reply.body["settings"],
        json!({"sigv2_enabled": true, "replay_protection": true, "signature_max_skew_seconds": 300})
    );
}

#[sqlx::test]
async fn a_skew_below_1_second_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{id}"),
            &app.admin,
            json!({"settings": {"signature_max_skew_seconds": 0}}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "settings.signature_max_skew_seconds");
}

#[sqlx::test]
async fn skew_setting_above_the_cap_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{id}"),
            &app.admin,
            json!({"settings": {"signature_max_skew_seconds": 901}}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "settings.signature_max_skew_seconds");
}

#[sqlx::test]
async fn a_created_tenant_can_be_read_back_by_its_id(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app.get(&format!("/v1/tenants/{id}"), &app.admin).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["id"], id.as_str());
    assert_eq!(reply.body["slug"], "acme");
    assert_eq!(reply.body["status"], "active");
}

#[sqlx::test]
async fn a_duplicate_slug_is_409_and_creates_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;

    let reply = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "acme", "name": "Another Acme"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(reply.body["status"], 409);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test]
async fn a_slug_with_uppercase_or_underscore_is_422_naming_the_slug_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post("/v1/tenants", &app.admin, json!({"slug": "Acme_Corp", "name": "Acme"}))
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(fields(&reply.body), ["slug"]);
    assert!(!reply.body["errors"][0]["message"].as_str().unwrap().is_empty());
}

#[sqlx::test]
async fn a_slug_shorter_than_3_or_longer_than_40_characters_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let short = app
        .post("/v1/tenants", &app.admin, json!({"slug": "ab", "name": "A"}))
        .await;
    let long = app
        .post("/v1/tenants", &app.admin, json!({"slug": "a".repeat(41), "name": "A"}))
        .await;
    let longest = app
        .post("/v1/tenants", &app.admin, json!({"slug": "a".repeat(40), "name": "A"}))
        .await;

    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&short.body), ["slug"]);
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&long.body), ["slug"]);
    assert_eq!(longest.status, StatusCode::CREATED);
}

#[sqlx::test]
async fn a_blank_name_is_422_naming_the_name_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post("/v1/tenants", &app.admin, json!({"slug": "acme", "name": "  "}))
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&reply.body), ["name"]);
}

#[sqlx::test]
async fn a_missing_slug_is_a_400_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.post("/v1/tenants", &app.admin, json!({"name": "Acme"})).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_non_uuid_tenant_id_is_a_404_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("acme").await;

    let reply = app.get("/v1/tenants/acme", &app.admin).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(reply.body["status"], 404);
}

#[sqlx::test]
async fn an_unknown_tenant_uuid_is_404(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .get("/v1/tenants/0190a0b0-0000-7000-8000-000000000000", &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn listing_tenants_pages_through_all_of_them_with_limit_and_next_cursor(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for slug in ["one", "two", "three"] {
        app.tenant(slug).await;
    }

    let first = app.get("/v1/tenants?limit=2", &app.admin).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let second = app
        .get(&format!("/v1/tenants?limit=2&cursor={cursor}"), &app.admin)
        .await;

    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert!(second.body["next_cursor"].is_null());
    let mut slugs: Vec<String> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["items"].as_array().unwrap())
        .map(|t| t["slug"].as_str().unwrap().to_owned())
        .collect();
    slugs.sort();
    assert_eq!(slugs, ["one", "three", "two"]);
}

#[sqlx::test]
async fn listing_tenants_in_one_page_has_no_next_cursor(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.tenant("one").await;
    app.tenant("two").await;

    let reply = app.get("/v1/tenants", &app.admin).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["items"].as_array().unwrap().len(), 2);
    assert!(reply.body["next_cursor"].is_null());
}

#[sqlx::test]
async fn listing_tenants_with_a_limit_above_100_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/tenants?limit=101", &app.admin).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(fields(&reply.body), ["limit"]);
}

#[sqlx::test]
async fn listing_tenants_with_a_limit_of_0_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/tenants?limit=0", &app.admin).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&reply.body), ["limit"]);
}

#[sqlx::test]
async fn listing_tenants_with_a_cursor_the_api_never_returned_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/tenants?cursor=not-a-cursor", &app.admin).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&reply.body), ["cursor"]);
}

#[sqlx::test]
async fn listing_tenants_with_an_unknown_query_parameter_is_400(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/tenants?colour=blue", &app.admin).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn patching_the_name_renames_the_tenant_and_keeps_its_slug(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{id}"),
            &app.admin,
            json!({"name": "Acme Holdings"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["name"], "Acme Holdings");
    assert_eq!(reply.body["slug"], "acme");
    let read = app.get(&format!("/v1/tenants/{id}"), &app.admin).await;
    assert_eq!(read.body["name"], "Acme Holdings");
}

#[sqlx::test]
async fn patching_status_suspended_suspends_the_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app
        .patch(&format!("/v1/tenants/{id}"), &app.admin, json!({"status": "suspended"}))
        .await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "suspended");
    let read = app.get(&format!("/v1/tenants/{id}"), &app.admin).await;
    assert_eq!(read.body["status"], "suspended");
}

#[sqlx::test]
async fn patching_status_active_resumes_a_suspended_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;
    let path = format!("/v1/tenants/{id}");
    app.patch(&path, &app.admin, json!({"status": "suspended"})).await;

    let reply = app.patch(&path, &app.admin, json!({"status": "active"})).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "active");
}

#[sqlx::test]
async fn an_unknown_status_in_a_patch_is_a_400_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app
        .patch(&format!("/v1/tenants/{id}"), &app.admin, json!({"status": "deleted"}))
        .await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.content_type(), PROBLEM);
    let read = app.get(&format!("/v1/tenants/{id}"), &app.admin).await;
    assert_eq!(read.body["status"], "active");
}

#[sqlx::test]
async fn an_empty_patch_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;

    let reply = app.patch(&format!("/v1/tenants/{id}"), &app.admin, json!({})).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn patching_an_unknown_tenant_is_404(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .patch(
            "/v1/tenants/0190a0b0-0000-7000-8000-000000000000",
            &app.admin,
            json!({"name": "Ghost"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn keys_of_a_suspended_tenant_cannot_be_created_409(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;
    app.patch(&format!("/v1/tenants/{id}"), &app.admin, json!({"status": "suspended"}))
        .await;

    let reply = app
        .post(
            &format!("/v1/tenants/{id}/keys"),
            &app.admin,
            json!({"name": "checkout"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.content_type(), PROBLEM);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE kind = 'customer'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn keys_can_be_created_again_once_a_suspended_tenant_is_resumed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;
    let path = format!("/v1/tenants/{id}");
    app.patch(&path, &app.admin, json!({"status": "suspended"})).await;
    app.patch(&path, &app.admin, json!({"status": "active"})).await;

    let reply = app
        .post(
            &format!("/v1/tenants/{id}/keys"),
            &app.admin,
            json!({"name": "checkout"}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED);
}

#[sqlx::test]
async fn creating_a_tenant_without_credentials_is_401_with_www_authenticate(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .call(
            Method::POST,
            "/v1/tenants",
            None,
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.content_type(), PROBLEM);
    let challenge = reply.headers.get("www-authenticate").unwrap();
    assert!(challenge.to_str().unwrap().starts_with("Bearer"));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn listing_tenants_with_an_unknown_service_token_is_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // Well-formed (right checksum) but never issued.
    let stranger = keyward::domain::token::NewToken::generate(keyward::domain::token::TokenPrefix::Service);

    let reply = app.get("/v1/tenants", stranger.expose()).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key("www-authenticate"));
}

#[sqlx::test]
async fn a_customer_key_never_authenticates_to_the_tenants_api(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;
    let (_, customer_key) = app.key(&id, json!({"name": "checkout"})).await;

    let reply = app.get(&format!("/v1/tenants/{id}"), &customer_key).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn creating_a_tenant_without_tenants_admin_is_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let reader = app
        .service_token(None, &[Permission::KeysRead, Permission::KeysWrite])
        .await;

    let reply = app
        .post("/v1/tenants", &reader, json!({"slug": "acme", "name": "Acme"}))
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn reading_a_tenant_with_only_keys_verify_is_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.tenant("acme").await;
    let verifier = app.service_token(None, &[Permission::KeysVerify]).await;

    let reply = app.get(&format!("/v1/tenants/{id}"), &verifier).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_tenant_bound_token_cannot_create_a_tenant_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app
        .post("/v1/tenants", &bound, json!({"slug": "other", "name": "Other"}))
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_tenant_bound_token_cannot_list_tenants_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app.get("/v1/tenants", &bound).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_tenant_bound_token_cannot_patch_its_own_tenant_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app
        .patch(&format!("/v1/tenants/{own}"), &bound, json!({"status": "suspended"}))
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let read = app.get(&format!("/v1/tenants/{own}"), &app.admin).await;
    assert_eq!(read.body["status"], "active");
}

#[sqlx::test]
async fn a_tenant_bound_token_reads_its_own_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let bound = app.service_token(Some(&own), &[Permission::KeysVerify]).await;

    let reply = app.get(&format!("/v1/tenants/{own}"), &bound).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["slug"], "acme");
}

#[sqlx::test]
async fn a_tenant_bound_token_gets_404_for_another_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let other = app.tenant("globex").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app.get(&format!("/v1/tenants/{other}"), &bound).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), PROBLEM);
    assert!(!reply.body.to_string().contains("globex"));
}

#[sqlx::test]
async fn a_tenants_owner_and_admin_tune_its_settings(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, owner) = app.member(&tenant, "owner@example.com", "owner").await;
    let (_, admin) = app.member(&tenant, "admin@example.com", "admin").await;
    let path = format!("/v1/tenants/{tenant}");

    let by_owner = app
        .patch(&path, &owner, json!({"settings": {"sigv2_enabled": true}}))
        .await;
    let by_admin = app
        .patch(&path, &admin, json!({"settings": {"signature_max_skew_seconds": 120}}))
        .await;

    assert_eq!(by_owner.status, StatusCode::OK, "{:?}", by_owner.body);
    assert_eq!(by_admin.status, StatusCode::OK, "{:?}", by_admin.body);
    assert_eq!(by_admin.body["settings"]["sigv2_enabled"], true);
    assert_eq!(by_admin.body["settings"]["signature_max_skew_seconds"], 120);
    let events = app
        .get(&format!("/v1/tenants/{tenant}/audit?action=tenant.updated"), &app.admin)
        .await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 2);
}

#[sqlx::test]
async fn a_developer_cannot_change_the_tenants_settings(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, developer) = app.member(&tenant, "dev@example.com", "developer").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{tenant}"),
            &developer,
            json!({"settings": {"sigv2_enabled": true}}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_tenants_owner_cannot_rename_or_suspend_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, owner) = app.member(&tenant, "owner@example.com", "owner").await;
    let path = format!("/v1/tenants/{tenant}");

    let renamed = app.patch(&path, &owner, json!({"name": "Mine now"})).await;
    let resumed = app.patch(&path, &owner, json!({"status": "active"})).await;

    assert_eq!(renamed.status, StatusCode::FORBIDDEN);
    assert_eq!(resumed.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn an_owner_cannot_change_another_tenants_settings(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (_, owner) = app.member(&acme, "owner@example.com", "owner").await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{globex}"),
            &owner,
            json!({"settings": {"sigv2_enabled": true}}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
