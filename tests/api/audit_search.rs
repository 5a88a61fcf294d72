//! Review that scales: `q` searches the target ids and details of the audit listings, and every
//! common filter of a million events is answered from an index, touching a few pages
//! (`EXPLAIN (ANALYZE, BUFFERS)`), not a scan of the table or of a tenant's events.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::ids::TenantId;
use keyward::repo::audit::AuditFilter;

fn actions_and_names(items: &Value) -> Vec<(String, String)> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["details"]["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[sqlx::test]
async fn q_finds_events_by_text_in_their_details_or_target(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (checkout, _) = app.key(&tenant, json!({"name": "Checkout-Service"})).await;
    app.key(&tenant, json!({"name": "reports"})).await;

    let by_details = app
        .get(&format!("/v1/tenants/{tenant}/audit?q=checkout"), &app.admin)
        .await;
    let id = checkout["id"].as_str().unwrap();
    let by_target = app
        .get(&format!("/v1/tenants/{tenant}/audit?q={}", &id[4..20]), &app.admin)
        .await;

    assert_eq!(
        actions_and_names(&by_details.body),
        [("key.created".to_owned(), "Checkout-Service".to_owned())]
    );
    assert_eq!(by_target.body["items"][0]["target_id"], checkout["id"]);
}

#[sqlx::test]
async fn q_takes_wildcards_literally(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.key(&tenant, json!({"name": "reports"})).await;

    let reply = app
        .get(&format!("/v1/tenants/{tenant}/audit?q=%25%25%25"), &app.admin)
        .await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["items"], json!([]));
}

#[sqlx::test]
async fn q_of_fewer_than_three_characters_is_a_validation_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app.get(&format!("/v1/tenants/{tenant}/audit?q=ab"), &app.admin).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "q");
}

/// A million events over ten tenants (chain hashes are not what is tested here).
async fn a_million_events(pool: &PgPool) -> Vec<TenantId> {
    let tenants: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO tenants (id, name, slug, created_at, updated_at)
         SELECT gen_random_uuid(), 't' || n, 'tenant-' || n, now(), now()
         FROM generate_series(1, 10) n RETURNING id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, tenant_id, actor_kind, actor_id, action, target_kind, target_id,
                                   outcome, details, prev_hash, hash)
         SELECT now() - make_interval(secs => n), ($1::uuid[])[1 + n % 10], 'service', 'key_actor' || (n % 50),
                (ARRAY['key.created', 'key.revoked', 'key.updated', 'key.verify_failed'])[1 + n % 4],
                'key', 'key_' || md5(n::text), 'success', jsonb_build_object('name', 'key ' || n),
                NULL, sha256(n::text::bytea)
         FROM generate_series(1, 1000000) n",
    )
    .bind(&tenants)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE audit_events").execute(pool).await.unwrap();
    tenants.into_iter().map(TenantId).collect()
}

#[sqlx::test]
async fn every_common_filter_of_a_million_events_is_on_an_index(pool: PgPool) {
    let tenants = a_million_events(&pool).await;
    let tenant = Some(tenants[3]);
    let target: String = sqlx::query_scalar("SELECT target_id FROM audit_events ORDER BY id OFFSET 4242 LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let base = AuditFilter {
        limit: 51,
        ..AuditFilter::default()
    };
    let filters = [
        ("tenant", AuditFilter { tenant, ..base.clone() }),
        (
            "tenant and action",
            AuditFilter {
                tenant,
                action: Some("key.revoked".into()),
                ..base.clone()
            },
        ),
        // No event of this tenant has this actor: without an index on it, every one is read.
        (
            "tenant and actor",
            AuditFilter {
                tenant,
                actor_id: Some("key_actor7".into()),
                ..base.clone()
            },
        ),
        (
            "tenant and rare action",
            AuditFilter {
                tenant,
                action: Some("key.rotated".into()),
                ..base.clone()
            },
        ),
        (
            "target",
            AuditFilter {
                target_id: Some(target.clone()),
                ..base.clone()
            },
        ),
        (
            "platform and action",
            AuditFilter {
                action: Some("key.updated".into()),
                ..base.clone()
            },
        ),
        (
            "tenant and time",
            AuditFilter {
                tenant,
                since: Some(chrono::Utc::now() - chrono::Duration::hours(2)),
                until: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
                ..base.clone()
            },
        ),
        (
            "tenant and text",
            AuditFilter {
                tenant,
                text: Some("key 4242".into()),
                ..base.clone()
            },
        ),
        (
            "next page",
            AuditFilter {
                tenant,
                before_id: Some(500_000),
                ..base.clone()
            },
        ),
    ];

    for (name, filter) in filters {
        let plan = keyward::repo::audit::plan(&pool, &filter).await.unwrap();
        let top = &plan[0]["Plan"];
        let pages = top["Shared Hit Blocks"].as_i64().unwrap() + top["Shared Read Blocks"].as_i64().unwrap();
        assert!(
            !plan.to_string().contains("Seq Scan"),
            "{name}: a sequential scan:\n{plan:#}"
        );
        assert!(
            pages <= PAGES,
            "{name}: {pages} pages read (of the table's ~{TABLE_PAGES}):\n{plan:#}"
        );
    }
}

/// At most this many 8 KiB pages for one listing page of 50 events.
const PAGES: i64 = 1000;
/// The million events take about this many pages.
const TABLE_PAGES: i64 = 20_000;
