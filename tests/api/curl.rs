//! Requests signed by a real client: curl's own AWS Signature Version 4 implementation.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;

fn curl(args: Vec<String>) -> (String, String) {
    let output = std::process::Command::new("curl")
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn signing_key(app: &TestApp) -> (String, String, String) {
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "curl", "signing": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    (
        tenant,
        created.body["key"]["id"].as_str().unwrap().to_owned(),
        created.body["signing_secret"].as_str().unwrap().to_owned(),
    )
}

/// `curl --aws-sigv4` against `/v1/authorize`; returns the status code curl saw.
async fn signed_by_curl(app: &TestApp, provider: &str, user: &str, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec![
        "--silent".into(),
        "--output".into(),
        "/dev/null".into(),
        "--write-out".into(),
        "%{http_code}".into(),
        "--aws-sigv4".into(),
        provider.into(),
        "--user".into(),
        user.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("{}/v1/authorize?page=2&sort=desc", app.base));
    let (stdout, stderr) = tokio::task::spawn_blocking(move || curl(args)).await.unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    stdout
}

#[sqlx::test]
async fn a_get_signed_by_curl_aws_sigv4_is_authorized(pool: PgPool) {
    let app = TestApp::spawn_open_gateway(pool).await;
    let (_, key_id, secret) = signing_key(&app).await;

    let status = signed_by_curl(&app, "aws:amz:us-east-1:keyward", &format!("{key_id}:{secret}"), &[]).await;

    assert_eq!(status, "200");
}

#[sqlx::test]
async fn a_post_with_a_body_signed_by_curl_aws_sigv4_is_authorized(pool: PgPool) {
    let app = TestApp::spawn_open_gateway(pool).await;
    let (_, key_id, secret) = signing_key(&app).await;

    let status = signed_by_curl(
        &app,
        "aws:amz:us-east-1:keyward",
        &format!("{key_id}:{secret}"),
        &[
            "--header",
            "Content-Type: application/json",
            "--data",
            r#"{"amount":100}"#,
        ],
    )
    .await;

    assert_eq!(status, "200");
}

#[sqlx::test]
async fn curl_signing_with_the_wrong_secret_is_refused(pool: PgPool) {
    let app = TestApp::spawn_open_gateway(pool).await;
    let (_, key_id, _) = signing_key(&app).await;

    let status = signed_by_curl(
        &app,
        "aws:amz:us-east-1:keyward",
        &format!("{key_id}:wrong-secret"),
        &[],
    )
    .await;

    assert_eq!(status, "401");
}

#[sqlx::test]
async fn curl_signing_for_another_service_is_refused(pool: PgPool) {
    let app = TestApp::spawn_open_gateway(pool).await;
    let (_, key_id, secret) = signing_key(&app).await;

    let status = signed_by_curl(&app, "aws:amz:us-east-1:s3", &format!("{key_id}:{secret}"), &[]).await;

    assert_eq!(status, "401");
}
