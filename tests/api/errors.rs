//! Errors are RFC 9457 problems, bad input is refused with the right status and never echoes a
//! secret, probes answer, and every response carries a request id that reaches the audit trail.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{Reply, TestApp};

const PROBLEM: &str = "application/problem+json";

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, headers, body }
}

/// A problem body has `type`, `title`, `status` (equal to the HTTP status) and `detail`.
fn assert_problem(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.content_type(), PROBLEM);
    assert!(
        reply.body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{:?}",
        reply.body
    );
    assert!(
        reply.body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["status"], status.as_u16());
    assert!(
        reply.body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{:?}",
        reply.body
    );
}

#[sqlx::test]
async fn an_unknown_route_is_a_404_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/no-such-thing", &app.admin).await;

    assert_problem(&reply, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn an_unknown_route_without_credentials_is_also_a_404_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/nothing/here", None, None).await;

    assert_problem(&reply, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn a_wrong_method_is_a_405_problem_with_allow(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::DELETE, "/v1/tenants", Some(&app.admin), None).await;

    assert_problem(&reply, StatusCode::METHOD_NOT_ALLOWED);
    let allow = reply.headers.get("allow").expect("405 names the allowed methods");
    let allow = allow.to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

#[sqlx::test]
async fn malformed_json_is_a_400_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = send(
        app.client
            .post(format!("{}/v1/tenants", app.base))
            .bearer_auth(&app.admin)
            .header("content-type", "application/json")
            .body(r#"{"slug": "acme", "name": "#),
    )
    .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
}

#[sqlx::test]
async fn an_empty_json_body_is_a_400_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = send(
        app.client
            .post(format!("{}/v1/tenants", app.base))
            .bearer_auth(&app.admin)
            .header("content-type", "application/json"),
    )
    .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
}

#[sqlx::test]
async fn a_json_array_where_an_object_belongs_is_a_400_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.post("/v1/tenants", &app.admin, json!(["acme"])).await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
}

#[sqlx::test]
async fn an_unknown_field_is_a_400_problem_naming_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "acme", "name": "Acme", "colour": "red"}),
        )
        .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert!(reply.body["detail"].as_str().unwrap().contains("colour"));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn a_body_without_content_type_is_415(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = send(
        app.client
            .post(format!("{}/v1/tenants", app.base))
            .bearer_auth(&app.admin)
            .body(r#"{"slug": "acme", "name": "Acme"}"#),
    )
    .await;

    assert_problem(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[sqlx::test]
async fn a_body_with_a_non_json_content_type_is_415(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = send(
        app.client
            .post(format!("{}/v1/tenants", app.base))
            .bearer_auth(&app.admin)
            .header("content-type", "text/plain")
            .body(r#"{"slug": "acme", "name": "Acme"}"#),
    )
    .await;

    assert_problem(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[sqlx::test]
async fn a_body_over_64_kib_is_413(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "acme", "name": "x".repeat(65 * 1024)}),
        )
        .await;

    assert_problem(&reply, StatusCode::PAYLOAD_TOO_LARGE);
}

#[sqlx::test]
async fn a_body_just_under_64_kib_is_read_and_validated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post(
            "/v1/tenants",
            &app.admin,
            json!({"slug": "acme", "name": "x".repeat(60 * 1024)}),
        )
        .await;

    // Read in full, then refused by the 200-character rule on names.
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test]
async fn a_validation_failure_is_422_with_every_field_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post("/v1/tenants", &app.admin, json!({"slug": "A!", "name": ""}))
        .await;

    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = reply.body["errors"].as_array().unwrap();
    let fields: Vec<&str> = errors.iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["slug", "name"]);
    assert!(errors
        .iter()
        .all(|e| e["message"].as_str().is_some_and(|m| !m.is_empty())));
}

#[sqlx::test]
async fn a_401_is_a_problem_with_a_bearer_challenge(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/v1/tenants", None, None).await;

    assert_problem(&reply, StatusCode::UNAUTHORIZED);
    let challenge = reply.headers.get("www-authenticate").unwrap();
    assert!(challenge.to_str().unwrap().starts_with("Bearer"));
}

