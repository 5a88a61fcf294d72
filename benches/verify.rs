//! `make bench`: verify throughput against references measured in the same run, on this
//! machine, over real HTTP on loopback against a real PostgreSQL. Results are ratios, so they
//! compare across machines; absolute numbers are printed for context only.
//!
//! References: `GET /healthz` (the HTTP stack alone) and a bare `SELECT 1` round trip through the
//! same pool (the database floor). Measured: `/v1/verify` with a valid key, with a malformed key
//! (no database), and `/v1/verify/request` with an HMAC-signed request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::app::App;
use keyward::clock::Clock;
use keyward::config::{AppConfig, SecretsConfig};
use keyward::crypto::secrets::MasterKeys;
use keyward::domain::audit::{Actor, ActorKind, RequestMeta};
use keyward::domain::key::ServiceTokenSpec;
use keyward::domain::permissions::{Permission, TenantScope};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

const CONCURRENCY: usize = 16;
const PHASE: Duration = Duration::from_secs(4);
const WARMUP: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() {
    let base_url = std::env::var("DATABASE_URL").expect("DATABASE_URL (make bench sets it)");
    let database = format!("keyward_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&base_url).await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = with_database(&base_url, &database);
    let result = run(&url).await;
    let pool_closed = sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    if let Err(error) = pool_closed {
        eprintln!("could not drop {database}: {error}");
    }
    result.print();
}

/// Index and sequential scans of `api_keys` so far (as the statistics collector last saw them).
async fn key_table_reads(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (COALESCE(idx_scan, 0) + COALESCE(seq_scan, 0))::bigint FROM pg_stat_user_tables WHERE relname = 'api_keys'",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(-1)
}

/// Rows per table, except the verification counts (which a verification is meant to add to).
async fn row_counts(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'verification_counts' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let mut counts = Vec::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
            .fetch_one(pool)
            .await
            .unwrap_or(-1);
        counts.push((table, count));
    }
    counts
}

fn with_database(url: &str, database: &str) -> String {
    let (before, query) = url
        .split_once('?')
        .map_or((url, String::new()), |(b, q)| (b, format!("?{q}")));
    let scheme_end = before.find("://").map_or(0, |i| i + 3);
    let root = match before[scheme_end..].find('/') {
        Some(i) => &before[..scheme_end + i],
        None => before,
    };
    format!("{root}/{database}{query}")
}

struct Measured {
    name: &'static str,
    per_second: f64,
}

struct Results(Vec<Measured>);

impl Results {
    fn print(&self) {
        let find = |name: &str| {
            self.0
                .iter()
                .find(|m| m.name == name)
                .map_or(f64::NAN, |m| m.per_second)
        };
        let healthz = find("GET /healthz");
        let select = find("SELECT 1 (pool)");
        println!(
            "{:<36} {:>12} {:>14} {:>14}",
            "operation", "req/s", "÷ /healthz", "÷ SELECT 1"
        );
        for m in &self.0 {
            println!(
                "{:<36} {:>12.0} {:>14.3} {:>14.3}",
                m.name,
                m.per_second,
                m.per_second / healthz,
                m.per_second / select
            );
        }
        let json: Vec<Value> = self
            .0
            .iter()
            .map(|m| {
                json!({"operation": m.name, "per_second": m.per_second,
                            "ratio_to_healthz": m.per_second / healthz, "ratio_to_select1": m.per_second / select})
            })
            .collect();
        let _ = std::fs::create_dir_all("target/bench");
        let _ = std::fs::write(
            "target/bench/verify.json",
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        );
        println!("(written to target/bench/verify.json; {CONCURRENCY} concurrent clients, {PHASE:?} per phase)");
    }
}

