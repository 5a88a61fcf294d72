//! A real nginx in front of a tiny upstream, authenticating with keyward through `auth_request`,
//! configured by the example in deploy/nginx/keyward.conf.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::helpers::{free_port, TestApp};
use keyward::domain::permissions::Permission;
use keyward::signing::{self, keyward_hmac, Request};
use sha2::Digest;
use std::sync::{Arc, Mutex};

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The upstream API: answers 200 and echoes the identity nginx passes on.
async fn upstream() -> u16 {
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let tenant = headers
            .get("x-keyward-tenant-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        format!("upstream ok for tenant {tenant}")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// An upstream that answers 200 and keeps the headers of every request that reached it.
async fn recording_upstream() -> (u16, Arc<Mutex<Vec<axum::http::HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(headers);
            "upstream ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

/// Sends `request` to nginx byte for byte (reqwest chooses the framing itself) and returns the
/// response status. The request must say `Connection: close`.
async fn send_raw(port: u16, request: Vec<u8>) -> u16 {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(&request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8_lossy(&response).into_owned();
        text.split(' ').nth(1).unwrap().parse().unwrap()
    })
    .await
    .unwrap()
}

/// A POST of `body` to `/orders`, with the signature's headers and the framing headers given.
fn raw_post(port: u16, signed: &Request, framing: &str, body: &[u8]) -> Vec<u8> {
    let mut head = format!("POST /orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in signed.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("{framing}\r\nConnection: close\r\n\r\n"));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:x}\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    bytes
}

/// A key with a signing secret: (key id, secret).
async fn signing_key(app: &TestApp, tenant: &str) -> (String, String) {
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "signer", "signing": true}),
        )
        .await;
    (
        created.body["key"]["id"].as_str().unwrap().to_owned(),
        created.body["signing_secret"].as_str().unwrap().to_owned(),
    )
}

struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_nginx(binary: &Path, keyward_port: u16, app_port: u16, gateway_token: &str) -> Nginx {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("keyward-nginx-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/keyward.conf")).unwrap();
    let site = example
        .replace("server 127.0.0.1:8080;", &format!("server 127.0.0.1:{keyward_port};"))
        .replace("server 127.0.0.1:3000;", &format!("server 127.0.0.1:{app_port};"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("kw_svc_REPLACE_WITH_GATEWAY_TOKEN", gateway_token);
    assert_ne!(site, example);
    std::fs::write(dir.join("keyward.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/keyward.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let child = Command::new(binary)
        .args([
            "-p",
            &dir.to_string_lossy(),
            "-c",
            &dir.join("nginx.conf").to_string_lossy(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let nginx = Nginx { child, dir, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return nginx;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
    panic!("nginx did not start: {log}");
}

#[sqlx::test]
async fn nginx_auth_request_lets_valid_keys_through_and_stops_the_rest(pool: PgPool) {
    let Some(binary) = nginx_binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "nginx must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    let app = TestApp::spawn(pool).await;
    let keyward_port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let gateway = app.service_token(None, &[Permission::KeysVerify]).await;
    let tenant = app.tenant("acme").await;
    let (_, reader) = app
        .key(&tenant, json!({"name": "reader", "scopes": ["orders:read"]}))
        .await;
    let (_, admin) = app
        .key(&tenant, json!({"name": "admin", "scopes": ["admin:write"]}))
        .await;
    let (revoked, revoked_token) = app.key(&tenant, json!({"name": "gone"})).await;
    app.post(
        &format!("/v1/tenants/{tenant}/keys/{}/revoke", revoked["id"].as_str().unwrap()),
        &app.admin,
        json!({}),
    )
    .await;
    let nginx = start_nginx(&binary, keyward_port, upstream().await, &gateway).await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("http://127.0.0.1:{}{path}", nginx.port))
            .bearer_auth(token)
            .send()
    };

    let valid = get("/orders", &reader).await.unwrap();
    assert_eq!(valid.status(), StatusCode::OK);
    assert_eq!(valid.text().await.unwrap(), format!("upstream ok for tenant {tenant}"));

    assert_eq!(
        get("/orders", &revoked_token).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/orders", "sk_live_garbage").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/admin/users", &reader).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(get("/admin/users", &admin).await.unwrap().status(), StatusCode::OK);
    let anonymous = http
        .get(format!("http://127.0.0.1:{}/orders", nginx.port))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn nginx_passes_a_request_signed_by_curl_aws_sigv4(pool: PgPool) {
    let Some(binary) = nginx_binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "nginx must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    let app = TestApp::spawn(pool).await;
    let keyward_port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let gateway = app.service_token(None, &[Permission::KeysVerify]).await;
    let tenant = app.tenant("acme").await;
    let created = app
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            &app.admin,
            json!({"name": "curl", "signing": true}),
        )
        .await;
    let user = format!(
        "{}:{}",
        created.body["key"]["id"].as_str().unwrap(),
        created.body["signing_secret"].as_str().unwrap()
    );
    let nginx = start_nginx(&binary, keyward_port, upstream().await, &gateway).await;
    let url = format!("http://127.0.0.1:{}/orders?page=2", nginx.port);

    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "--silent",
                "--aws-sigv4",
                "aws:amz:us-east-1:keyward",
                "--user",
                &user,
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("upstream ok for tenant {tenant}")
    );
}

/// A signature over an empty body, with a body sent after all: (app, nginx, upstream's record, request).
async fn signed_over_an_empty_body(
    pool: PgPool,
    binary: &Path,
) -> (TestApp, Nginx, Arc<Mutex<Vec<axum::http::HeaderMap>>>, Request) {
    let app = TestApp::spawn(pool).await;
    let keyward_port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let gateway = app.service_token(None, &[Permission::KeysVerify]).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant).await;
    let (app_port, seen) = recording_upstream().await;
    let nginx = start_nginx(binary, keyward_port, app_port, &gateway).await;
    let mut signed = Request::new("POST", "/orders", "");
    keyward_hmac::sign(&mut signed, &key_id, secret.as_bytes(), app.clock().now()).unwrap();
    (app, nginx, seen, signed)
}

#[sqlx::test]
async fn chunked_body_behind_nginx_is_unverifiable(pool: PgPool) {
    let Some(binary) = nginx_binary() else {
        assert!(std::env::var("CI").is_err(), "nginx must be installed in CI");
        return;
    };
    let (_app, nginx, seen, signed) = signed_over_an_empty_body(pool, &binary).await;

    let request = raw_post(
        nginx.port,
        &signed,
        "Transfer-Encoding: chunked",
        &chunked(br#"{"amount":1000000}"#),
    );
    let status = send_raw(nginx.port, request).await;

    assert_eq!(status, 401);
    assert!(seen.lock().unwrap().is_empty(), "the upstream was reached");
}

#[sqlx::test]
async fn content_length_body_behind_nginx_is_unverifiable(pool: PgPool) {
    let Some(binary) = nginx_binary() else {
        assert!(std::env::var("CI").is_err(), "nginx must be installed in CI");
        return;
    };
    let (_app, nginx, seen, signed) = signed_over_an_empty_body(pool, &binary).await;
    let body = br#"{"amount":1000000}"#;

    let request = raw_post(nginx.port, &signed, &format!("Content-Length: {}", body.len()), body);
    let status = send_raw(nginx.port, request).await;

    assert_eq!(status, 401);
    assert!(seen.lock().unwrap().is_empty(), "the upstream was reached");
}

#[sqlx::test]
async fn chunked_body_behind_nginx_passes_on_the_hash_its_signature_declares(pool: PgPool) {
    let Some(binary) = nginx_binary() else {
        assert!(std::env::var("CI").is_err(), "nginx must be installed in CI");
        return;
    };
    let app = TestApp::spawn(pool).await;
    let keyward_port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let gateway = app.service_token(None, &[Permission::KeysVerify]).await;
    let tenant = app.tenant("acme").await;
    let (key_id, secret) = signing_key(&app, &tenant).await;
    let (app_port, seen) = recording_upstream().await;
    let nginx = start_nginx(&binary, keyward_port, app_port, &gateway).await;
    let body = br#"{"amount":100}"#.to_vec();
    let hash = hex::encode(sha2::Sha256::digest(&body));
    let mut signed = Request::new("POST", "/orders", "")
        .with_header("Host", format!("127.0.0.1:{}", nginx.port))
        .with_header("x-amz-content-sha256", hash.as_str())
        .with_body(signing::Body::Bytes(body.clone()));
    let creds = signing::sigv4::Credentials {
        key_id: &key_id,
        secret: secret.as_bytes(),
        region: "us-east-1",
        service: "keyward",
        session_token: None,
    };
    signing::sigv4::sign(&mut signed, &creds, app.clock().now()).unwrap();

    let request = raw_post(nginx.port, &signed, "Transfer-Encoding: chunked", &chunked(&body));
    let status = send_raw(nginx.port, request).await;

    assert_eq!(status, 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["x-keyward-body-sha256"], hash.as_str());
    assert_eq!(seen[0]["x-keyward-tenant-id"], tenant.as_str());
}
