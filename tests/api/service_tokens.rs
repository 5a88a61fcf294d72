//! Service tokens, keyward's own credentials: issue (platform-wide or tenant-bound), list, read,
//! rotate, revoke, and what a token can and cannot do once issued.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::permissions::Permission;

const PROBLEM: &str = "application/problem+json";

/// Issues a platform-wide token over HTTP with the admin and returns (service_token, token).
async fn platform_token(app: &TestApp, permissions: &[&str]) -> (serde_json::Value, String) {
    let reply = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": permissions}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (
        reply.body["service_token"].clone(),
        reply.body["token"].as_str().unwrap().to_owned(),
    )
}

#[sqlx::test]
async fn creating_a_platform_token_returns_201_with_the_token_shown_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": ["keys:verify", "keys:read"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let token = reply.body["token"].as_str().unwrap();
    assert!(token.starts_with("kw_svc_"));
    assert_eq!(token.len(), "kw_svc_".len() + 49);
    let view = &reply.body["service_token"];
    assert!(view["id"].as_str().unwrap().starts_with("svc_"));
    assert!(view["tenant_id"].is_null());
    assert_eq!(view["name"], "gateway");
    assert_eq!(view["permissions"], json!(["keys:verify", "keys:read"]));
    assert_eq!(view["prefix"], "kw_svc_");
    assert_eq!(view["start"], &token[7..11]);
    assert_eq!(view["status"], "active");
    assert!(!view.to_string().contains(&token[7..]));
}

#[sqlx::test]
async fn creating_a_tenant_token_binds_it_to_that_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens"),
            &app.admin,
            json!({"name": "acme backend", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["service_token"]["tenant_id"], tenant.as_str());
    assert!(reply.body["token"].as_str().unwrap().starts_with("kw_svc_"));
}

#[sqlx::test]
async fn an_issued_token_authenticates_with_exactly_its_permissions(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = platform_token(&app, &["keys:read"]).await;

    let read = app.get(&format!("/v1/tenants/{tenant}/keys"), &token).await;
    let write = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &token,
            json!({"name": "checkout"}),
        )
        .await;

    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert_eq!(write.content_type(), PROBLEM);
}

#[sqlx::test]
async fn an_unknown_permission_is_422_naming_the_permission(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": ["keys:verify", "keys:delete"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.content_type(), PROBLEM);
    assert_eq!(reply.body["errors"][0]["field"], "permissions[1]");
}

#[sqlx::test]
async fn an_empty_permission_list_is_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "gateway", "permissions": []}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "permissions");
}

