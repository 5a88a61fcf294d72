//! A real nginx in front of a tiny upstream, authenticating with keyward through `auth_request`,
//! configured by the example in deploy/nginx/keyward.conf.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::helpers::TestApp;
use keyward::domain::authz::Permission;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