#[sqlx::test]
async fn a_non_bearer_authorization_is_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = send(
        app.client
            .get(format!("{}/v1/tenants", app.base))
            .basic_auth("admin", Some(&app.admin)),
    )
    .await;

    assert_problem(&reply, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn a_403_is_a_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let verifier = app
        .service_token(None, &[keyward::domain::permissions::Permission::KeysVerify])
        .await;

    let reply = app.get("/v1/tenants", &verifier).await;

    assert_problem(&reply, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_type_error_in_verify_does_not_echo_the_secret_sent_alongside(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, secret) = app.key(&tenant, json!({"name": "checkout"})).await;

    let reply = app
        .post("/v1/verify", &app.admin, json!({"key": 5, "scopes": secret}))
        .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
    let text = reply.body.to_string();
    let shown = text.replace(&secret, "<the secret>");
    assert!(!text.contains(&secret[8..]), "{shown}");
    assert!(!text.contains("sk_live_"), "{shown}");
}

#[sqlx::test]
async fn a_secret_in_the_wrong_field_is_not_echoed_by_the_type_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, secret) = app.key(&tenant, json!({"name": "checkout"})).await;

    let reply = app
        .post("/v1/verify", &app.admin, json!({"key": "sk_live_x", "scopes": secret}))
        .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
    let text = reply.body.to_string();
    assert!(
        !text.contains(&secret[8..]),
        "{}",
        text.replace(&secret, "<the secret>")
    );
}

#[sqlx::test]
async fn a_secret_used_as_a_field_name_is_not_echoed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, secret) = app.key(&tenant, json!({"name": "checkout"})).await;
    let mut body = serde_json::Map::new();
    body.insert("key".into(), json!("sk_live_x"));
    body.insert(secret.clone(), json!(true));

    let reply = app.post("/v1/verify", &app.admin, Value::Object(body)).await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
    let text = reply.body.to_string();
    assert!(
        !text.contains(&secret[8..]),
        "{}",
        text.replace(&secret, "<the secret>")
    );
}

#[sqlx::test]
async fn a_secret_in_a_query_parameter_is_not_echoed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (_, secret) = app.key(&tenant, json!({"name": "checkout"})).await;

    let reply = app
        .get(&format!("/v1/tenants/{tenant}/audit?outcome={secret}"), &app.admin)
        .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert!(!reply.body.to_string().contains(&secret[8..]));
}

#[sqlx::test]
async fn healthz_answers_200_ok_without_credentials(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/healthz", None, None).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[sqlx::test]
async fn readyz_answers_200_when_the_database_answers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.call(Method::GET, "/readyz", None, None).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[sqlx::test]
async fn every_response_carries_a_generated_x_request_id(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let ok = app.call(Method::GET, "/healthz", None, None).await;
    let problem = app.call(Method::GET, "/v1/tenants", None, None).await;

    for reply in [&ok, &problem] {
        let id = reply.headers.get("x-request-id").expect("x-request-id");
        assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());
    }
    assert_ne!(ok.headers["x-request-id"], problem.headers["x-request-id"]);
}

