//! `make bench`: keyward against references measured in the same run, on this machine, over
//! real HTTP on loopback against a real PostgreSQL. Results are ratios (or latencies, or memory
//! per key), so they compare across machines; absolute numbers are printed for context only.
//!
//! References: `GET /healthz` (the HTTP stack alone), a bare `SELECT 1` round trip through the
//! same pool (the database floor), and `pgbench -S` / `pgbench -N` on a scratch database of the
//! same cluster with as many connections as the bench has clients.
//!
//! Measured, on a fresh database dropped afterwards:
//! - `/v1/verify` with one hot key (plain, rate-limited, counted), a malformed key, unknown
//!   tokens, and `/v1/verify/request` with an HMAC-signed request;
//! - the hot key's p50/p99 latency at half its maximum rate, open loop;
//! - key creation with its audit event, against `pgbench -N`;
//! - how long a revocation takes to be seen by two other replicas;
//! - a million keys seeded with COPY: the resident memory with all of them cached, verify
//!   uniformly over them, and verify with the cache as good as off, against `pgbench -S`.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::app::App;
use keyward::clock::Clock;
use keyward::config::{AppConfig, SecretsConfig};
use keyward::crypto::secrets::MasterKeys;
use keyward::domain::audit::{Actor, ActorKind, RequestMeta};
use keyward::domain::ids::{KeyId, KeyKind};
use keyward::domain::key::{Environment, ServiceTokenSpec};
use keyward::domain::permissions::{Permission, TenantScope};
use keyward::domain::token::{checksum, NewToken, TokenHash, TokenPrefix, BODY_LEN, START_LEN};
use keyward::service::Context;
use keyward::verify::Verifiable;
use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

const CONCURRENCY: usize = 16;
const PHASE: Duration = Duration::from_secs(4);
const WARMUP: Duration = Duration::from_secs(1);

/// Keys seeded for the uniform, memory and cold phases.
const SEEDED_KEYS: u64 = 1_000_000;
/// The cache of the uniform phase: every seeded key fits, with room to spare.
const CACHE_FOR_ALL: usize = 1_100_000;
/// The cache of the cold phase. It cannot be turned off (`cache_keys` 0 is taken as 1, see
/// `KeyCache::new`), and one entry would also evict the caller's own service token, which every
/// request authenticates with; a thousand entries keep that token and miss the million.
const CACHE_ALMOST_OFF: usize = 1_000;
/// Rows per COPY message, and how often seeding reports progress.
const SEED_CHUNK: u64 = 10_000;
const PROGRESS_EVERY: u64 = 100_000;
const REVOCATION_TRIALS: usize = 100;
/// How long a replica may take to see a revocation before the bench gives up on it.
const REVOCATION_GIVE_UP: Duration = Duration::from_secs(10);

const HEALTHZ: &str = "GET /healthz";
const SELECT_1: &str = "SELECT 1 (pool)";
const HOT_KEY: &str = "POST /v1/verify (valid)";
const UNIFORM: &str = "POST /v1/verify (uniform, 1M keys)";
const COLD: &str = "POST /v1/verify (cold, 1M keys)";
const CREATE: &str = "POST /v1/tenants/{id}/keys";
const CREATE_SPREAD: &str = "POST .../keys (16 tenants)";
const PGBENCH_SELECT: &str = "pgbench -S";
const PGBENCH_NO_UPDATES: &str = "pgbench -N";

#[tokio::main]
async fn main() {
    // keyward's own warnings (a listener that lost its notifications, say) show in the output.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,keyward::app=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let base_url = std::env::var("DATABASE_URL").expect("DATABASE_URL (make bench sets it)");
    let name = format!("keyward_bench_{}", std::process::id());
    let databases = [name.clone(), format!("{name}_pgbench")];
    let mut admin = PgConnection::connect(&base_url).await.expect("connect to DATABASE_URL");
    for database in &databases {
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .expect("create the bench's scratch databases");
    }
    let urls = databases.clone().map(|database| with_database(&base_url, &database));
    // A failed phase still drops the databases.
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run(urls))).await;
    for database in databases {
        let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        if let Err(error) = dropped {
            eprintln!("could not drop {database}: {error}");
        }
    }
    match outcome {
        Ok(report) => report.print(),
        Err(panic) => std::panic::resume_unwind(panic),
    }
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

async fn run([url, pgbench_url]: [String; 2]) -> Report {
    let mut report = Report::default();
    let setup = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connect to the bench database");
    keyward::db::migrate(&setup).await.expect("migrate the bench database");
    let master_keys = MasterKeys::generate_config(1);
    let primary = Replica::start(&url, &master_keys, default_cache_keys()).await;
    let api = Api::new(&primary, admin_token(&primary.ctx).await);

    hot_key_phases(&mut report, &api, &primary.ctx.pool, &setup).await;
    let hot_rate = report.rate(HOT_KEY);
    open_loop_phase(&mut report, &api, hot_rate).await;

    pgbench_init(&pgbench_url);
    let no_updates = observed(&mut report, PGBENCH_NO_UPDATES, None, pgbench(&pgbench_url, "-N")).await;
    report.push(no_updates);
    creation_phases(&mut report, &api, &url).await;
    revocation_phase(&mut report, &api, &url, &master_keys).await;

    let million_tenant = api.create_tenant("bench-million").await;
    primary.stop().await;
    let million = Million {
        url: &url,
        master_keys: &master_keys,
        tenant: &million_tenant,
        setup: &setup,
        pgbench_url: &pgbench_url,
    };
    million_key_phases(&mut report, &api, million).await;
    setup.close().await;
    report
}

/// The cache a replica keeps unless told otherwise (`KEYWARD_CACHE_KEYS`' default).
fn default_cache_keys() -> usize {
    keyward::verify::Settings::default().cache_keys
}

