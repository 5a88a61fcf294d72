//! Drills: the database stopped, restarted, its connections terminated, its backends hung.
//! Keys and callers confirmed lately keep answering from memory on every replica; everything
//! else gets 503 problem+json within a bounded time; nothing answers 500 or hangs; and once the
//! database is back, every replica recovers by itself and refuses what is revoked.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::helpers::{own_pool, pg_program, TestApp};

/// A PostgreSQL cluster of the test's own, on 127.0.0.1, that the test may stop and start.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(program: &str, args: &[&str]) {
    let program = pg_program(program);
    let root = unsafe { libc_geteuid() } == 0;
    let status = if root {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(args)
            .current_dir("/")
            .status()
    } else {
        Command::new(&program).args(args).status()
    }
    .unwrap();
    assert!(status.success(), "{} {args:?}", program.display());
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

impl Cluster {
    fn start() -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("keyward-drill-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if unsafe { libc_geteuid() } == 0 {
            assert!(Command::new("chown")
                .arg("postgres")
                .arg(&dir)
                .status()
                .unwrap()
                .success());
        }
        let data = dir.join("data");
        as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "keyward",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let cluster = Cluster { dir, port };
        cluster.up();
        cluster
    }

    fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn down(&self) {
        let data = self.dir.join("data");
        as_postgres(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self) -> String {
        format!("postgres://keyward@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_program("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .current_dir("/")
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn serve_on(cluster: &Cluster, name: &str) -> TestApp {
    let database = keyward::config::DatabaseConfig {
        database_url: secrecy::SecretString::from(cluster.url()),
        migration_database_url: None,
        db_max_connections: 5,
        db_statement_timeout_ms: 2000,
    };
    let options: sqlx::postgres::PgConnectOptions = cluster.url().parse().unwrap();
    let pool = keyward::db::connect_with(options.application_name(name), &database)
        .await
        .unwrap();
    keyward::db::migrate(&pool).await.unwrap();
    TestApp::spawn_configured(pool, TestApp::config(), |ctx| ctx).await
}

async fn status_of(app: &TestApp, token: &str) -> (StatusCode, serde_json::Value) {
    let reply = app.post("/v1/verify", &app.admin, json!({"key": token})).await;
    (reply.status, reply.body)
}

async fn ready(app: &TestApp) -> StatusCode {
    app.call(reqwest::Method::GET, "/readyz", None, None).await.status
}

#[tokio::test]
async fn through_a_database_outage_keys_confirmed_lately_answer_on_every_replica_and_the_rest_503() {
    let cluster = Cluster::start();
    let first = serve_on(&cluster, "drill-one").await;
    let second = serve_on(&cluster, "drill-two").await;
    let tenant = first.tenant("acme").await;
    let (key, seen) = first.key(&tenant, json!({"name": "seen"})).await;
    let (_, unseen) = first.key(&tenant, json!({"name": "unseen"})).await;
    assert_eq!(first.verify(&seen, &[]).await["code"], "VALID");
    assert_eq!(second.verify(&seen, &[]).await["code"], "VALID");

    cluster.down();
    tokio::time::sleep(Duration::from_millis(2500)).await; // the listeners notice

    for (n, app) in [&first, &second].into_iter().enumerate() {
        let (status, body) = status_of(app, &seen).await;
        assert_eq!(body["code"], "VALID", "replica {n}: {status} {body}");
        let (status, body) = status_of(app, &unseen).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "replica {n}: {body}");
        assert_eq!(body["type"], "urn:keyward:problem:unavailable");
        assert_eq!(status_of(app, "sk_live_garbage").await.1["code"], "MALFORMED");
        assert_eq!(ready(app).await, StatusCode::SERVICE_UNAVAILABLE);
        // The listener knows it lost its connection (it would otherwise miss what changes
        // while it is away, and trust its cache after).
        assert!(!app.ctx.verify.listening(), "replica {n} still counts itself listening");
        let health = app.call(reqwest::Method::GET, "/healthz", None, None).await;
        assert_eq!(health.status, StatusCode::OK);
    }

    cluster.up();
    let mut recovered = false;
    for _ in 0..200 {
        if ready(&first).await == StatusCode::OK && ready(&second).await == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the replicas did not become ready again");
    let path = format!("/v1/tenants/{tenant}/keys/{}/revoke", key["id"].as_str().unwrap());
    assert_eq!(first.post(&path, &first.admin, json!({})).await.status, StatusCode::OK);
    assert_eq!(first.verify(&seen, &[]).await["code"], "REVOKED");
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        last = second.verify(&seen, &[]).await;
        if last["code"] == "REVOKED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last["code"],
        "REVOKED",
        "the second replica still trusts a revoked key (listening: {})",
        second.ctx.verify.listening()
    );
    assert_eq!(first.verify(&unseen, &[]).await["code"], "VALID");
    first.pool.close().await;
    second.pool.close().await;
}

#[sqlx::test]
async fn terminated_connections_are_replaced_and_never_answer_500(pool: PgPool) {
    let replica = own_pool(&pool, "drill-terminated", 5000).await;
    let app = TestApp::spawn_configured(replica, TestApp::config(), |ctx| ctx).await;
    let tenant = app.tenant("acme").await;
    let mut tokens = Vec::new();
    for n in 0..5 {
        tokens.push(app.key(&tenant, json!({"name": format!("k{n}")})).await.1);
    }

    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'drill-terminated'")
        .execute(&pool)
        .await
        .unwrap();

    let mut answers = Vec::new();
    for token in &tokens {
        answers.push(status_of(&app, token).await);
    }
    for (status, body) in &answers {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::SERVICE_UNAVAILABLE,
            "{status} {body}"
        );
    }
    assert_eq!(status_of(&app, &tokens[4]).await.1["code"], "VALID");
    app.pool.close().await;
}

/// Sends `signal` to PostgreSQL backends of the test's own server.
fn signal_backends(pids: &[i32], signal: &str) {
    for pid in pids {
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

/// Resumes stopped backends however the test ends, so that its database can be dropped.
struct Resume(Vec<i32>);

impl Drop for Resume {
    fn drop(&mut self) {
        signal_backends(&self.0, "CONT");
    }
}

#[sqlx::test]
async fn a_hung_database_answers_503_in_bounded_time_while_cached_keys_still_verify(pool: PgPool) {
    let replica = own_pool(&pool, "drill-hung", 1000).await;
    let app = TestApp::spawn_configured(replica, TestApp::config(), |ctx| ctx).await;
    let tenant = app.tenant("acme").await;
    let (_, seen) = app.key(&tenant, json!({"name": "seen"})).await;
    let (_, unseen) = app.key(&tenant, json!({"name": "unseen"})).await;
    assert_eq!(app.verify(&seen, &[]).await["code"], "VALID");
    let backends: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = 'drill-hung'")
            .fetch_all(&pool)
            .await
            .unwrap();

    signal_backends(&backends, "STOP");
    let resume = Resume(backends);
    // A guard against a hang, not a speed check.
    let answers = tokio::time::timeout(Duration::from_secs(30), async {
        let cached = status_of(&app, &seen).await;
        let malformed = status_of(&app, "sk_live_garbage").await;
        let uncached = status_of(&app, &unseen).await;
        tokio::time::sleep(Duration::from_millis(1500)).await; // the listener notices
        let stale = status_of(&app, &seen).await;
        (cached, malformed, uncached, stale)
    })
    .await
    .expect("a request waited on the hung database");
    drop(resume);

    let (cached, malformed, uncached, stale) = answers;
    assert_eq!(cached.1["code"], "VALID");
    assert_eq!(malformed.1["code"], "MALFORMED");
    assert_eq!(uncached.0, StatusCode::SERVICE_UNAVAILABLE, "{}", uncached.1);
    assert_eq!(stale.1["code"], "VALID");
    app.pool.close().await;
}