#[sqlx::test]
async fn a_client_sent_x_request_id_is_echoed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = send(
        app.client
            .get(format!("{}/healthz", app.base))
            .header("x-request-id", "client-req-0001"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-request-id"], "client-req-0001");
}

#[sqlx::test]
async fn a_client_sent_x_request_id_lands_in_the_audit_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let created = send(
        app.client
            .post(format!("{}/v1/tenants", app.base))
            .bearer_auth(&app.admin)
            .header("x-request-id", "client-req-0042")
            .json(&json!({"slug": "acme", "name": "Acme"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.headers["x-request-id"], "client-req-0042");

    let tenant = created.body["id"].as_str().unwrap();
    let trail = app.get(&format!("/v1/tenants/{tenant}/audit"), &app.admin).await;
    assert_eq!(trail.body["items"][0]["action"], "tenant.created");
    assert_eq!(trail.body["items"][0]["request_id"], "client-req-0042");
}

#[sqlx::test]
async fn a_generated_x_request_id_lands_in_the_audit_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let created = app
        .post("/v1/tenants", &app.admin, json!({"slug": "acme", "name": "Acme"}))
        .await;
    let request_id = created.headers["x-request-id"].to_str().unwrap();

    let tenant = created.body["id"].as_str().unwrap();
    let trail = app.get(&format!("/v1/tenants/{tenant}/audit"), &app.admin).await;
    assert_eq!(trail.body["items"][0]["request_id"], request_id);
}

#[sqlx::test]
async fn responses_are_marked_no_store_and_nosniff(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app.get("/v1/tenants", &app.admin).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
}

#[sqlx::test]
async fn readyz_is_a_503_problem_when_the_database_is_gone(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.pool.close().await;

    let reply = app.call(Method::GET, "/readyz", None, None).await;

    assert_problem(&reply, StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test]
async fn a_json_content_type_with_a_charset_is_accepted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = send(
        app.client
            .post(format!("{}/v1/tenants", app.base))
            .bearer_auth(&app.admin)
            .header("content-type", "application/json; charset=utf-8")
            .body(r#"{"slug": "acme", "name": "Acme"}"#),
    )
    .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
}

// ---- no input produces a 500 -------------------------------------------------------------

/// Not a server error: either a 4xx problem, or 200 with nothing found.
fn assert_refused_or_empty(reply: &Reply) {
    assert!(!reply.status.is_server_error(), "{} {:?}", reply.status, reply.body);
    if reply.status.is_client_error() {
        assert_eq!(reply.content_type(), PROBLEM);
    } else {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["items"], json!([]));
    }
}

#[sqlx::test]
async fn a_nul_character_in_an_audit_filter_is_not_a_500(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .get(&format!("/v1/tenants/{tenant}/audit?action=key%00created"), &app.admin)
        .await;

    assert_refused_or_empty(&reply);
}

#[sqlx::test]
async fn a_nul_character_in_the_key_list_owner_id_filter_is_not_a_500(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .get(&format!("/v1/tenants/{tenant}/keys?owner_id=user%00"), &app.admin)
        .await;

    assert_refused_or_empty(&reply);
}

#[sqlx::test]
async fn an_audit_until_before_4713_bc_is_not_a_500(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .get(
            &format!("/v1/tenants/{tenant}/audit?until=-5000-01-01T00:00:00Z"),
            &app.admin,
        )
        .await;

    assert_refused_or_empty(&reply);
}

#[sqlx::test]
async fn a_nul_character_in_new_key_metadata_is_a_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "checkout", "metadata": {"note": "a\u{0000}b"}}),
        )
        .await;

    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "metadata");
}

#[sqlx::test]
async fn a_nul_character_in_patched_key_metadata_is_a_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let (key, _) = app.key(&tenant, json!({"name": "checkout"})).await;

    let reply = app
        .patch(
            &format!("/v1/tenants/{tenant}/keys/{}", key["id"].as_str().unwrap()),
            &app.admin,
            json!({"metadata": {"a\u{0000}": 1}}),
        )
        .await;

    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "metadata");
}

#[sqlx::test]
async fn a_short_password_sent_as_a_role_is_not_echoed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;

    let reply = app
        .post(
            &format!("/v1/tenants/{tenant}/members"),
            &app.admin,
            json!({"email": "ann@example.com", "role": "hunter2hunter2"}),
        )
        .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert!(!reply.body.to_string().contains("hunter2"), "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("`owner`"));
}

#[sqlx::test]
async fn a_short_value_of_the_wrong_type_is_not_echoed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let reply = app
        .post("/v1/verify", &app.admin, json!({"key": "sk_live_x", "scopes": "pw123"}))
        .await;

    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert!(!reply.body.to_string().contains("pw123"), "{}", reply.body);
}