/// Issues the platform service token every request of the bench authenticates with.
async fn admin_token(ctx: &Context) -> String {
    let actor = Actor {
        kind: ActorKind::System,
        id: "bench".into(),
    };
    let spec = ServiceTokenSpec {
        name: "bench".into(),
        permissions: Permission::ALL.to_vec(),
        expires_at: None,
    };
    let issued =
        keyward::service::keys::issue_service_token(ctx, &actor, &RequestMeta::default(), TenantScope::Platform, spec)
            .await
            .expect("issue the bench's service token");
    issued.token.expose().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Replicas and their HTTP API
// ---------------------------------------------------------------------------------------------

/// One keyward replica served in-process on loopback: its own pool, engine, change listener and
/// background work, as a separate process would have.
struct Replica {
    ctx: Context,
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Replica {
    /// Starts a replica keeping up to `cache_keys` keys, and waits until it is ready (its change
    /// listener subscribed and every key's fingerprint loaded).
    async fn start(url: &str, master_keys: &SecretString, cache_keys: usize) -> Replica {
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect(url)
            .await
            .expect("connect a replica's pool");
        let mut config = AppConfig::minimal(SecretsConfig {
            master_keys: Some(master_keys.clone()),
        });
        config.cache_keys = cache_keys;
        let app = App::build(&config, pool, Clock::system()).expect("the bench's configuration is valid");
        let ctx = app.ctx.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("a bound listener has an address")
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        let replica = Replica {
            ctx,
            base,
            stop,
            server,
        };
        replica.wait_ready().await;
        replica
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "a replica did not get ready within a minute"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving, writes what is queued, and closes the pool (which ends the listener).
    async fn stop(self) {
        let _ = self.stop.send(());
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("a replica stopped with an error: {error}"),
            Err(error) => eprintln!("a replica's server task failed: {error}"),
        }
        self.ctx.pool.close().await;
    }
}

/// keyward's HTTP API on one replica, as the bench's service token.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: Arc<str>,
    admin: Arc<str>,
}

impl Api {
    fn new(replica: &Replica, admin: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: replica.base.as_str().into(),
            admin: admin.into(),
        }
    }

    /// The same API on another replica.
    fn on(&self, replica: &Replica) -> Api {
        Api {
            base: replica.base.as_str().into(),
            ..self.clone()
        }
    }

    fn post_request(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&*self.admin)
            .json(body)
    }

    /// A POST that must succeed; its JSON answer.
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.post_request(path, &body).send().await.expect("send a request");
        let status = response.status();
        let answer: Value = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }

    async fn create_tenant(&self, slug: &str) -> String {
        let tenant = self.post("/v1/tenants", json!({"slug": slug, "name": slug})).await;
        tenant["id"].as_str().expect("a tenant has an id").to_owned()
    }

    /// Creates a key of `tenant` from `body`; its id and token.
    async fn create_key(&self, tenant: &str, body: Value) -> (String, String) {
        let created = self.post(&format!("/v1/tenants/{tenant}/keys"), body).await;
        let id = created["key"]["id"].as_str().expect("a created key has an id");
        let token = created["token"].as_str().expect("a created key has a token");
        (id.to_owned(), token.to_owned())
    }

    /// The code `/v1/verify` answers for `body`; `None` when no answer came.
    fn verify_code(&self, body: &Value) -> impl Future<Output = Option<String>> + Send + 'static {
        let request = self.post_request("/v1/verify", body);
        async move {
            let answer: Value = request.send().await.ok()?.json().await.ok()?;
            answer["code"].as_str().map(str::to_owned)
        }
    }

    /// The code `/v1/verify` answers for `token` asked for scope `bench:read`.
    fn verify(&self, token: &str) -> impl Future<Output = Option<String>> + Send + 'static {
        self.verify_code(&json!({"key": token, "scopes": ["bench:read"]}))
    }

    /// Whether `/v1/verify` answers `expected` for `token` asked for scope `bench:read`.
    fn answers(&self, token: &str, expected: &'static str) -> impl Future<Output = bool> + Send + 'static {
        let verdict = self.verify(token);
        async move { verdict.await.as_deref() == Some(expected) }
    }
}

// ---------------------------------------------------------------------------------------------
// Drivers: closed loop (for a time, or over a number of operations) and open loop
// ---------------------------------------------------------------------------------------------

struct Measured {
    name: &'static str,
    per_second: f64,
    /// Every operation of the run, its warm-up included.
    operations: u64,
}

/// How long a closed-loop run goes on.
#[derive(Clone, Copy)]
enum Until {
    /// A phase: WARMUP, then PHASE counted.
    PhaseEnds,
    /// Every sequence number below this, once each (all counted, progress printed).
    EachOnce(u64),
}