#[sqlx::test]
async fn creating_a_platform_token_without_tenants_admin_is_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let caller = app
        .service_token(None, &[Permission::KeysVerify, Permission::KeysWrite])
        .await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &caller,
            json!({"name": "gateway", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_caller_cannot_grant_a_permission_it_does_not_hold(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let caller = app
        .service_token(None, &[Permission::TenantsAdmin, Permission::KeysVerify])
        .await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &caller,
            json!({"name": "escalation", "permissions": ["keys:verify", "audit:read"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type(), PROBLEM);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE name = 'escalation'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn a_caller_may_grant_a_subset_of_its_own_permissions(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let caller = app
        .service_token(None, &[Permission::TenantsAdmin, Permission::KeysVerify])
        .await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &caller,
            json!({"name": "verifier", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["service_token"]["permissions"], json!(["keys:verify"]));
}

#[sqlx::test]
async fn rotating_a_token_cannot_hand_the_caller_permissions_it_does_not_hold(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // A powerful token the limited caller must not be able to obtain a copy of.
    let (powerful, _) = platform_token(&app, &["keys:write", "audit:read", "tenants:admin"]).await;
    let caller = app.service_token(None, &[Permission::TenantsAdmin]).await;

    let reply = app
        .post(
            &format!("/v1/service-tokens/{}/rotate", powerful["id"].as_str().unwrap()),
            &caller,
            json!({}),
        )
        .await;

    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a tenants:admin-only caller obtained a new token with {}",
        reply.body["service_token"]["permissions"]
    );
}

#[sqlx::test]
async fn a_tenant_bound_token_cannot_create_platform_tokens_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app
        .post(
            "/v1/service-tokens",
            &bound,
            json!({"name": "gateway", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_tenant_bound_token_cannot_list_platform_tokens_403(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app.get("/v1/service-tokens", &bound).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_tenant_bound_admin_token_issues_tokens_for_its_own_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let bound = app
        .service_token(Some(&own), &[Permission::TenantsAdmin, Permission::KeysVerify])
        .await;

    let reply = app
        .post(
            &format!("/v1/tenants/{own}/service-tokens"),
            &bound,
            json!({"name": "verifier", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["service_token"]["tenant_id"], own.as_str());
}

#[sqlx::test]
async fn a_tenant_bound_token_gets_404_issuing_tokens_for_another_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let other = app.tenant("globex").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app
        .post(
            &format!("/v1/tenants/{other}/service-tokens"),
            &bound,
            json!({"name": "intruder", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_tenant_bound_token_gets_404_listing_another_tenants_tokens(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let own = app.tenant("acme").await;
    let other = app.tenant("globex").await;
    let bound = app.service_token(Some(&own), &Permission::ALL).await;

    let reply = app.get(&format!("/v1/tenants/{other}/service-tokens"), &bound).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn tokens_cannot_be_issued_for_a_suspended_tenant_409(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"status": "suspended"}),
    )
    .await;

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens"),
            &app.admin,
            json!({"name": "late", "permissions": ["keys:verify"]}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_token_of_a_suspended_tenant_no_longer_authenticates(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let bound = app.service_token(Some(&tenant), &Permission::ALL).await;
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}"), &bound).await.status,
        StatusCode::OK
    );
    app.patch(
        &format!("/v1/tenants/{tenant}"),
        &app.admin,
        json!({"status": "suspended"}),
    )
    .await;

    let reply = app.get(&format!("/v1/tenants/{tenant}"), &bound).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn listing_platform_tokens_shows_them_without_any_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, token) = platform_token(&app, &["keys:verify"]).await;

    let reply = app.get("/v1/service-tokens", &app.admin).await;

    assert_eq!(reply.status, StatusCode::OK);
    let ids: Vec<&str> = reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&view["id"].as_str().unwrap()), "{ids:?}");
    assert!(!reply.body.to_string().contains(&token[7..]));
    assert!(!reply.body.to_string().contains(&app.admin[7..]));
}

#[sqlx::test]
async fn listing_a_tenants_tokens_shows_only_that_tenants_tokens(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    for (tenant, name) in [(&acme, "acme-1"), (&acme, "acme-2"), (&globex, "globex-1")] {
        let reply = app
            .post(
                &format!("/v1/tenants/{tenant}/service-tokens"),
                &app.admin,
                json!({"name": name, "permissions": ["keys:verify"]}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }

    let reply = app.get(&format!("/v1/tenants/{acme}/service-tokens"), &app.admin).await;

    assert_eq!(reply.status, StatusCode::OK);
    let mut names: Vec<&str> = reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["acme-1", "acme-2"]);
}

#[sqlx::test]
async fn reading_a_platform_token_by_id_returns_its_view(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, token) = platform_token(&app, &["keys:verify"]).await;
    let id = view["id"].as_str().unwrap();

    let reply = app.get(&format!("/v1/service-tokens/{id}"), &app.admin).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["id"], id);
    assert_eq!(reply.body["permissions"], json!(["keys:verify"]));
    assert!(reply.body.get("token").is_none());
    assert!(!reply.body.to_string().contains(&token[7..]));
}

#[sqlx::test]
async fn a_platform_token_is_not_found_under_a_tenants_route(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (view, _) = platform_token(&app, &["keys:verify"]).await;
    let id = view["id"].as_str().unwrap();

    let reply = app
        .get(&format!("/v1/tenants/{tenant}/service-tokens/{id}"), &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn a_customer_key_id_is_not_a_service_token_id(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, _) = app.key(&tenant, json!({"name": "checkout"})).await;
    let key_id = key["id"].as_str().unwrap();

    let reply = app
        .get(&format!("/v1/tenants/{tenant}/service-tokens/{key_id}"), &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn a_revoked_token_no_longer_authenticates(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, token) = platform_token(&app, &["keys:read", "tenants:admin"]).await;
    assert_eq!(app.get("/v1/tenants", &token).await.status, StatusCode::OK);

    let revoked = app
        .post(
            &format!("/v1/service-tokens/{}/revoke", view["id"].as_str().unwrap()),
            &app.admin,
            json!({"reason": "leaked"}),
        )
        .await;
    let reply = app.get("/v1/tenants", &token).await;

    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    assert_eq!(revoked.body["status"], "revoked");
    assert_eq!(revoked.body["revoked_reason"], "leaked");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key("www-authenticate"));
}

#[sqlx::test]
async fn revoking_a_tenant_token_through_the_tenant_route_stops_it_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens"),
            &app.admin,
            json!({"name": "acme backend", "permissions": ["keys:read"]}),
        )
        .await;
    let id = created.body["service_token"]["id"].as_str().unwrap();
    let token = created.body["token"].as_str().unwrap();

    let revoked = app
        .post(
            &format!("/v1/tenants/{tenant}/service-tokens/{id}/revoke"),
            &app.admin,
            json!({}),
        )
        .await;
    let reply = app.get(&format!("/v1/tenants/{tenant}/keys"), token).await;

    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn revoking_a_token_twice_is_409(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, _) = platform_token(&app, &["keys:verify"]).await;
    let path = format!("/v1/service-tokens/{}/revoke", view["id"].as_str().unwrap());
    app.post(&path, &app.admin, json!({})).await;

    let reply = app.post(&path, &app.admin, json!({})).await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.content_type(), PROBLEM);
}

#[sqlx::test]
async fn an_expired_token_no_longer_authenticates(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            json!({"name": "short-lived", "permissions": ["tenants:admin"], "ttl_seconds": 60}),
        )
        .await;
    let token = created.body["token"].as_str().unwrap();
    assert_eq!(app.get("/v1/tenants", token).await.status, StatusCode::OK);

    app.advance(61);
    let reply = app.get("/v1/tenants", token).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn rotating_a_token_returns_a_new_token_and_both_work_during_the_grace_period(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, old) = platform_token(&app, &["tenants:admin"]).await;
    let id = view["id"].as_str().unwrap();

    let rotated = app
        .post(
            &format!("/v1/service-tokens/{id}/rotate"),
            &app.admin,
            json!({"grace_period_seconds": 3600}),
        )
        .await;

    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let new = rotated.body["token"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(new.starts_with("kw_svc_"));
    assert_eq!(rotated.body["service_token"]["rotated_from"], id);
    assert_eq!(rotated.body["service_token"]["permissions"], json!(["tenants:admin"]));
    assert_eq!(rotated.body["previous"]["id"], id);
    app.advance(3599);
    assert_eq!(app.get("/v1/tenants", &old).await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/tenants", new).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn a_rotated_away_token_fails_after_the_grace_period_and_the_new_one_keeps_working(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, old) = platform_token(&app, &["tenants:admin"]).await;
    let rotated = app
        .post(
            &format!("/v1/service-tokens/{}/rotate", view["id"].as_str().unwrap()),
            &app.admin,
            json!({"grace_period_seconds": 3600}),
        )
        .await;
    let new = rotated.body["token"].as_str().unwrap();

    app.advance(3601);

    assert_eq!(app.get("/v1/tenants", &old).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/tenants", new).await.status, StatusCode::OK);
}

#[sqlx::test]
async fn rotating_a_token_without_a_body_uses_a_one_day_grace_period(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, old) = platform_token(&app, &["tenants:admin"]).await;
    let id = view["id"].as_str().unwrap();

    let rotated = app
        .call(
            reqwest::Method::POST,
            &format!("/v1/service-tokens/{id}/rotate"),
            Some(&app.admin),
            None,
        )
        .await;

    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    app.advance(24 * 3600 - 60);
    assert_eq!(app.get("/v1/tenants", &old).await.status, StatusCode::OK);
    app.advance(120);
    assert_eq!(app.get("/v1/tenants", &old).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn rotating_a_token_with_a_zero_grace_period_ends_the_old_one_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, old) = platform_token(&app, &["tenants:admin"]).await;

    let rotated = app
        .post(
            &format!("/v1/service-tokens/{}/rotate", view["id"].as_str().unwrap()),
            &app.admin,
            json!({"grace_period_seconds": 0}),
        )
        .await;

    assert_eq!(rotated.status, StatusCode::CREATED);
    assert_eq!(app.get("/v1/tenants", &old).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn rotating_a_revoked_token_is_409(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (view, _) = platform_token(&app, &["keys:verify"]).await;
    let id = view["id"].as_str().unwrap();
    app.post(&format!("/v1/service-tokens/{id}/revoke"), &app.admin, json!({}))
        .await;

    let reply = app
        .post(&format!("/v1/service-tokens/{id}/rotate"), &app.admin, json!({}))
        .await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE rotated_from = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn a_service_token_presented_to_verify_as_a_key_is_not_found(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = platform_token(&app, &["keys:verify"]).await;

    let verdict = app.verify(&token, &[]).await;

    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "NOT_FOUND");
    assert!(verdict.get("key_id").is_none());
}

#[sqlx::test]
async fn the_verifiers_own_token_presented_as_a_key_is_not_found(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let verdict = app.verify(&app.admin, &[]).await;

    assert_eq!(verdict["code"], "NOT_FOUND");
}

#[sqlx::test]
async fn a_token_cannot_mint_a_token_that_outlives_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let minted = app
        .post(
            "/v1/service-tokens",
            &app.admin,
            serde_json::json!({"name": "short", "permissions": ["tenants:admin", "keys:read"], "ttl_seconds": 3600}),
        )
        .await;
    let short_lived = minted.body["token"].as_str().unwrap().to_owned();

    let child = app
        .post(
            "/v1/service-tokens",
            &short_lived,
            serde_json::json!({"name": "child", "permissions": ["keys:read"]}),
        )
        .await;

    assert_eq!(child.status, reqwest::StatusCode::CREATED, "{:?}", child.body);
    assert_eq!(
        child.body["service_token"]["expires_at"],
        minted.body["service_token"]["expires_at"]
    );
}
