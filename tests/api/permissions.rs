//! The authorization matrix: every management endpoint against every kind of caller, in one
//! table. Each cell is the status the caller must get.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;
use keyward::domain::permissions::Permission;

/// Columns of the table, in order.
const CALLERS: [&str; 14] = [
    "nobody",
    "platform_admin",
    "owner",
    "admin",
    "developer",
    "auditor",
    "other_tenant_owner",
    "svc_all",
    "svc_verify",
    "svc_read",
    "svc_write",
    "svc_audit",
    "svc_tenants_admin",
    "svc_tenant_bound",
];

struct Row {
    method: &'static str,
    /// `{t}` tenant A, `{key}` a key of A, `{fresh_key}` a new key of A made for the cell,
    /// `{member}` a developer of A kept as a target.
    path: &'static str,
    /// `{n}` becomes a number unique to the cell.
    body: Option<&'static str>,
    expect: [u16; 14],
}

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                                                 nobody padm owner admin dev  aud  other svc* verify read write audit tadm bound
    Row { method: "GET",   path: "/v1/tenants", body: None,                                 expect: [401, 200, 403, 403, 403, 403, 403, 200, 403, 403, 403, 403, 200, 403] },
    Row { method: "POST",  path: "/v1/tenants", body: Some(r#"{"slug":"t-{n}","name":"T"}"#), expect: [401, 201, 403, 403, 403, 403, 403, 201, 403, 403, 403, 403, 201, 403] },
    Row { method: "GET",   path: "/v1/tenants/{t}", body: None,                             expect: [401, 200, 200, 200, 200, 200, 404, 200, 403, 200, 403, 403, 200, 200] },
    Row { method: "PATCH", path: "/v1/tenants/{t}", body: Some(r#"{"name":"A"}"#),          expect: [401, 200, 403, 403, 403, 403, 404, 200, 403, 403, 403, 403, 200, 403] },
    Row { method: "GET",   path: "/v1/tenants/{t}/keys", body: None,                        expect: [401, 200, 200, 200, 200, 200, 404, 200, 403, 200, 403, 403, 403, 200] },
    Row { method: "POST",  path: "/v1/tenants/{t}/keys", body: Some(r#"{"name":"k{n}"}"#),  expect: [401, 201, 201, 201, 201, 403, 404, 201, 403, 403, 201, 403, 403, 201] },
    Row { method: "GET",   path: "/v1/tenants/{t}/keys/{key}", body: None,                  expect: [401, 200, 200, 200, 200, 200, 404, 200, 403, 200, 403, 403, 403, 200] },
    Row { method: "PATCH", path: "/v1/tenants/{t}/keys/{key}", body: Some(r#"{"name":"k"}"#), expect: [401, 200, 200, 200, 200, 403, 404, 200, 403, 403, 200, 403, 403, 200] },
    Row { method: "POST",  path: "/v1/tenants/{t}/keys/{fresh_key}/rotate", body: Some("{}"), expect: [401, 201, 201, 201, 201, 403, 404, 201, 403, 403, 201, 403, 403, 201] },
    Row { method: "POST",  path: "/v1/tenants/{t}/keys/{fresh_key}/revoke", body: Some("{}"), expect: [401, 200, 200, 200, 200, 403, 404, 200, 403, 403, 200, 403, 403, 200] },
    Row { method: "GET",   path: "/v1/tenants/{t}/service-tokens", body: None,              expect: [401, 200, 200, 200, 403, 403, 404, 200, 403, 403, 403, 403, 200, 200] },
    Row { method: "POST",  path: "/v1/tenants/{t}/service-tokens", body: Some(r#"{"name":"s","permissions":["keys:read"]}"#),
                                                                                            expect: [401, 201, 201, 201, 403, 403, 404, 201, 403, 403, 403, 403, 403, 201] },
    Row { method: "GET",   path: "/v1/service-tokens", body: None,                          expect: [401, 200, 403, 403, 403, 403, 403, 200, 403, 403, 403, 403, 200, 403] },
    Row { method: "POST",  path: "/v1/service-tokens", body: Some(r#"{"name":"s","permissions":["keys:read"]}"#),
                                                                                            expect: [401, 201, 403, 403, 403, 403, 403, 201, 403, 403, 403, 403, 403, 403] },
    Row { method: "POST",  path: "/v1/verify", body: Some(r#"{"key":"sk_live_x"}"#),        expect: [401, 200, 403, 403, 403, 403, 403, 200, 200, 403, 403, 403, 403, 200] },
    Row { method: "GET",   path: "/v1/audit", body: None,                                   expect: [401, 200, 403, 403, 403, 403, 403, 200, 403, 403, 403, 200, 403, 403] },
    Row { method: "GET",   path: "/v1/tenants/{t}/audit", body: None,                       expect: [401, 200, 200, 200, 403, 200, 404, 200, 403, 403, 403, 200, 403, 200] },
    Row { method: "GET",   path: "/v1/tenants/{t}/members", body: None,                     expect: [401, 200, 200, 200, 403, 403, 404, 200, 403, 403, 403, 403, 200, 200] },
    // A token holding only `tenants:admin` cannot confer a role: every role carries more.
    Row { method: "POST",  path: "/v1/tenants/{t}/members", body: Some(r#"{"email":"new{n}@example.com","role":"developer"}"#),
                                                                                            expect: [401, 201, 201, 403, 403, 403, 404, 201, 403, 403, 403, 403, 403, 201] },
    Row { method: "PATCH", path: "/v1/tenants/{t}/members/{member}", body: Some(r#"{"role":"developer"}"#),
                                                                                            expect: [401, 200, 200, 403, 403, 403, 404, 200, 403, 403, 403, 403, 403, 200] },
    Row { method: "GET",   path: "/v1/tenants/{t}/invitations", body: None,                 expect: [401, 200, 200, 403, 403, 403, 404, 200, 403, 403, 403, 403, 200, 200] },
    Row { method: "PATCH", path: "/v1/tenants/{t}", body: Some(r#"{"settings":{"sigv2_enabled":true}}"#),
                                                                                            expect: [401, 200, 200, 200, 403, 403, 404, 200, 403, 403, 403, 403, 200, 200] },
    Row { method: "GET",   path: "/v1/me", body: None,                                      expect: [401, 200, 200, 200, 200, 200, 200, 404, 404, 404, 404, 404, 404, 404] },
];

#[sqlx::test]
async fn every_endpoint_answers_every_caller_as_the_matrix_says(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app.tenant("tenant-a").await;
    let b = app.tenant("tenant-b").await;
    let (key, _) = app.key(&a, json!({"name": "target"})).await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    let (member, _) = app.member(&a, "target@example.com", "developer").await;

    app.user("root@example.com", true).await;
    let mut credentials: Vec<Option<String>> = vec![None, Some(app.access_token("root@example.com").await)];
    for role in ["owner", "admin", "developer", "auditor"] {
        credentials.push(Some(app.member(&a, &format!("{role}@example.com"), role).await.1));
    }
    credentials.push(Some(app.member(&b, "stranger@example.com", "owner").await.1));
    credentials.push(Some(app.service_token(None, &Permission::ALL).await));
    for permission in [
        Permission::KeysVerify,
        Permission::KeysRead,
        Permission::KeysWrite,
        Permission::AuditRead,
        Permission::TenantsAdmin,
    ] {
        credentials.push(Some(app.service_token(None, &[permission]).await));
    }
    credentials.push(Some(app.service_token(Some(&a), &Permission::ALL).await));
    assert_eq!(credentials.len(), CALLERS.len());

    let mut n = 0;
    let mut mismatches = Vec::new();
    for row in MATRIX {
        for (column, caller) in CALLERS.iter().enumerate() {
            n += 1;
            let mut path = row
                .path
                .replace("{t}", &a)
                .replace("{key}", &key_id)
                .replace("{member}", &member);
            if path.contains("{fresh_key}") {
                let (fresh, _) = app.key(&a, json!({"name": "fresh"})).await;
                path = path.replace("{fresh_key}", fresh["id"].as_str().unwrap());
            }
            let body: Option<Value> = row
                .body
                .map(|b| serde_json::from_str(&b.replace("{n}", &n.to_string())).unwrap());
            let method = Method::from_bytes(row.method.as_bytes()).unwrap();
            let reply = app.call(method, &path, credentials[column].as_deref(), body).await;
            let expected = StatusCode::from_u16(row.expect[column]).unwrap();
            if reply.status != expected {
                mismatches.push(format!(
                    "{} {} as {caller}: expected {expected}, got {} {}",
                    row.method, row.path, reply.status, reply.body
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
