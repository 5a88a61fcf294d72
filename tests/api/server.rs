//! Slow and hostile clients: half-sent headers are cut off, connections and requests in flight
//! are capped (shed with 503 instead of queued), and shutdown does not wait for slow clients.

use reqwest::StatusCode;
use sqlx::PgPool;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{server_pool, TestApp};

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Opens a connection and sends the start of a request, never its end.
async fn half_sent(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    stream
}

/// A header timeout longer than `closed_by_server` waits: a connection it sees closed was
/// closed for another reason.
const NEVER_WITHIN_THE_TEST: u64 = 120_000;

/// Whether the server closes `stream` (within a guard against a hang, not a speed check).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a 408 before closing
            Err(_) => return false,
        }
    }
}

async fn healthz(app: &TestApp) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off(pool: PgPool) {
    let config = keyward::config::AppConfig {
        header_timeout_ms: 300,
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;

    let mut stream = half_sent(&address(&app)).await;

    assert!(
        closed_by_server(&mut stream).await,
        "the half-sent request was kept open"
    );
}

#[sqlx::test]
async fn many_half_sent_requests_do_not_stop_others_being_answered(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        slow.push(half_sent(&address(&app)).await);
    }

    let health = healthz(&app).await;
    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, serde_json::json!({"name": "k"})).await;

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");
    drop(slow);
}

