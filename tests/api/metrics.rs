//! `GET /metrics`: Prometheus text, labelled by route templates and codes, never by what a
//! caller sent.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;

async fn scrape(app: &TestApp) -> String {
    let reply = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        reply.headers()
    );
    reply.text().await.unwrap()
}

/// The value of the series `series` (name and labels exactly as rendered), if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[sqlx::test]
async fn requests_are_counted_by_route_template_never_by_the_path_requested(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    app.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(
        app.get(&format!("/v1/tenants/{tenant}/keys"), &app.admin).await.status,
        StatusCode::OK
    );

    let text = scrape(&app).await;

    let series = r#"keyward_http_requests_total{method="GET",route="/v1/tenants/{tenant_id}/keys",status="200"}"#;
    assert_eq!(value(&text, series), Some(1.0), "{text}");
    let latency = r#"keyward_http_request_duration_seconds_count{method="GET",route="/v1/tenants/{tenant_id}/keys"}"#;
    assert_eq!(value(&text, latency), Some(1.0), "{text}");
    assert!(!text.contains(&tenant), "a tenant id reached the metrics");
}

#[sqlx::test]
async fn unknown_paths_and_methods_fall_into_one_series_each(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = reqwest::Client::new();
    for n in 0..3 {
        client
            .get(format!("{}/nothing/here/{n}", app.base))
            .send()
            .await
            .unwrap();
        let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
        client
            .request(brew, format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap();
    }

    let text = scrape(&app).await;

    assert_eq!(
        value(
            &text,
            r#"keyward_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert!(text.contains(r#"method="other""#), "{text}");
    assert!(!text.contains("/nothing/here"), "a requested path reached the metrics");
    assert!(!text.contains("BREW"), "a requested method reached the metrics");
}

#[sqlx::test]
async fn verifications_are_counted_by_code(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, token) = app.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    assert_eq!(app.verify("sk_live_garbage", &[]).await["code"], "MALFORMED");

    let text = scrape(&app).await;

    assert_eq!(
        value(&text, r#"keyward_verifications_total{code="VALID"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"keyward_verifications_total{code="MALFORMED"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains(key["id"].as_str().unwrap()),
        "a key id reached the metrics"
    );
    assert_eq!(value(&text, "keyward_change_listener_up"), Some(1.0), "{text}");
    assert!(
        value(&text, "keyward_cache_keys_by_hash").is_some_and(|n| n >= 1.0),
        "{text}"
    );
}