/// Runs `op` from CONCURRENCY tasks, each awaiting its answer before sending again; `op` gets a
/// sequence number (unique across tasks) and says whether the answer was the expected one.
/// Returns operations per second; panics when any answer was not the expected one.
async fn closed_loop<F, Fut>(name: &'static str, until: Until, op: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let counted = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let sequence = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (op, counted, answered, sequence, failures) = (
            op.clone(),
            counted.clone(),
            answered.clone(),
            sequence.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                match until {
                    Until::PhaseEnds if started.elapsed() >= WARMUP + PHASE => break,
                    Until::EachOnce(count) if n >= count => break,
                    _ => {}
                }
                if !op(n).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                answered.fetch_add(1, Ordering::Relaxed);
                let counts = match until {
                    Until::PhaseEnds => started.elapsed() > WARMUP,
                    Until::EachOnce(_) => true,
                };
                if counts {
                    let done = counted.fetch_add(1, Ordering::Relaxed) + 1;
                    if matches!(until, Until::EachOnce(_)) && done % PROGRESS_EVERY == 0 {
                        eprintln!(
                            "  {name}: {done} ({:.0}/s)",
                            done as f64 / started.elapsed().as_secs_f64()
                        );
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client task panicked");
    }
    let failed = failures.load(Ordering::Relaxed);
    assert_eq!(
        failed, 0,
        "{name}: {failed} operations did not give the expected answer"
    );
    let seconds = match until {
        Until::PhaseEnds => PHASE.as_secs_f64(),
        Until::EachOnce(_) => started.elapsed().as_secs_f64(),
    };
    let measured = Measured {
        name,
        per_second: counted.load(Ordering::Relaxed) as f64 / seconds,
        operations: answered.load(Ordering::Relaxed),
    };
    eprintln!("{name}: {:.0}/s", measured.per_second);
    measured
}

async fn measure<F, Fut>(name: &'static str, op: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    closed_loop(name, Until::PhaseEnds, op).await
}

/// Latencies of an open-loop run, each from the instant its request was due.
#[derive(Default)]
struct OpenLoop {
    latencies: Vec<Duration>,
    /// How late the bench's dispatcher queued each request (part of its latency).
    queued_late: Vec<Duration>,
    /// When each request was due, from the start of PHASE.
    due: Vec<Duration>,
}

/// How many windows of this length the slowest requests fell in: a few means stalls.
const STALL_WINDOW: Duration = Duration::from_millis(10);

impl OpenLoop {
    /// In how many of PHASE's STALL_WINDOWs the requests at or above the 99th percentile were due.
    fn slowest_percent_windows(&self) -> (usize, u128) {
        let p99 = Latencies::of("open loop", self.latencies.clone()).p99;
        let windows: std::collections::HashSet<u128> = self
            .latencies
            .iter()
            .zip(&self.due)
            .filter(|(latency, _)| **latency >= p99)
            .map(|(_, due)| due.as_nanos() / STALL_WINDOW.as_nanos())
            .collect();
        (windows.len(), PHASE.as_nanos() / STALL_WINDOW.as_nanos())
    }
}

/// A request of an open-loop run: its number, when it was due, how late it was queued.
struct Due {
    n: u64,
    at: Instant,
    queued_late: Duration,
}

/// Sends `op(n)` at `per_second` for WARMUP and PHASE, on schedule whatever the answers do
/// (open loop), over CONCURRENCY connections as the closed-loop phases use: a request due while
/// every connection is busy waits for one. Each request of PHASE is measured from the instant it
/// was due, so a stall counts against every request it delays. Panics when any answer was not
/// the expected one.
async fn open_loop<F, Fut>(per_second: f64, op: F) -> OpenLoop
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let (queue, due) = tokio::sync::mpsc::unbounded_channel::<Due>();
    let due = Arc::new(tokio::sync::Mutex::new(due));
    let op = Arc::new(op);
    let senders: Vec<_> = (0..CONCURRENCY)
        .map(|_| tokio::spawn(send_when_due(due.clone(), op.clone())))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let requests = ((WARMUP + PHASE).as_secs_f64() * per_second) as u64;
    let start = Instant::now();
    // A thread of its own keeps the schedule: the runtime's timers tick in milliseconds.
    tokio::task::spawn_blocking(move || {
        for n in 0..requests {
            let at = start + interval.mul_f64(n as f64);
            if let Some(early) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(early);
            }
            let queued_late = at.elapsed();
            if queue.send(Due { n, at, queued_late }).is_err() {
                return; // the senders failed; their panic is reported below
            }
        }
    })
    .await
    .expect("the dispatcher panicked");
    let mut measured = OpenLoop::default();
    for sender in senders {
        for (at, latency, queued_late) in sender.await.expect("an open-loop sender panicked") {
            if at - start >= WARMUP {
                measured.latencies.push(latency);
                measured.queued_late.push(queued_late);
                measured.due.push(at - start - WARMUP);
            }
        }
    }
    measured
}

/// One connection's worth of an open-loop run: sends each request it takes from the queue and
/// returns (due at, latency, queued late) of each.
async fn send_when_due<F, Fut>(
    due: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Due>>>,
    op: Arc<F>,
) -> Vec<(Instant, Duration, Duration)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let mut sent = Vec::new();
    loop {
        let next = due.lock().await.recv().await;
        let Some(Due { n, at, queued_late }) = next else {
            return sent;
        };
        assert!(op(n).await, "open loop: a request did not give the expected answer");
        sent.push((at, at.elapsed(), queued_late));
    }
}

// ---------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------