#[sqlx::test]
async fn a_client_that_sends_nothing_is_cut_off(pool: PgPool) {
    let config = keyward::config::AppConfig {
        header_timeout_ms: 300,
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;

    let mut silent = TcpStream::connect(address(&app)).await.unwrap();

    assert!(
        closed_by_server(&mut silent).await,
        "the silent connection was kept open"
    );
}

/// Opens a connection and starts a verification whose body never arrives: it stays in flight.
async fn in_flight(app: &TestApp) -> TcpStream {
    in_flight_with(app, "").await
}

/// As `in_flight`, with more header lines (each ending in CRLF).
async fn in_flight_with(app: &TestApp, headers: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address(app)).await.unwrap();
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\n{headers}Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        app.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[sqlx::test]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room_for_a_new_one(pool: PgPool) {
    let config = keyward::config::AppConfig {
        max_connections: 3,
        header_timeout_ms: NEVER_WITHIN_THE_TEST,
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;
    let mut oldest = half_sent(&address(&app)).await;
    let _others = [half_sent(&address(&app)).await, half_sent(&address(&app)).await];

    let mut newcomer = half_sent(&address(&app)).await;

    assert!(answered(&mut newcomer).await, "the new connection was not answered");
    assert!(
        closed_by_server(&mut oldest).await,
        "the oldest idle connection was kept"
    );
}

#[sqlx::test]
async fn at_the_connection_cap_with_every_connection_answering_a_new_one_is_closed_at_once(pool: PgPool) {
    let config = keyward::config::AppConfig {
        max_connections: 2,
        header_timeout_ms: NEVER_WITHIN_THE_TEST,
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;
    let busy = [in_flight(&app).await, in_flight(&app).await];
    tokio::time::sleep(Duration::from_millis(200)).await; // their requests reach the router

    let mut third = half_sent(&address(&app)).await;
    assert!(closed_by_server(&mut third).await);

    drop(busy);
    let mut answered_again = false;
    for _ in 0..50 {
        if let Ok(reply) = reqwest::Client::new().get(format!("{}/healthz", app.base)).send().await {
            answered_again = reply.status() == StatusCode::OK;
            if answered_again {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        answered_again,
        "the server did not take connections again once the others left"
    );
}

/// Opens a connection from `source` (another loopback address) and sends half a request.
async fn half_sent_from(source: &str, address: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    stream
}

/// Whether the server answers a complete request on `stream` with 200 (it is kept open).
async fn answered(stream: &mut TcpStream) -> bool {
    stream.write_all(b"\r\n").await.unwrap();
    let mut buffer = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buffer)).await {
        Ok(Ok(n)) if n > 0 => buffer[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

#[sqlx::test]
async fn beyond_the_per_address_cap_only_that_address_is_turned_away(pool: PgPool) {
    let config = keyward::config::AppConfig {
        max_connections_per_address: 2,
        header_timeout_ms: NEVER_WITHIN_THE_TEST,
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;
    let held = [
        half_sent_from("127.0.0.1", &address(&app)).await,
        half_sent_from("127.0.0.1", &address(&app)).await,
    ];

    let mut third_from_the_same = half_sent_from("127.0.0.1", &address(&app)).await;
    let mut first_from_another = half_sent_from("127.0.0.2", &address(&app)).await;

    assert!(closed_by_server(&mut third_from_the_same).await);
    assert!(answered(&mut first_from_another).await);
    drop(held);
}

#[sqlx::test]
async fn requests_beyond_the_in_flight_limit_are_shed_with_503_and_retry_after(pool: PgPool) {
    let config = keyward::config::AppConfig {
        max_in_flight: 1,
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;
    // One request in flight: its handler waits for a body that never fully arrives.
    let in_flight = in_flight(&app).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let shed = healthz(&app).await;

    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["type"], "urn:keyward:problem:overloaded");
    drop(in_flight);
}

/// Starts a verification for `client` (as a trusted proxy on loopback forwards it) whose body
/// never arrives: it stays in flight.
async fn in_flight_for(app: &TestApp, client: &str) -> TcpStream {
    in_flight_with(app, &format!("X-Forwarded-For: {client}\r\n")).await
}

async fn healthz_for(app: &TestApp, client: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_client_at_its_in_flight_cap_is_shed_while_other_clients_are_answered(pool: PgPool) {
    let config = keyward::config::AppConfig {
        max_in_flight_per_client: 2,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;
    let held = [
        in_flight_for(&app, "203.0.113.7").await,
        in_flight_for(&app, "203.0.113.7").await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;

    let shed = healthz_for(&app, "203.0.113.7").await;
    let other = healthz_for(&app, "198.51.100.9").await;

    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["type"], "urn:keyward:problem:overloaded");
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another client behind the proxy was shed"
    );
    drop(held);
}

#[sqlx::test]
async fn a_client_whose_requests_finish_gets_its_in_flight_slots_back(pool: PgPool) {
    let config = keyward::config::AppConfig {
        max_in_flight_per_client: 1,
        ..TestApp::config()
    };
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;
    let held = in_flight(&app).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(healthz(&app).await.status(), StatusCode::SERVICE_UNAVAILABLE);

    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(healthz(&app).await.status(), StatusCode::OK);
}

#[sqlx::test]
async fn shutdown_does_not_wait_for_a_slow_client_beyond_the_grace(pool: PgPool) {
    let config = keyward::config::AppConfig {
        shutdown_grace_ms: 300,
        ..TestApp::config()
    };
    let app = keyward::app::App::build(&config, server_pool(&pool).await, keyward::clock::Clock::system()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.send(()).unwrap();

    let finished = tokio::time::timeout(Duration::from_secs(15), serving).await;
    assert!(finished.is_ok(), "serve waited for the slow client");
    assert!(closed_by_server(&mut slow).await);
}

#[sqlx::test]
async fn a_shutdown_that_cannot_write_what_it_tallied_fails_naming_what_was_lost(pool: PgPool) {
    let app = keyward::app::App::build(
        &TestApp::config(),
        server_pool(&pool).await,
        keyward::clock::Clock::system(),
    )
    .unwrap();
    let ctx = app.ctx.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let caller = keyward::domain::permissions::Caller::service(
        keyward::domain::ids::KeyId::generate(keyward::domain::ids::KeyKind::Service),
        keyward::domain::permissions::TenantScope::Platform,
        vec![keyward::domain::permissions::Permission::KeysVerify],
    );
    let meta = keyward::domain::audit::RequestMeta::default();
    keyward::verify::verify_key(&ctx, &caller, &meta, "sk_live_garbage", None, &[])
        .await
        .unwrap();
    // The counts table is out of reach, as when the database is.
    sqlx::query("ALTER TABLE verification_counts RENAME TO verification_counts_away")
        .execute(&pool)
        .await
        .unwrap();

    stop.send(()).unwrap();
    let ended = serving.await.unwrap();
    sqlx::query("ALTER TABLE verification_counts_away RENAME TO verification_counts")
        .execute(&pool)
        .await
        .unwrap();

    let error = ended.expect_err("serve ended as if nothing was lost");
    assert!(error.to_string().contains("1 verification counters"), "{error}");
}

fn platform_verifier() -> keyward::domain::permissions::Caller {
    keyward::domain::permissions::Caller::service(
        keyward::domain::ids::KeyId::generate(keyward::domain::ids::KeyKind::Service),
        keyward::domain::permissions::TenantScope::Platform,
        vec![keyward::domain::permissions::Permission::KeysVerify],
    )
}

async fn malformed_counted(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(sum(count), 0)::bigint FROM verification_counts WHERE code = 'MALFORMED'")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn spool_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.flatten().count())
}

#[sqlx::test]
async fn what_a_shutdown_cannot_write_is_spooled_and_written_by_the_next_start(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("keyward-spool-{}", uuid::Uuid::now_v7()));
    let config = keyward::config::AppConfig {
        spool_dir: dir.to_string_lossy().into_owned(),
        ..TestApp::config()
    };
    let first = keyward::app::App::build(&config, server_pool(&pool).await, keyward::clock::Clock::system()).unwrap();
    let ctx = first.ctx.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(first.serve(listener, async {
        let _ = stopped.await;
    }));
    for _ in 0..3 {
        let meta = keyward::domain::audit::RequestMeta::default();
        keyward::verify::verify_key(&ctx, &platform_verifier(), &meta, "sk_live_garbage", None, &[])
            .await
            .unwrap();
    }
    sqlx::query("ALTER TABLE verification_counts RENAME TO verification_counts_away")
        .execute(&pool)
        .await
        .unwrap();
    stop.send(()).unwrap();
    let ended = serving.await.unwrap();
    sqlx::query("ALTER TABLE verification_counts_away RENAME TO verification_counts")
        .execute(&pool)
        .await
        .unwrap();
    assert!(ended.is_ok(), "nothing was lost: {ended:?}");
    assert_eq!(spool_files(&dir), 1);
    assert_eq!(malformed_counted(&pool).await, 0);

    let second = keyward::app::App::build(&config, server_pool(&pool).await, keyward::clock::Clock::system()).unwrap();
    let ctx = second.ctx.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(second.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut counted = 0;
    for _ in 0..50 {
        ctx.verify.flush().await;
        counted = malformed_counted(&pool).await;
        if counted == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();

    assert_eq!(counted, 3, "the spooled counts were written");
    assert_eq!(spool_files(&dir), 0, "the written spool file was deleted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends a request whose body never arrives in full, and reads the answer.
async fn trickled_body(app: &TestApp, path: &str, extra_headers: &str) -> String {
    let mut stream = TcpStream::connect(address(app)).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: 100\r\n\r\n{{\"na",
        app.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // Bounded by the request timeout (30 s) at worst; the body timeout answers first.
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buffer)).await {
        answer.extend_from_slice(&buffer[..n]);
        if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[sqlx::test]
async fn a_body_that_does_not_arrive_within_ten_seconds_gets_a_408_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let answer = trickled_body(&app, "/v1/tenants", "").await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("did not arrive within 10 seconds"), "{answer}");
}

#[sqlx::test]
async fn a_gateway_body_that_does_not_arrive_within_ten_seconds_gets_a_408_problem(pool: PgPool) {
    let app = TestApp::spawn_open_gateway(pool).await;

    let answer = trickled_body(&app, "/v1/authorize", "").await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 10 seconds"), "{answer}");
}

/// Bytes received on `stream` and not read yet.
fn buffered(stream: &TcpStream) -> libc::c_int {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; the socket is open.
    unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
    queued
}

#[sqlx::test]
async fn a_client_that_stops_reading_a_response_is_cut_off_once_nothing_moves(pool: PgPool) {
    const EVENTS: i64 = 1_500;
    // About 15 MB of export in three pages: far more than the socket buffers hold.
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, actor_kind, actor_id, action, outcome, details, hash)
         SELECT now(), 'system', 'test', 'test.padding', 'success',
                jsonb_build_object('pad', repeat('x', 10000)), sha256(i::text::bytea)
         FROM generate_series(1, $1) i",
    )
    .bind(EVENTS)
    .execute(&pool)
    .await
    .unwrap();
    let mut config = TestApp::config();
    config.idle_timeout_ms = 1_000;
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address(&app).parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /v1/audit HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\nAuthorization: Bearer {}\r\n\r\n",
        app.admin
    );
    stream.write_all(request.as_bytes()).await.unwrap();

    // The client reads nothing: once its receive buffer is full (the answer has started and
    // the window is shut), it waits well over the idle timeout, then reads everything there is.
    for _ in 0..1200 {
        if buffered(&stream) >= 4096 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut received = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut received)).await;

    assert!(read_all.is_ok(), "the connection was never closed");
    let events = received
        .split(|b| *b == b'\n')
        .filter(|line| line.starts_with(b"{\"id\""))
        .count();
    assert!(
        events < EVENTS as usize,
        "all {events} events were sent: the stalled response was never cut off"
    );
}

#[sqlx::test]
async fn every_response_carries_the_browser_facing_security_headers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    for path in ["/healthz", "/no/such/route"] {
        let reply = reqwest::get(format!("{}{path}", app.base)).await.unwrap();
        let headers = reply.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
}

async fn request_id_answered(app: &TestApp, sent: Option<&str>) -> String {
    let mut request = reqwest::Client::new().get(format!("{}/healthz", app.base));
    if let Some(sent) = sent {
        request = request.header("x-request-id", sent);
    }
    let reply = request.send().await.unwrap();
    reply.headers()["x-request-id"].to_str().unwrap().to_owned()
}

#[sqlx::test]
async fn a_sane_request_id_is_kept_and_any_other_replaced_by_a_new_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    assert_eq!(request_id_answered(&app, Some("req-42:a/b")).await, "req-42:a/b");
    for unfit in ["has space", "quote\"d", &"x".repeat(129)] {
        let answered = request_id_answered(&app, Some(unfit)).await;
        assert!(
            uuid::Uuid::parse_str(&answered).is_ok(),
            "{unfit:?} answered {answered:?}"
        );
    }
    let made = request_id_answered(&app, None).await;
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made:?}");
}

#[sqlx::test]
async fn the_version_and_commit_are_served_and_printed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let served: serde_json::Value = reqwest::get(format!("{}/version", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let printed = app.command().arg("--version").output().unwrap();

    assert_eq!(served["version"], env!("CARGO_PKG_VERSION"));
    let commit = served["commit"].as_str().unwrap();
    assert!(!commit.is_empty());
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        format!("keyward {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}
