//! Verification outcomes are counted, not logged per call, and the usage API reports the counts
//! per key, per owner and for tokens that matched no key.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::permissions::Permission;
use keyward::domain::token::{NewToken, TokenPrefix};

/// The row count of every table of the schema, by name.
async fn row_counts(pool: &PgPool) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
            .fetch_one(pool)
            .await
            .unwrap();
        counts.push((table, count));
    }
    counts
}

async fn usage(app: &TestApp, tenant: &str, query: &str) -> Value {
    let reply = app
        .get(&format!("/v1/tenants/{tenant}/usage?{query}"), &app.admin)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

#[sqlx::test]
async fn a_flood_of_unknown_and_malformed_tokens_grows_no_table_but_is_counted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.key(&tenant, json!({"name": "real"})).await;
    let verifier = app.service_token(Some(&tenant), &[Permission::KeysVerify]).await;
    app.verify_as(&verifier, "warm-up", &[]).await;
    app.flush().await;
    let before = row_counts(&app.pool).await;

    let calls = 10_000;
    let workers = 64;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, base, verifier) = (app.client.clone(), app.base.clone(), verifier.clone());
            tokio::spawn(async move {
                for n in (worker..calls).step_by(workers) {
                    let key = if n % 2 == 0 {
                        NewToken::generate(TokenPrefix::Live).expose().to_owned()
                    } else {
                        format!("sk_live_not-a-token-{n}")
                    };
                    let reply = client
                        .post(format!("{base}/v1/verify"))
                        .bearer_auth(&verifier)
                        .json(&json!({"key": key}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(reply.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    app.flush().await;
    let after = row_counts(&app.pool).await;

    let grown: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(_, (table, count))| (table.as_str(), *count))
        .collect();
    assert!(
        grown
            .iter()
            .all(|(table, count)| *table == "verification_counts" && *count <= 6),
        "{grown:?}"
    );
    let report = usage(&app, &tenant, "granularity=day").await;
    assert_eq!(report["unmatched"]["by_code"]["NOT_FOUND"], calls / 2);
    assert_eq!(report["unmatched"]["by_code"]["MALFORMED"], calls / 2 + 1);
}

#[sqlx::test]
async fn verifications_are_counted_per_key_and_owner_by_code(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (first, first_token) = app
        .key(&tenant, json!({"name": "a", "owner_id": "cus_1", "scopes": ["read"]}))
        .await;
    let (_, second_token) = app.key(&tenant, json!({"name": "b", "owner_id": "cus_1"})).await;
    let (_, other_token) = app.key(&tenant, json!({"name": "c", "owner_id": "cus_2"})).await;
    for _ in 0..3 {
        app.verify(&first_token, &["read"]).await;
    }
    app.verify(&first_token, &["write"]).await;
    app.verify(&second_token, &[]).await;
    app.verify(&other_token, &[]).await;
    app.flush().await;

    let report = usage(&app, &tenant, "").await;

    let first_id = first["id"].as_str().unwrap();
    let first_usage = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == first_id)
        .unwrap();
    assert_eq!(first_usage["owner_id"], "cus_1");
    assert_eq!(first_usage["total"], 4);
    assert_eq!(first_usage["by_code"], json!({"VALID": 3, "INSUFFICIENT_SCOPE": 1}));
    assert_eq!(
        report["owners"],
        json!([
            {"owner_id": "cus_1", "total": 5, "by_code": {"VALID": 4, "INSUFFICIENT_SCOPE": 1}},
            {"owner_id": "cus_2", "total": 1, "by_code": {"VALID": 1}},
        ])
    );
    assert_eq!(report["total"]["total"], 6);
    assert_eq!(report["granularity"], "hour");
}

#[sqlx::test]
async fn usage_can_be_narrowed_to_one_owner_or_one_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (mine, mine_token) = app.key(&tenant, json!({"name": "a", "owner_id": "cus_1"})).await;
    let (_, theirs_token) = app.key(&tenant, json!({"name": "b", "owner_id": "cus_2"})).await;
    app.verify(&mine_token, &[]).await;
    app.verify(&theirs_token, &[]).await;
    app.flush().await;

    let by_owner = usage(&app, &tenant, "owner_id=cus_1").await;
    let by_key = usage(&app, &tenant, &format!("key_id={}", mine["id"].as_str().unwrap())).await;

    for report in [by_owner, by_key] {
        assert_eq!(report["total"]["total"], 1);
        assert_eq!(report["keys"].as_array().unwrap().len(), 1);
        assert_eq!(report["keys"][0]["key_id"], mine["id"]);
    }
}

#[sqlx::test]
async fn usage_as_csv_lists_each_bucket(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "a", "owner_id": "cus_1"})).await;
    app.verify(&token, &[]).await;
    app.verify(&token, &[]).await;
    app.flush().await;

    let reply = app
        .client
        .get(format!("{}/v1/tenants/{tenant}/usage?granularity=day", app.base))
        .bearer_auth(&app.admin)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();

    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = reply.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "start,key_id,owner_id,code,count");
    let day = app.clock().now().format("%Y-%m-%dT00:00:00Z");
    assert_eq!(lines[1], format!("{day},{},cus_1,VALID,2", key["id"].as_str().unwrap()));
    assert_eq!(lines.len(), 2);
}