/// The HTTP stack, the database floor, and verify of one hot key in its variants.
async fn hot_key_phases(report: &mut Report, api: &Api, keyward_pool: &PgPool, setup: &PgPool) {
    let tenant = api.create_tenant("bench").await;
    let (_, plain) = api
        .create_key(&tenant, json!({"name": "k", "scopes": ["bench:*"]}))
        .await;
    let rate_limited = json!({"name": "r", "scopes": ["bench:*"],
        "rate_limit": {"limit": 1_000_000, "window_seconds": 3600}});
    let (_, rate_limited) = api.create_key(&tenant, rate_limited).await;
    let counted = json!({"name": "c", "scopes": ["bench:*"], "remaining": 1_000_000_000_000i64});
    let (_, counted) = api.create_key(&tenant, counted).await;
    let signer = api
        .post(
            &format!("/v1/tenants/{tenant}/keys"),
            json!({"name": "s", "signing": true}),
        )
        .await;
    let signer_id = signer["key"]["id"]
        .as_str()
        .expect("a created key has an id")
        .to_owned();
    let secret = signer["signing_secret"]
        .as_str()
        .expect("a signing key has a secret")
        .to_owned();

    let healthz = {
        let (http, url) = (api.http.clone(), format!("{}/healthz", api.base));
        measure(HEALTHZ, move |_| {
            let request = http.get(&url);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    report.push(healthz);
    let pool = keyward_pool.clone();
    report.push(
        measure(SELECT_1, move |_| {
            let pool = pool.clone();
            async move { sqlx::query("SELECT 1").execute(&pool).await.is_ok() }
        })
        .await,
    );
    for (name, token, expected) in [
        (HOT_KEY, plain, "VALID"),
        ("POST /v1/verify (rate limit)", rate_limited, "VALID"),
        ("POST /v1/verify (remaining)", counted, "VALID"),
        ("POST /v1/verify (malformed)", "sk_live_nope".to_owned(), "MALFORMED"),
    ] {
        let api = api.clone();
        report.push(measure(name, move |_| api.answers(&token, expected)).await);
    }

    // Random well-formed tokens: no key has them. Reads of the key table are counted.
    let reads_before = key_table_reads(setup).await;
    let rows_before = row_counts(setup).await;
    let unknown = api.clone();
    report.push(
        measure("POST /v1/verify (unknown token)", move |_| {
            let verdict = unknown.verify_code(&json!({"key": NewToken::generate(TokenPrefix::Live).expose()}));
            async move { verdict.await.as_deref() == Some("NOT_FOUND") }
        })
        .await,
    );
    let reads = key_table_reads(setup).await - reads_before;
    let grown: Vec<String> = row_counts(setup)
        .await
        .into_iter()
        .zip(rows_before)
        .filter(|(after, before)| after != before)
        .map(|((table, after), (_, before))| format!("{table} {before}→{after}"))
        .collect();
    report.note(format!(
        "unknown tokens: {reads} reads of api_keys; tables grown: {grown:?}"
    ));

    let signed = api.clone();
    report.push(
        measure("POST /v1/verify/request (hmac)", move |n| {
            // A distinct path per request keeps every signature fresh for the replay store.
            let mut request = keyward::signing::Request::new("GET", format!("/orders/{n}"), "")
                .with_header("Host", "api.example.com");
            let signed_ok =
                keyward::signing::keyward_hmac::sign(&mut request, &signer_id, secret.as_bytes(), chrono::Utc::now())
                    .is_ok();
            let body = json!({"method": "GET", "path": request.path, "query": "", "headers": request.headers});
            let request = signed.post_request("/v1/verify/request", &body);
            async move {
                let answer = async { request.send().await.ok()?.json::<Value>().await.ok() };
                signed_ok && answer.await.is_some_and(|v| v["code"] == "VALID")
            }
        })
        .await,
    );
}

/// The hot key at half the rate it reached closed-loop, open loop: p50 and p99 latency.
async fn open_loop_phase(report: &mut Report, api: &Api, hot_rate: f64) {
    let tenant = api.create_tenant("bench-open-loop").await;
    let (_, token) = api
        .create_key(&tenant, json!({"name": "o", "scopes": ["bench:*"]}))
        .await;
    let rate = (hot_rate / 2.0).max(1.0);
    let sender = api.clone();
    let name = format!("verify, hot key, open loop at {rate:.0}/s");
    let open = open_loop(rate, move |_| sender.answers(&token, "VALID"));
    let measured = observed(report, &name, None, open).await;
    let (stalled, windows) = measured.slowest_percent_windows();
    report.note(format!(
        "{name}: the slowest 1% were due in {stalled} of the phase's {windows} windows of {STALL_WINDOW:?}"
    ));
    report.latency(&name, measured.latencies);
    report.latency("  of which the bench queueing it late", measured.queued_late);
}

/// Key creation (each with its audit event) in one tenant, and spread over sixteen: the
/// difference is the wait for the tenant's audit chain, which appends one at a time.
async fn creation_phases(report: &mut Report, api: &Api, url: &str) {
    let tenant = api.create_tenant("bench-create").await;
    let creator = api.clone();
    let path = format!("/v1/tenants/{tenant}/keys");
    let one_tenant = measure(CREATE, move |_| created(&creator, &path));
    let measured = observed(report, CREATE, Some(url), one_tenant).await;
    report.push(measured);

    let mut paths = Vec::new();
    for n in 0..CONCURRENCY {
        let tenant = api.create_tenant(&format!("bench-create-{n}")).await;
        paths.push(format!("/v1/tenants/{tenant}/keys"));
    }
    let creator = api.clone();
    let spread = measure(CREATE_SPREAD, move |n| {
        created(&creator, &paths[n as usize % paths.len()])
    });
    let measured = observed(report, CREATE_SPREAD, Some(url), spread).await;
    report.push(measured);
}

fn created(api: &Api, path: &str) -> impl Future<Output = bool> + Send + 'static {
    let request = api.post_request(path, &json!({"name": "created", "scopes": ["bench:*"]}));
    async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
}

/// Two more replicas beside the one `api` talks to, each with its own engine and change
/// listener; how long a revocation on the first takes to reach the other two.
async fn revocation_phase(report: &mut Report, api: &Api, url: &str, master_keys: &SecretString) {
    let others = [
        Replica::start(url, master_keys, default_cache_keys()).await,
        Replica::start(url, master_keys, default_cache_keys()).await,
    ];
    let replicas = [api.clone(), api.on(&others[0]), api.on(&others[1])];
    let seen_after = revocation_trials(&replicas).await;
    report.latency("revocation seen by 2 other replicas", seen_after);
    for replica in others {
        replica.stop().await;
    }
}

/// Per trial: a key is created on the first replica and verified on all three (so each has it
/// cached), then revoked on the first; measured from the revocation's answer until both others
/// answer `REVOKED`, each asked again and again in a tight loop.
async fn revocation_trials(replicas: &[Api; 3]) -> Vec<Duration> {
    let [first, second, third] = replicas;
    let tenant = first.create_tenant("bench-revoke").await;
    let mut seen_after = Vec::with_capacity(REVOCATION_TRIALS);
    for _ in 0..REVOCATION_TRIALS {
        let (id, token) = first
            .create_key(&tenant, json!({"name": "revoked", "scopes": ["bench:*"]}))
            .await;
        for replica in replicas {
            assert_eq!(
                replica.verify(&token).await.as_deref(),
                Some("VALID"),
                "a new key verifies everywhere"
            );
        }
        first
            .post(
                &format!("/v1/tenants/{tenant}/keys/{id}/revoke"),
                json!({"reason": "bench"}),
            )
            .await;
        let revoked = Instant::now();
        let (second_saw, third_saw) = tokio::join!(
            until_revoked(second, &token, revoked),
            until_revoked(third, &token, revoked)
        );
        seen_after.push(second_saw.max(third_saw));
    }
    seen_after
}

/// How long after `revoked` the replica behind `api` first answers `REVOKED` for `token`.
async fn until_revoked(api: &Api, token: &str, revoked: Instant) -> Duration {
    loop {
        match api.verify(token).await.as_deref() {
            Some("REVOKED") => return revoked.elapsed(),
            Some("VALID") if revoked.elapsed() < REVOCATION_GIVE_UP => {}
            other => panic!("a revoked key answered {other:?} after {:?}", revoked.elapsed()),
        }
    }
}

/// Where the million-key phases run: the bench database and its tenant for the seeded keys,
/// the replicas' master keys, the bench's own pool, and pgbench's scratch database.
struct Million<'a> {
    url: &'a str,
    master_keys: &'a SecretString,
    tenant: &'a str,
    setup: &'a PgPool,
    pgbench_url: &'a str,
}

/// A million keys seeded with COPY; then resident memory as they are cached, verify uniformly
/// over them, and verify with the cache as good as off against `pgbench -S`.
async fn million_key_phases(report: &mut Report, api: &Api, million: Million<'_>) {
    // The order every key is first looked up in, drawn before the first reading of memory.
    let mut order: Vec<u32> = (0..SEEDED_KEYS as u32).collect();
    order.shuffle(&mut rand::thread_rng());
    let tokens = SeededTokens::new();

    report.memory("before seeding", resident_kib());
    let created_by = service_token_id(million.setup).await;
    let seeded = seed_keys(million.setup, million.url, million.tenant, &created_by, tokens).await;
    report.note(seeded);
    report.memory("after seeding (the bench's own COPY buffers)", resident_kib());

    let cached = Replica::start(million.url, million.master_keys, CACHE_FOR_ALL).await;
    report.memory("replica started (fingerprints of every key loaded)", resident_kib());
    report.push(fill_cache(&cached, tokens, order, million.url).await);
    report.memory("every key cached", resident_kib());
    report.note(format!(
        "a cached key holds an Arc'd Verifiable of {} bytes (its grants shared, no other allocation for these keys)",
        std::mem::size_of::<Verifiable>() + 2 * std::mem::size_of::<usize>()
    ));
    verify_seeded(report, api, cached, UNIFORM, tokens, &million).await;

    let select_only = pgbench(million.pgbench_url, "-S");
    let select_only = observed(report, PGBENCH_SELECT, None, select_only).await;
    report.push(select_only);
    let almost_off = Replica::start(million.url, million.master_keys, CACHE_ALMOST_OFF).await;
    verify_seeded(report, api, almost_off, COLD, tokens, &million).await;
}

/// Looks every seeded key up once, in `order`, through `replica`'s engine (which caches what it
/// finds): what a verification does before judging the key, without the HTTP round trip and the
/// usage writes. On a pool of its own, closed afterwards so that its connections' statistics
/// reach the collector before the next phase counts its own.
async fn fill_cache(replica: &Replica, tokens: SeededTokens, order: Vec<u32>, url: &str) -> Measured {
    let pool = PgPoolOptions::new()
        .max_connections(CONCURRENCY as u32)
        .connect(url)
        .await
        .expect("connect the pool that fills the cache");
    let (engine, lookups) = (replica.ctx.verify.clone(), pool.clone());
    let filled = closed_loop(
        "first lookup of each key (fills the cache)",
        Until::EachOnce(SEEDED_KEYS),
        move |n| {
            let hash = TokenHash::of(&tokens.token(order[n as usize].into()));
            let (engine, lookups) = (engine.clone(), lookups.clone());
            async move {
                let found = engine.find_by_hash(&lookups, KeyKind::Customer, &hash).await;
                found.is_ok_and(|found| found.is_some())
            }
        },
    )
    .await;
    pool.close().await;
    filled
}

/// Verifies seeded keys drawn uniformly on `replica` for a phase, then stops it (its connections'
/// statistics reach the collector as they close) and notes what the database did per verification.
async fn verify_seeded(
    report: &mut Report,
    api: &Api,
    replica: Replica,
    name: &'static str,
    tokens: SeededTokens,
    million: &Million<'_>,
) {
    let before = Activity::now(million.setup).await;
    let client = api.on(&replica);
    let phase = measure(name, move |_| client.answers(&tokens.random(), "VALID"));
    let measured = observed(report, name, Some(million.url), phase).await;
    replica.stop().await;
    report.note(before.per_operation(million.setup, &measured).await);
    report.push(measured);
}

/// The id of the bench's service token: what `created_by` says of the keys it creates.
async fn service_token_id(db: &PgPool) -> String {
    sqlx::query_scalar("SELECT id FROM api_keys WHERE kind = 'service' ORDER BY id LIMIT 1")
        .fetch_one(db)
        .await
        .expect("the bench's service token exists")
}

// ---------------------------------------------------------------------------------------------
// The seeded keys
// ---------------------------------------------------------------------------------------------

/// The tokens of the seeded keys, each derived from the run's seed and its number, in keyward's
/// format (live prefix, 43 random base62 characters, their checksum). The bench derives a token
/// again whenever it sends one instead of holding a million, whose memory would be counted with
/// the cache's.
#[derive(Clone, Copy)]
struct SeededTokens {
    seed: u64,
}

impl SeededTokens {
    fn new() -> Self {
        SeededTokens { seed: rand::random() }
    }

    fn token(&self, n: u64) -> String {
        // Distinct numbers give distinct seeds (an odd multiplier is a bijection).
        let mut rng = StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut text = String::with_capacity(TokenPrefix::Live.as_str().len() + BODY_LEN + 6);
        text.push_str(TokenPrefix::Live.as_str());
        text.extend((&mut rng).sample_iter(&Alphanumeric).take(BODY_LEN).map(char::from));
        let sum = checksum(&text);
        text.push_str(&sum);
        text
    }

    /// The token of a seeded key drawn uniformly.
    fn random(&self) -> String {
        self.token(rand::thread_rng().gen_range(0..SEEDED_KEYS))
    }
}

/// What the seeded keys share: their tenant, creator and creation time, and their tokens.
struct SeedRows<'a> {
    tenant: &'a str,
    created_by: &'a str,
    created_at: String,
    tokens: SeededTokens,
}

