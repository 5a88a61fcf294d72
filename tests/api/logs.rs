//! Secrets never reach the logs: a real `keyward serve` process at the most verbose log level
//! is driven through logins, refreshes, key issue, verify and failures, and its whole log output
//! is searched for every secret involved.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use sqlx::PgPool;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{ServeProcess, TestApp};

fn keyward(app: &TestApp) -> Command {
    let mut command = app.command();
    command.env("KEYWARD_LOG", "trace");
    command
}

async fn run_cli(mut command: Command, stdin: Option<String>) -> (String, String) {
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    })
    .await
    .unwrap()
}

async fn serve(app: &TestApp) -> (ServeProcess, std::path::PathBuf) {
    serve_logging(keyward(app)).await
}

/// Starts `command` as `keyward serve` with its log (stderr) in a file of its own.
async fn serve_logging(command: Command) -> (ServeProcess, std::path::PathBuf) {
    let log = std::env::temp_dir().join(format!("keyward-log-test-{}.log", rand::random::<u64>()));
    let server = ServeProcess::start(command, std::fs::File::create(&log).unwrap().into()).await;
    (server, log)
}

#[sqlx::test]
async fn no_password_token_or_hash_appears_in_the_logs(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let password = "log test password that is long";
    let wrong_password = "a wrong password that is long";
    let mut secrets: Vec<String> = vec![password.into(), wrong_password.into()];

    let mut create_user = keyward(&app);
    create_user.args([
        "admin",
        "create-user",
        "--email",
        "root@example.com",
        "--platform-admin",
    ]);
    let (_, cli_log_1) = run_cli(create_user, Some(format!("{password}\n"))).await;
    let mut create_token = keyward(&app);
    create_token.args([
        "admin",
        "create-service-token",
        "--platform",
        "--permissions",
        "tenants:admin,keys:write,keys:verify",
    ]);
    let (service_token, cli_log_2) = run_cli(create_token, None).await;
    let service_token = service_token.trim().to_owned();
    secrets.push(service_token.clone());

    let (server, log_path) = serve(&app).await;
    let http = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut request = http.post(format!("{}{path}", server.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let (status, _) = post(
        "/v1/auth/login",
        None,
        json!({"email": "root@example.com", "password": wrong_password}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, session) = post(
        "/v1/auth/login",
        None,
        json!({"email": "root@example.com", "password": password}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let access = session["access_token"].as_str().unwrap().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();
    let (status, renewed) = post("/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, StatusCode::OK);
    secrets.extend([
        access.clone(),
        refresh,
        renewed["refresh_token"].as_str().unwrap().to_owned(),
    ]);

    let (status, tenant) = post("/v1/tenants", Some(&access), json!({"slug": "acme", "name": "Acme"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let keys_path = format!("/v1/tenants/{}/keys", tenant["id"].as_str().unwrap());
    let (status, created) = post(&keys_path, Some(&service_token), json!({"name": "k"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let key = created["token"].as_str().unwrap().to_owned();
    secrets.push(key.clone());
    let (status, verdict) = post("/v1/verify", Some(&service_token), json!({"key": key})).await;
    assert_eq!((status, verdict["code"].as_str()), (StatusCode::OK, Some("VALID")));
    let mut typo = key.clone();
    typo.replace_range(10..11, if &key[10..11] == "a" { "b" } else { "a" });
    post("/v1/verify", Some(&service_token), json!({"key": typo})).await;
    post("/v1/verify", Some(&key), json!({"key": key})).await;
    post("/v1/tenants", Some("kw_svc_definitely_not_valid"), json!({})).await;

    let (status, signer) = post(
        &keys_path,
        Some(&service_token),
        json!({"name": "signer", "signing": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let signing_secret = signer["signing_secret"].as_str().unwrap().to_owned();
    let signer_id = signer["key"]["id"].as_str().unwrap().to_owned();
    let mut signed = keyward::signing::Request::new("GET", "/orders", "page=2").with_header("Host", "api.example.com");
    keyward::signing::keyward_hmac::sign(&mut signed, &signer_id, signing_secret.as_bytes(), chrono::Utc::now())
        .unwrap();
    let signature = signed.header("X-Keyward-Signature").unwrap().to_owned();
    let string_to_sign =
        keyward::signing::keyward_hmac::string_to_sign(&signed, signed.header("X-Keyward-Timestamp").unwrap(), None);
    let request_body = json!({"method": "GET", "path": "/orders", "query": "page=2", "headers": signed.headers});
    let (_, first) = post("/v1/verify/request", Some(&service_token), request_body.clone()).await;
    assert_eq!(first["code"], "VALID");
    let (_, again) = post("/v1/verify/request", Some(&service_token), request_body).await;
    assert_eq!(again["code"], "REPLAYED");
    let mut wrong = signed.clone();
    wrong.path = "/other".into();
    post(
        "/v1/verify/request",
        Some(&service_token),
        json!({"method": "GET", "path": "/other", "query": "page=2", "headers": wrong.headers}),
    )
    .await;
    secrets.extend([signing_secret, signature, string_to_sign]);

    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    secrets.push(hash.clone());
    secrets.push(hash.rsplit('$').next().unwrap().to_owned());
    for token in secrets.clone() {
        secrets.push(hex::encode(sha2::Sha256::digest(token.as_bytes())));
        if let Some((_, body)) = token.split_once("sk_live_") {
            secrets.push(body.to_owned());
        }
    }

    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let all_logs = format!("{cli_log_1}\n{cli_log_2}\n{log}");
    assert!(log.contains("keyward serving"), "the server log was captured");
    assert!(
        log.lines().count() > 20,
        "trace logging was on: {} lines",
        log.lines().count()
    );
    for secret in &secrets {
        assert!(
            !all_logs.contains(secret.as_str()),
            "a secret ({}…) appears in the logs",
            &secret[..6.min(secret.len())]
        );
    }
}

/// The JSON lines of a log, parsed.
fn json_lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line:?}")))
        .collect()
}

#[sqlx::test]
async fn each_request_is_logged_once_as_json_with_its_route_status_request_id_and_caller(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    // stderr is a file, not a terminal: JSON lines, without KEYWARD_LOG_FORMAT and at the default level.
    let (mut server, log) = serve_logging(app.command()).await;

    let reply = reqwest::Client::new()
        .get(format!("{}/v1/tenants/{tenant}/keys?limit=5", server.base))
        .bearer_auth(&app.admin)
        .header("x-request-id", "req-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.kill();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\u{1b}'), "colour codes in a log file");
    let requests: Vec<Value> = json_lines(&log)
        .into_iter()
        .filter(|line| line["target"] == "keyward::request" && line["fields"]["request_id"] == "req-log-1")
        .collect();
    assert_eq!(requests.len(), 1, "{text}");
    let fields = &requests[0]["fields"];
    assert_eq!(requests[0]["level"], "INFO");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/v1/tenants/{tenant_id}/keys");
    assert_eq!(fields["status"], 200);
    assert!(fields["latency_ms"].as_f64().is_some(), "{fields}");
    assert!(
        fields["caller"].as_str().unwrap().starts_with("service:svc_"),
        "{fields}"
    );
    assert!(!text.contains(&app.admin), "the caller's token reached the log");
    assert!(!text.contains("limit=5"), "a query string reached the log");
    let _ = std::fs::remove_file(&log);
}

#[sqlx::test]
async fn the_log_is_text_when_asked_for(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut command = app.command();
    command.env("KEYWARD_LOG_FORMAT", "text");
    let (mut server, log) = serve_logging(command).await;
    reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.kill();

    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|line| line.contains("keyward::request"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("INFO") && line.contains(r#"route="/healthz""#), "{line}");
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file");
    let _ = std::fs::remove_file(&log);
}

#[sqlx::test]
async fn a_keyward_variable_that_names_no_setting_is_warned_about_by_name_only(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut command = app.command();
    command.env("KEYWARD_CACHE_KEYZ", "typo-value-4711");
    let (mut server, log) = serve_logging(command).await;
    server.kill();

    let warned: Vec<Value> = json_lines(&log)
        .into_iter()
        .filter(|line| line["level"] == "WARN" && line["fields"]["variable"] == "KEYWARD_CACHE_KEYZ")
        .collect();
    assert_eq!(warned.len(), 1, "{}", std::fs::read_to_string(&log).unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("typo-value-4711"),
        "the variable's value reached the log"
    );
    assert!(
        !text.contains("KEYWARD_MASTER_KEYS names no setting"),
        "a real setting was warned about"
    );
    let _ = std::fs::remove_file(&log);
}

/// Starts `command` as `keyward serve`, lets it run a moment, stops it; its log file.
async fn serve_briefly(command: Command) -> std::path::PathBuf {
    let (mut server, log) = serve_logging(command).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.kill();
    log
}

/// The messages of a JSON log, in order.
fn messages(log: &std::path::Path) -> Vec<String> {
    json_lines(log)
        .iter()
        .filter_map(|line| line["fields"]["message"].as_str().map(str::to_owned))
        .collect()
}

#[sqlx::test]
async fn a_server_with_no_credential_yet_says_how_to_make_the_first_once_it_serves(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // The harness's own tokens: a fresh deployment has none.
    sqlx::query("DELETE FROM api_keys").execute(&app.pool).await.unwrap();

    let log = serve_briefly(app.command()).await;
    let said = messages(&log);
    let serving = said
        .iter()
        .position(|m| m == "keyward serving")
        .unwrap_or_else(|| panic!("{said:?}"));
    let hint = said
        .iter()
        .position(|m| m.contains("admin create-service-token --platform"))
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(hint > serving, "the hint came before the server was up: {said:?}");
    let _ = std::fs::remove_file(&log);
}

#[sqlx::test]
async fn a_server_that_has_credentials_gives_no_first_credential_hint(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let log = serve_briefly(app.command()).await;
    let said = messages(&log);
    assert!(said.iter().any(|m| m == "keyward serving"), "{said:?}");
    assert!(!said.iter().any(|m| m.contains("create-service-token")), "{said:?}");
    let _ = std::fs::remove_file(&log);
}