#[sqlx::test]
async fn another_tenants_credential_cannot_read_usage(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let globex_reader = app.service_token(Some(&globex), &[Permission::KeysRead]).await;
    let acme_verifier = app.service_token(Some(&acme), &[Permission::KeysVerify]).await;

    let foreign = app.get(&format!("/v1/tenants/{acme}/usage"), &globex_reader).await;
    let lower = app.get(&format!("/v1/tenants/{acme}/usage"), &acme_verifier).await;
    let nobody = app
        .call(reqwest::Method::GET, &format!("/v1/tenants/{acme}/usage"), None, None)
        .await;

    assert_eq!(
        foreign.status,
        StatusCode::NOT_FOUND,
        "another tenant's is not even said to exist"
    );
    assert_eq!(lower.status, StatusCode::FORBIDDEN);
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn usage_of_a_tenant_that_does_not_exist_is_404(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .get("/v1/tenants/00000000-0000-7000-8000-000000000000/usage", &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn an_unknown_granularity_is_422_naming_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .get(&format!("/v1/tenants/{tenant}/usage?granularity=week"), &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "granularity");
}

#[sqlx::test]
async fn refusals_of_one_key_in_one_minute_make_one_audit_event_with_their_count(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "narrow", "scopes": ["read"]})).await;
    let at_minute_start = 60 - app.clock().now().timestamp().rem_euclid(60);
    app.advance(at_minute_start); // the five calls below fall in one minute
    for _ in 0..5 {
        app.verify(&token, &["write"]).await;
    }
    app.flush().await;

    let events = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?action=key.verify_failed"),
            &app.admin,
        )
        .await;

    let items = events.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["target_id"], key["id"]);
    assert_eq!(items[0]["details"]["code"], "INSUFFICIENT_SCOPE");
    assert_eq!(items[0]["details"]["count"], 5);
}

#[sqlx::test]
async fn refusals_after_a_flush_in_the_same_minute_are_counted_without_a_second_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "narrow", "scopes": ["read"]})).await;
    let at_minute_start = 60 - app.clock().now().timestamp().rem_euclid(60);
    app.advance(at_minute_start);
    app.verify(&token, &["write"]).await;
    app.flush().await;
    app.verify(&token, &["write"]).await;
    app.flush().await;

    let events = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?action=key.verify_failed"),
            &app.admin,
        )
        .await;
    let report = usage(&app, &tenant, "").await;

    assert_eq!(events.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(report["total"]["by_code"]["INSUFFICIENT_SCOPE"], 2);
}

#[sqlx::test]
async fn tokens_that_match_no_key_write_no_audit_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let verifier = app.service_token(Some(&tenant), &[Permission::KeysVerify]).await;
    app.verify_as(&verifier, NewToken::generate(TokenPrefix::Live).expose(), &[])
        .await;
    app.verify_as(&verifier, "garbage", &[]).await;
    app.flush().await;

    let events = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?action=key.verify_failed"),
            &app.admin,
        )
        .await;
    let report = usage(&app, &tenant, "").await;

    assert_eq!(events.body["items"], json!([]));
    assert_eq!(
        report["unmatched"],
        json!({"total": 2, "by_code": {"NOT_FOUND": 1, "MALFORMED": 1}})
    );
}