impl SeedRows<'_> {
    /// The columns `SeedRows::write` fills; the others keep their defaults (NULL, `limit_epoch`
    /// 0), as `repo::keys::insert` leaves them for a new key without expiry, owner or limits.
    const COPY: &'static str = "COPY api_keys (id, tenant_id, kind, name, environment, prefix, start, token_hash, \
        scopes, metadata, created_at, created_by, enabled, limit_family) FROM STDIN";

    /// Appends key `n`'s row in COPY text format: what `KeyTemplate::issue` makes of a live key
    /// with scope `bench:*`, created by the bench's service token (its own family, never used).
    fn write(&self, n: u64, out: &mut String) {
        let token = self.tokens.token(n);
        let prefix = TokenPrefix::Live.as_str();
        let id = KeyId::generate(KeyKind::Customer);
        let _ = writeln!(
            out,
            "{id}\t{tenant}\t{kind}\tseeded\t{environment}\t{prefix}\t{start}\t\\\\x{hash}\t{{bench:*}}\t{{}}\t{at}\t{by}\tt\t{id}",
            tenant = self.tenant,
            kind = KeyKind::Customer.as_str(),
            environment = Environment::Live.as_str(),
            start = &token[prefix.len()..prefix.len() + START_LEN],
            hash = hex::encode(TokenHash::of(&token).as_bytes()),
            at = self.created_at,
            by = self.created_by,
        );
    }
}