/// Runs `op` from CONCURRENCY tasks for PHASE (after a warm-up) and returns operations/second.
async fn measure<F, Fut>(name: &'static str, op: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let sequence = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (op, counter, sequence, failures) = (op.clone(), counter.clone(), sequence.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < WARMUP + PHASE {
                let ok = op(sequence.fetch_add(1, Ordering::Relaxed)).await;
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if started.elapsed() > WARMUP {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let failed = failures.load(Ordering::Relaxed);
    assert_eq!(
        failed, 0,
        "{name}: {failed} operations did not give the expected answer"
    );
    Measured {
        name,
        per_second: counter.load(Ordering::Relaxed) as f64 / PHASE.as_secs_f64(),
    }
}

async fn run(url: &str) -> Results {
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect(url)
        .await
        .expect("connect");
    keyward::db::migrate(&pool).await.expect("migrate");
    let master_keys = MasterKeys::generate_config(1);
    let config = AppConfig::minimal(SecretsConfig {
        master_keys: Some(master_keys),
    });
    let app = App::build(&config, pool.clone(), Clock::system()).expect("app");
    let ctx = app.ctx.clone();
    let actor = Actor {
        kind: ActorKind::System,
        id: "bench".into(),
    };
    let spec = ServiceTokenSpec {
        name: "bench".into(),
        permissions: Permission::ALL.to_vec(),
        expires_at: None,
    };
    let admin =
        keyward::service::keys::issue_service_token(&ctx, &actor, &RequestMeta::default(), TenantScope::Platform, spec)
            .await
            .expect("service token");
    let admin = admin.token.expose().to_owned();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();

    let post = |path: &str, body: Value| {
        let request = http.post(format!("{base}{path}")).bearer_auth(&admin).json(&body);
        async move { request.send().await.expect("send").json::<Value>().await.expect("json") }
    };
    let tenant = post("/v1/tenants", json!({"slug": "bench", "name": "Bench"})).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = post(
        &format!("/v1/tenants/{tenant}/keys"),
        json!({"name": "k", "scopes": ["bench:*"]}),
    )
    .await;
    let token = key["token"].as_str().unwrap_or_default().to_owned();
    let signer = post(
        &format!("/v1/tenants/{tenant}/keys"),
        json!({"name": "s", "signing": true}),
    )
    .await;
    let rate_limited = post(
        &format!("/v1/tenants/{tenant}/keys"),
        json!({"name": "r", "scopes": ["bench:*"], "rate_limit": {"limit": 1_000_000, "window_seconds": 3600}}),
    )
    .await["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let counted = post(
        &format!("/v1/tenants/{tenant}/keys"),
        json!({"name": "c", "scopes": ["bench:*"], "remaining": 1_000_000_000_000i64}),
    )
    .await["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let signer_id = signer["key"]["id"].as_str().unwrap_or_default().to_owned();
    let secret = signer["signing_secret"].as_str().unwrap_or_default().to_owned();

    let mut results = Vec::new();
    {
        let (http, base) = (http.clone(), base.clone());
        results.push(
            measure("GET /healthz", move |_| {
                let request = http.get(format!("{base}/healthz"));
                async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
            })
            .await,
        );
    }
    {
        let pool = pool.clone();
        results.push(
            measure("SELECT 1 (pool)", move |_| {
                let pool = pool.clone();
                async move { sqlx::query("SELECT 1").execute(&pool).await.is_ok() }
            })
            .await,
        );
    }
    for (name, key, expected) in [
        ("POST /v1/verify (valid)", token.clone(), "VALID"),
        ("POST /v1/verify (rate limit)", rate_limited.clone(), "VALID"),
        ("POST /v1/verify (remaining)", counted.clone(), "VALID"),
        ("POST /v1/verify (malformed)", "sk_live_nope".to_owned(), "MALFORMED"),
    ] {
        let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
        results.push(
            measure(name, move |_| {
                let request = http
                    .post(format!("{base}/v1/verify"))
                    .bearer_auth(&admin)
                    .json(&json!({"key": key, "scopes": ["bench:read"]}));
                async move {
                    match request.send().await {
                        Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["code"] == expected),
                        Err(_) => false,
                    }
                }
            })
            .await,
        );
    }
    {
        // Random well-formed tokens: no key has them. Reads of the key table are counted.
        let reads_before = key_table_reads(&pool).await;
        let rows_before = row_counts(&pool).await;
        let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
        results.push(
            measure("POST /v1/verify (unknown token)", move |_| {
                let token = keyward::domain::token::NewToken::generate(keyward::domain::token::TokenPrefix::Live);
                let request = http
                    .post(format!("{base}/v1/verify"))
                    .bearer_auth(&admin)
                    .json(&json!({"key": token.expose()}));
                async move {
                    match request.send().await {
                        Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["code"] == "NOT_FOUND"),
                        Err(_) => false,
                    }
                }
            })
            .await,
        );
        tokio::time::sleep(Duration::from_millis(1500)).await; // statistics are flushed lazily
        let reads = key_table_reads(&pool).await - reads_before;
        let grown: Vec<String> = row_counts(&pool)
            .await
            .into_iter()
            .zip(rows_before)
            .filter(|(after, before)| after != before)
            .map(|((table, after), (_, before))| format!("{table} {before}→{after}"))
            .collect();
        println!("unknown tokens: {reads} reads of api_keys; tables grown: {grown:?}");
    }
    {
        let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
        results.push(
            measure("POST /v1/verify/request (hmac)", move |n| {
                // A distinct path per request keeps every signature fresh for the replay store.
                let mut signed = keyward::signing::Request::new("GET", format!("/orders/{n}"), "")
                    .with_header("Host", "api.example.com");
                let signed_ok = keyward::signing::keyward_hmac::sign(
                    &mut signed,
                    &signer_id,
                    secret.as_bytes(),
                    chrono::Utc::now(),
                )
                .is_ok();
                let request = http
                    .post(format!("{base}/v1/verify/request"))
                    .bearer_auth(&admin)
                    .json(&json!({"method": "GET", "path": signed.path, "query": "", "headers": signed.headers}));
                async move {
                    signed_ok
                        && match request.send().await {
                            Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["code"] == "VALID"),
                            Err(_) => false,
                        }
                }
            })
            .await,
        );
    }
    let _ = stop.send(());
    let _ = server.await;
    pool.close().await;
    Results(results)
}