/// Seeds SEEDED_KEYS keys of `tenant` with one COPY, then analyzes and vacuums the table (as
/// autovacuum soon would, but not in the middle of a later phase); says how long it took and how
/// large the table came out.
async fn seed_keys(setup: &PgPool, url: &str, tenant: &str, created_by: &str, tokens: SeededTokens) -> String {
    let rows = SeedRows {
        tenant,
        created_by,
        created_at: chrono::Utc::now().to_rfc3339(),
        tokens,
    };
    let started = Instant::now();
    let mut conn = PgConnection::connect(url).await.expect("connect for COPY");
    let mut copy = conn
        .copy_in_raw(SeedRows::COPY)
        .await
        .expect("start COPY into api_keys");
    let mut chunk = String::with_capacity(SEED_CHUNK as usize * 256);
    for n in 0..SEEDED_KEYS {
        rows.write(n, &mut chunk);
        let written = n + 1;
        if written % SEED_CHUNK == 0 || written == SEEDED_KEYS {
            copy.send(chunk.as_bytes()).await.expect("send COPY rows");
            chunk.clear();
        }
        if written % PROGRESS_EVERY == 0 {
            eprintln!(
                "  seeded {written} keys ({:.0}/s)",
                written as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let copied = copy.finish().await.expect("finish COPY into api_keys");
    assert_eq!(copied, SEEDED_KEYS, "every seeded row was copied");
    let copy_took = started.elapsed();
    sqlx::query("VACUUM (ANALYZE) api_keys")
        .execute(setup)
        .await
        .expect("vacuum api_keys");
    let vacuum_took = started.elapsed() - copy_took;
    let (table, indexes, shared_buffers): (String, String, String) = sqlx::query_as(
        "SELECT pg_size_pretty(pg_table_size('api_keys')), pg_size_pretty(pg_indexes_size('api_keys')), \
                current_setting('shared_buffers')",
    )
    .fetch_one(setup)
    .await
    .expect("read the size of api_keys");
    format!(
        "seeded {SEEDED_KEYS} keys: COPY {copy_took:.1?}, VACUUM (ANALYZE) {vacuum_took:.1?}; api_keys is {table} \
         and its indexes {indexes} (shared_buffers {shared_buffers})"
    )
}

// ---------------------------------------------------------------------------------------------
// Database references and counters
// ---------------------------------------------------------------------------------------------

/// The pgbench of this cluster's PostgreSQL: `PGBENCH`, else on the PATH, else the newest in
/// /usr/lib/postgresql.
fn pgbench_binary() -> String {
    if let Ok(binary) = std::env::var("PGBENCH") {
        return binary;
    }
    let on_path = std::process::Command::new("pgbench").arg("--version").output();
    if on_path.is_ok_and(|output| output.status.success()) {
        return "pgbench".into();
    }
    let mut installed: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pgbench"))
        .filter(|binary| binary.exists())
        .collect();
    installed.sort();
    installed
        .pop()
        .map(|binary| binary.display().to_string())
        .expect("pgbench: set PGBENCH, put it on the PATH or install PostgreSQL's client tools")
}

fn pgbench_command(args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(pgbench_binary())
        .args(args)
        .output()
        .expect("run pgbench");
    assert!(
        output.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Fills pgbench's scratch database (scale 1), which `main` creates and drops.
fn pgbench_init(url: &str) {
    pgbench_command(&["-i", "-q", "-s", "1", url]);
}

/// Transactions per second of `pgbench <mode>` with CONCURRENCY connections for as long as a
/// phase (warm-up included; pgbench has none).
async fn pgbench(url: &str, mode: &'static str) -> Measured {
    let seconds = (WARMUP + PHASE).as_secs().to_string();
    let clients = CONCURRENCY.to_string();
    let url = url.to_owned();
    let output =
        tokio::task::spawn_blocking(move || pgbench_command(&[mode, "-c", &clients, "-j", "2", "-T", &seconds, &url]))
            .await
            .expect("pgbench's thread panicked");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let per_second = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {stdout}"));
    let name = match mode {
        "-S" => PGBENCH_SELECT,
        _ => PGBENCH_NO_UPDATES,
    };
    eprintln!("{name}: {per_second:.0}/s");
    Measured {
        name,
        per_second,
        operations: (per_second * (WARMUP + PHASE).as_secs_f64()) as u64,
    }
}

/// Index and sequential scans of `api_keys` so far.
async fn key_table_reads(pool: &PgPool) -> i64 {
    // Statistics are flushed lazily: give the last phase's time to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query_scalar(
        "SELECT (COALESCE(idx_scan, 0) + COALESCE(seq_scan, 0))::bigint FROM pg_stat_user_tables WHERE relname = 'api_keys'",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(-1)
}

/// What the statistics collector has counted of the bench database's key lookups and writes.
#[derive(Clone, Copy, sqlx::FromRow)]
struct Activity {
    /// Scans of the token hash index: lookups by hash (other reads of `api_keys`, such as the
    /// usage writer's `last_used_at` updates, go by id).
    lookups_by_hash: i64,
    key_updates: i64,
    /// Of those, updates that changed no index (heap-only tuples).
    key_hot_updates: i64,
    /// Rows inserted into or updated in `verification_counts`.
    count_writes: i64,
}

impl Activity {
    /// The counts so far. A connection's statistics arrive when it closes (or within a second
    /// while it works, ten seconds once idle): read them after closing the pools that did the work.
    async fn now(pool: &PgPool) -> Self {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sqlx::query_as(
            "SELECT (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'api_keys_token_hash_key') \
                    AS lookups_by_hash, k.n_tup_upd AS key_updates, k.n_tup_hot_upd AS key_hot_updates, \
                    c.n_tup_ins + c.n_tup_upd AS count_writes \
             FROM pg_stat_user_tables k, pg_stat_user_tables c \
             WHERE k.relname = 'api_keys' AND c.relname = 'verification_counts'",
        )
        .fetch_one(pool)
        .await
        .expect("read the statistics of api_keys and verification_counts")
    }

    /// What happened since `self`, per operation of `measured` (which ran since).
    async fn per_operation(self, pool: &PgPool, measured: &Measured) -> String {
        let now = Activity::now(pool).await;
        let per = |before: i64, after: i64| (after - before) as f64 / measured.operations.max(1) as f64;
        format!(
            "{}: per verification, {:.2} lookups by token hash, {:.2} updates of api_keys ({:.2} heap-only), \
             {:.2} rows written to verification_counts",
            measured.name,
            per(self.lookups_by_hash, now.lookups_by_hash),
            per(self.key_updates, now.key_updates),
            per(self.key_hot_updates, now.key_hot_updates),
            per(self.count_writes, now.count_writes),
        )
    }
}

/// Rows per table, except the verification counts (which a verification is meant to add to).
async fn row_counts(pool: &PgPool) -> Vec<(String, i64)> {
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

/// CPU time so far, in clock ticks: this process's (/proc/self/stat), and the machine's idle
/// and total (/proc/stat).
#[derive(Clone, Copy)]
struct CpuTimes {
    process: u64,
    idle: u64,
    total: u64,
}

impl CpuTimes {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
        // After the command name: state (field 3), ... utime (14), stime (15).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let machine = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
        // user nice system idle iowait irq softirq steal (guest time is counted in user)
        let cpu: Vec<u64> = machine
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .map_or(Vec::new(), |rest| {
                rest.split_whitespace().take(8).filter_map(|f| f.parse().ok()).collect()
            });
        let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
        CpuTimes {
            process: tick(11) + tick(12),
            idle: at(3) + at(4),
            total: cpu.iter().sum(),
        }
    }

    /// How the machine's CPU was spent since `self`. The two sources count differently (a
    /// process that sleeps often can be counted busier than the machine finds itself), so the
    /// shares are approximate and "the rest" is what neither this process nor idle took.
    fn spent_since(self, name: &str) -> String {
        let now = CpuTimes::now();
        let total = (now.total - self.total).max(1) as f64;
        let process = 100.0 * (now.process - self.process) as f64 / total;
        let idle = 100.0 * (now.idle - self.idle) as f64 / total;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!(
            "{name}: CPU of the {cores} cores: {process:.0}% this process (keyward and the bench's clients), \
             {:.0}% the rest (PostgreSQL, pgbench when it runs), {idle:.0}% idle",
            (100.0 - process - idle).max(0.0)
        )
    }
}

/// What the bench database's backends are doing, sampled every 20 ms while a phase runs.
struct WaitSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(u64, Vec<(String, i64)>)>,
}

impl WaitSampler {
    /// Backends of this database that are not idle, by what they wait on: "running" (on a CPU or
    /// ready to be), "in a transaction, waiting for keyward", or a wait event.
    const SAMPLE: &'static str =
        "SELECT CASE WHEN state = 'idle in transaction' THEN 'in a transaction, waiting for keyward' \
        WHEN wait_event IS NULL THEN 'running' ELSE wait_event_type || ':' || wait_event END, count(*)::bigint \
        FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
        AND backend_type = 'client backend' AND state <> 'idle' GROUP BY 1";

    async fn start(url: &str) -> Self {
        let mut conn = PgConnection::connect(url).await.expect("connect the wait sampler");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut rounds = 0;
            let mut seen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                let sample: Vec<(String, i64)> = sqlx::query_as(Self::SAMPLE)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
                rounds += 1;
                for (state, backends) in sample {
                    *seen.entry(state).or_default() += backends;
                }
            }
            let mut seen: Vec<_> = seen.into_iter().collect();
            seen.sort_by_key(|(_, backends)| std::cmp::Reverse(*backends));
            (rounds, seen)
        });
        WaitSampler { stop, task }
    }

    async fn finish(self, name: &str) -> String {
        let _ = self.stop.send(());
        let (rounds, seen) = self.task.await.expect("the wait sampler panicked");
        let busy: i64 = seen.iter().map(|(_, n)| n).sum();
        if busy == 0 {
            return format!("{name}: no database backend was busy");
        }
        let states: Vec<String> = seen
            .iter()
            .take(5)
            .map(|(state, n)| format!("{:.0}% {state}", 100.0 * *n as f64 / busy.max(1) as f64))
            .collect();
        format!(
            "{name}: database backends busy {:.1} on average, of their time: {}",
            busy as f64 / rounds.max(1) as f64,
            states.join(", ")
        )
    }
}

/// Runs `phase` and notes where its time went: the machine's CPU, and (given the database's URL)
/// what that database's backends were doing.
async fn observed<T>(report: &mut Report, name: &str, database: Option<&str>, phase: impl Future<Output = T>) -> T {
    let sampler = match database {
        Some(url) => Some(WaitSampler::start(url).await),
        None => None,
    };
    let cpu = CpuTimes::now();
    let result = phase.await;
    report.note(cpu.spent_since(name));
    if let Some(sampler) = sampler {
        report.note(sampler.finish(name).await);
    }
    result
}

/// This process's resident memory (VmRSS), in KiB: the replicas, the bench's clients, the
/// runtime and the allocator's free lists alike.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("/proc/self/status has VmRSS in kB")
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

struct Latencies {
    name: String,
    samples: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Latencies {
    fn of(name: &str, mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "{name}: no samples");
        samples.sort_unstable();
        // Nearest rank.
        let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
        Latencies {
            name: name.to_owned(),
            samples: samples.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// Figures compared with a reference other than `/healthz` and `SELECT 1`: (figure, reference).
const COMPARED: [(&str, &str); 5] = [
    (UNIFORM, HEALTHZ),
    (COLD, PGBENCH_SELECT),
    (CREATE, PGBENCH_NO_UPDATES),
    (CREATE_SPREAD, PGBENCH_NO_UPDATES),
    (COLD, SELECT_1),
];

#[derive(Default)]
struct Report {
    rates: Vec<Measured>,
    latencies: Vec<Latencies>,
    /// VmRSS in KiB at the named moments of the million-key phase.
    memory: Vec<(&'static str, u64)>,
    notes: Vec<String>,
}

impl Report {
    fn push(&mut self, measured: Measured) {
        self.rates.push(measured);
    }

    fn rate(&self, name: &str) -> f64 {
        self.rates
            .iter()
            .find(|m| m.name == name)
            .map_or(f64::NAN, |m| m.per_second)
    }

    fn latency(&mut self, name: &str, samples: Vec<Duration>) {
        let latencies = Latencies::of(name, samples);
        eprintln!(
            "{name}: p50 {:.2?}, p99 {:.2?}, max {:.2?}",
            latencies.p50, latencies.p99, latencies.max
        );
        self.latencies.push(latencies);
    }

    fn memory(&mut self, moment: &'static str, kib: u64) {
        eprintln!("VmRSS {moment}: {:.1} MiB", kib as f64 / 1024.0);
        self.memory.push((moment, kib));
    }

    fn note(&mut self, note: String) {
        eprintln!("{note}");
        self.notes.push(note);
    }

    /// Resident memory per seeded key: from the replica's start (fingerprints loaded) to every
    /// key cached, and for the fingerprints, from seeding to the start.
    fn memory_per_key(&self) -> Option<(f64, f64)> {
        let at = |moment: &str| {
            self.memory
                .iter()
                .find(|(m, _)| m.starts_with(moment))
                .map(|(_, kib)| *kib as f64)
        };
        let per_key = |from: f64, to: f64| (to - from) * 1024.0 / SEEDED_KEYS as f64;
        let (seeded, started, cached) = (at("after seeding")?, at("replica started")?, at("every key cached")?);
        Some((per_key(started, cached), per_key(seeded, started)))
    }

    fn print(&self) {
        let healthz = self.rate(HEALTHZ);
        let select = self.rate(SELECT_1);
        println!(
            "{:<44} {:>12} {:>12} {:>12}",
            "operation", "per second", "÷ /healthz", "÷ SELECT 1"
        );
        for m in &self.rates {
            println!(
                "{:<44} {:>12.0} {:>12.3} {:>12.3}",
                m.name,
                m.per_second,
                m.per_second / healthz,
                m.per_second / select
            );
        }
        println!();
        println!("{:<44} {:<20} {:>12}", "figure", "reference", "ratio");
        for (figure, reference) in COMPARED {
            println!(
                "{figure:<44} {reference:<20} {:>12.3}",
                self.rate(figure) / self.rate(reference)
            );
        }
        println!();
        println!("{:<64} {:>9} {:>9} {:>9} {:>7}", "latency", "p50", "p99", "max", "n");
        for l in &self.latencies {
            println!(
                "{:<64} {:>9.2?} {:>9.2?} {:>9.2?} {:>7}",
                l.name, l.p50, l.p99, l.max, l.samples
            );
        }
        println!();
        for (moment, kib) in &self.memory {
            println!("VmRSS {moment:<56} {:>9.1} MiB", *kib as f64 / 1024.0);
        }
        if let Some((cached, fingerprints)) = self.memory_per_key() {
            println!(
                "resident memory per cached key: {cached:.0} bytes; per key's fingerprints: {fingerprints:.0} bytes"
            );
        }
        println!();
        for note in &self.notes {
            println!("{note}");
        }
        self.write_json();
    }

    fn write_json(&self) {
        let healthz = self.rate(HEALTHZ);
        let select = self.rate(SELECT_1);
        let rates: Vec<Value> = self
            .rates
            .iter()
            .map(|m| {
                json!({"operation": m.name, "per_second": m.per_second,
                       "ratio_to_healthz": m.per_second / healthz, "ratio_to_select1": m.per_second / select})
            })
            .collect();
        let compared: Vec<Value> = COMPARED
            .iter()
            .map(|(figure, reference)| {
                json!({"figure": figure, "reference": reference, "ratio": self.rate(figure) / self.rate(reference)})
            })
            .collect();
        let latencies: Vec<Value> = self
            .latencies
            .iter()
            .map(|l| {
                json!({"name": l.name, "samples": l.samples, "p50_us": l.p50.as_micros(),
                       "p99_us": l.p99.as_micros(), "max_us": l.max.as_micros()})
            })
            .collect();
        let memory: Vec<Value> = self
            .memory
            .iter()
            .map(|(moment, kib)| json!({"moment": moment, "vm_rss_kib": kib}))
            .collect();
        let json = json!({"rates": rates, "compared": compared, "latencies": latencies,
                          "memory": memory, "notes": self.notes});
        let _ = std::fs::create_dir_all("target/bench");
        let _ = std::fs::write(
            "target/bench/verify.json",
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        );
        println!(
            "(written to target/bench/verify.json; {CONCURRENCY} concurrent clients, {PHASE:?} per phase after {WARMUP:?})"
        );
    }
}
