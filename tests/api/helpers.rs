//! The test harness: a real keyward server on 127.0.0.1:0 over a fresh PostgreSQL database
//! (one per test, made by `#[sqlx::test]`), driven over real HTTP.

use chrono::Duration;
use keyward::app::App;
use keyward::clock::Clock;
use keyward::config::{AppConfig, SecretsConfig, SessionConfig};
use keyward::crypto::jwt::Jwt;
use keyward::domain::audit::{Actor, ActorKind, RequestMeta};
use keyward::domain::key::ServiceTokenSpec;
use keyward::domain::permissions::{Permission, TenantScope};
use keyward::service::{Context, ContextParts};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::SocketAddr;
use tokio::sync::oneshot;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub ctx: Context,
    /// A platform service token holding every permission.
    pub admin: String,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The HS256 secret of every test server's access tokens, so tests can forge tokens.
pub const JWT_SECRET: &[u8] = b"test-secret-test-secret-test-secret!";
pub const JWT_ISSUER: &str = "keyward";
pub const JWT_AUDIENCE: &str = "keyward-api";

/// The master key of every test server, so replicas of one test share it.
pub const MASTER_KEYS: &str = "v1:dGVzdC1tYXN0ZXIta2V5LXRlc3QtbWFzdGVyLWtleSE=";

/// A password that meets the policy.
pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn spawn(pool: PgPool) -> TestApp {
        Self::spawn_configured(pool, Self::config(), |ctx| ctx).await
    }

    /// The configuration of every test server, as `keyward serve` would read it: the forgeable
    /// `JWT_SECRET`, the shared `MASTER_KEYS`, and a usage flush long enough that tests flush
    /// by hand (`flush`).
    pub fn config() -> AppConfig {
        AppConfig {
            sessions: SessionConfig {
                jwt_secret: Some(SecretString::from(std::str::from_utf8(JWT_SECRET).unwrap().to_owned())),
                jwt_private_key_file: None,
                jwt_issuer: JWT_ISSUER.into(),
                jwt_audience: JWT_AUDIENCE.into(),
            },
            sigv4_region: vec!["us-east-1".into()],
            sigv4_service: vec!["keyward".into()],
            usage_flush_ms: 3_600_000,
            // Everything else as a command that serves nothing has it (no spool).
            ..AppConfig::minimal(SecretsConfig {
                master_keys: Some(SecretString::from(MASTER_KEYS.to_owned())),
            })
        }
    }

    /// A server whose access tokens are signed and checked with `jwt` instead.
    pub async fn spawn_with_jwt(pool: PgPool, jwt: Jwt) -> TestApp {
        Self::spawn_configured(pool, Self::config(), |ctx| ctx.with_jwt(jwt)).await
    }

    /// A server whose `/v1/authorize` answers without a gateway token (`KEYWARD_AUTHORIZE_OPEN`).
    pub async fn spawn_open_gateway(pool: PgPool) -> TestApp {
        let mut config = Self::config();
        config.authorize_open = true;
        Self::spawn_configured(pool, config, |ctx| ctx).await
    }

    /// A server built from `config` by `App::build`, as `keyward serve` builds it; `customize`
    /// may then replace parts no setting reaches (e.g. the password queue).
    pub async fn spawn_configured(
        pool: PgPool,
        config: AppConfig,
        customize: impl FnOnce(Context) -> Context,
    ) -> TestApp {
        Self::spawn_on(pool, config, customize, "127.0.0.1:0").await
    }

    /// A server listening on `bind` (e.g. `[::ffff:127.0.0.1]:0`, an IPv6 socket that IPv4
    /// clients reach as IPv4-mapped addresses, as on a dual-stack listener).
    pub async fn spawn_on(
        pool: PgPool,
        config: AppConfig,
        customize: impl FnOnce(Context) -> Context,
        bind: &str,
    ) -> TestApp {
        let mut app = App::build(&config, server_pool(&pool).await, Clock::system()).unwrap();
        app.ctx = customize(app.ctx);
        let ctx = app.ctx.clone();
        let admin = issue_token(&ctx, TenantScope::Platform, &Permission::ALL).await;
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            pool,
            ctx,
            admin,
            served: Some(served),
            shutdown: Some(tx),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.ctx.clock
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, seconds: i64) {
        self.ctx.clock.advance(Duration::seconds(seconds));
    }

    /// Writes the batched verify side effects (last use, failure audit events) now.
    pub async fn flush(&self) {
        self.ctx.verify.flush().await;
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply { status, headers, body }
    }

    /// The body of `GET path` with the admin token and `Accept: accept`, which must answer 200
    /// (exports, listings saved as files).
    pub async fn text(&self, path: &str, accept: &str) -> String {
        let reply = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{path}");
        reply.text().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body)).await
    }

    /// Creates a tenant and returns its id.
    pub async fn tenant(&self, slug: &str) -> String {
        let reply = self
            .post("/v1/tenants", &self.admin, json!({"slug": slug, "name": slug}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// Creates a key in `tenant` and returns (key object, token).
    pub async fn key(&self, tenant: &str, body: Value) -> (Value, String) {
        let reply = self
            .post(&format!("/v1/tenants/{tenant}/keys"), &self.admin, body)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let token = reply.body["token"].as_str().unwrap().to_owned();
        (reply.body["key"].clone(), token)
    }

    /// Issues a service token directly (as the CLI does) and returns it.
    pub async fn service_token(&self, tenant: Option<&str>, permissions: &[Permission]) -> String {
        let scope = match tenant {
            Some(id) => TenantScope::Tenant(keyward::domain::ids::TenantId::parse(id).unwrap()),
            None => TenantScope::Platform,
        };
        issue_token(&self.ctx, scope, permissions).await
    }

    /// Verifies `key` with the admin token and returns the answer's body.
    pub async fn verify(&self, key: &str, scopes: &[&str]) -> Value {
        self.verify_as(&self.admin, key, scopes).await
    }

    pub async fn verify_as(&self, verifier: &str, key: &str, scopes: &[&str]) -> Value {
        let reply = self
            .post("/v1/verify", verifier, json!({"key": key, "scopes": scopes}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body
    }

    /// Creates a user with `PASSWORD` directly (as the CLI does) and returns its id.
    pub async fn user(&self, email: &str, platform_admin: bool) -> String {
        let actor = Actor {
            kind: ActorKind::System,
            id: "test".into(),
        };
        let password = secrecy::SecretString::from(PASSWORD.to_owned());
        let user = keyward::service::accounts::create_user(&self.ctx, &actor, email, &password, platform_admin)
            .await
            .unwrap();
        user.id.to_string()
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    /// Logs in and returns the access token.
    pub async fn access_token(&self, email: &str) -> String {
        let reply = self.login(email, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Invites `email` into `tenant` with `role`, accepts the invitation, logs in; returns
    /// (user id, access token).
    pub async fn member(&self, tenant: &str, email: &str, role: &str) -> (String, String) {
        let invited = self
            .post(
                &format!("/v1/tenants/{tenant}/members"),
                &self.admin,
                json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
        let invite = invited.body["invite_token"].as_str().unwrap();
        let accepted = self
            .call(
                Method::POST,
                "/v1/auth/accept-invite",
                None,
                Some(json!({"token": invite, "password": PASSWORD})),
            )
            .await;
        assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
        let user_id = accepted.body["user_id"].as_str().unwrap().to_owned();
        (user_id, self.access_token(email).await)
    }

    /// `POST /v1/tenants/{tenant}/members` as `by`.
    pub async fn invite(&self, tenant: &str, by: &str, email: &str, role: &str) -> Reply {
        self.post(
            &format!("/v1/tenants/{tenant}/members"),
            by,
            json!({"email": email, "role": role}),
        )
        .await
    }

    /// `POST /v1/auth/accept-invite` with `token`, a password when given, and `as_user`'s
    /// access token when given.
    pub async fn accept_invite(&self, token: &str, password: Option<&str>, as_user: Option<&str>) -> Reply {
        let body = match password {
            Some(password) => json!({"token": token, "password": password}),
            None => json!({"token": token}),
        };
        self.call(Method::POST, "/v1/auth/accept-invite", as_user, Some(body))
            .await
    }

    /// The keyward binary, set to use this test's database as the server role (the owner's URL
    /// in `KEYWARD_MIGRATION_DATABASE_URL`) and the tests' secrets.
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .env("DATABASE_URL", self.server_database_url())
            .env("KEYWARD_MIGRATION_DATABASE_URL", self.database_url())
            .env("KEYWARD_JWT_SECRET", std::str::from_utf8(JWT_SECRET).unwrap())
            .env("KEYWARD_MASTER_KEYS", MASTER_KEYS);
        command
    }

    /// The URL of this test's database for the server role (`SERVER_ROLE`).
    pub fn server_database_url(&self) -> String {
        server_database_url(&self.pool)
    }

    /// The URL of this test's own database as its owner (for pg_dump and the CLI).
    pub fn database_url(&self) -> String {
        database_url(&self.pool)
    }
}

/// The URL of `pool`'s database as the tests' role (its owner: for pg_dump and the CLI).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let database = pool.connect_options().get_database().unwrap_or("postgres").to_owned();
    let (before_query, query) = match base.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let scheme_end = before_query.find("://").map_or(0, |i| i + 3);
    let root = match before_query[scheme_end..].find('/') {
        Some(i) => &before_query[..scheme_end + i],
        None => &before_query,
    };
    format!("{root}/{database}{query}")
}

/// The URL of `pool`'s database as `SERVER_ROLE`.
pub fn server_database_url(pool: &PgPool) -> String {
    let owner = database_url(pool);
    let (scheme, rest) = owner.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{SERVER_ROLE}:{SERVER_ROLE_PASSWORD}@{host}")
}

impl TestApp {
    /// Shuts the server down as `keyward serve` does on SIGTERM, and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn issue_token(ctx: &Context, scope: TenantScope, permissions: &[Permission]) -> String {
    let spec = ServiceTokenSpec {
        name: "test".into(),
        permissions: permissions.to_vec(),
        expires_at: None,
    };
    let actor = Actor {
        kind: ActorKind::System,
        id: "test".into(),
    };
    let issued = keyward::service::keys::issue_service_token(ctx, &actor, &RequestMeta::default(), scope, spec)
        .await
        .unwrap();
    issued.token.expose().to_owned()
}

/// The role every test server connects as: the two-role setup of `keyward serve` with
/// `KEYWARD_MIGRATION_DATABASE_URL`, where the test's own role (which ran the migrations) owns
/// the tables and the server may only read and append to the audit trail.
pub const SERVER_ROLE: &str = "keyward_test_server";
const SERVER_ROLE_PASSWORD: &str = "keyward-test-server";

/// A pool like `pool` (its limits, timeouts and options) as `SERVER_ROLE`, granted what
/// `keyward serve` grants it. It closes when `pool` closes: at the end of a `sqlx::test`, so
/// that dropping the test's database does not wait for its connections, and when a test
/// closes `pool` to take the database away.
pub async fn server_pool(pool: &PgPool) -> PgPool {
    let server = pool
        .options()
        .clone()
        .connect_with(server_options(pool).await)
        .await
        .unwrap();
    let closed = pool.close_event();
    let closing = server.clone();
    tokio::spawn(async move {
        closed.await;
        closing.close().await;
    });
    server
}

/// How to connect to the test's database as `SERVER_ROLE`, granted what `keyward serve`
/// grants it.
pub async fn server_options(pool: &PgPool) -> sqlx::postgres::PgConnectOptions {
    ensure_role(pool, SERVER_ROLE, SERVER_ROLE_PASSWORD, "").await;
    sqlx::query("SELECT keyward_grant_server_role($1::regrole, current_schema())")
        .bind(SERVER_ROLE)
        .execute(pool)
        .await
        .unwrap();
    (*pool.connect_options())
        .clone()
        .username(SERVER_ROLE)
        .password(SERVER_ROLE_PASSWORD)
}

/// Makes the login role `name` with `attributes` (e.g. `SUPERUSER`) unless the cluster has it:
/// roles belong to the cluster, so whichever test comes first makes it.
pub async fn ensure_role(pool: &PgPool, name: &str, password: &str, attributes: &str) {
    sqlx::query(&format!(
        "DO $$ BEGIN CREATE ROLE {name} LOGIN {attributes} PASSWORD '{password}'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ))
    .execute(pool)
    .await
    .unwrap();
}

/// A server with an audit key, and a tenant whose chain has its `tenant.created` and three
/// `key.created` events under a signed checkpoint and two `key.created` after it.
pub async fn signed_trail(pool: PgPool) -> (TestApp, String) {
    let key = std::sync::Arc::new(
        keyward::crypto::audit_key::AuditKey::from_pem(&keyward::crypto::audit_key::AuditKey::generate_pem()).unwrap(),
    );
    let app = TestApp::spawn_configured(pool, TestApp::config(), move |ctx| {
        ContextParts {
            audit_key: Some(key),
            ..ctx.into_parts()
        }
        .into()
    })
    .await;
    let tenant = app.tenant("acme").await;
    for name in ["one", "two", "three"] {
        app.key(&tenant, serde_json::json!({"name": name})).await;
    }
    keyward::service::audit::sign_checkpoints(&app.ctx).await.unwrap();
    for name in ["four", "five"] {
        app.key(&tenant, serde_json::json!({"name": name})).await;
    }
    (app, tenant)
}

/// A TCP port on 127.0.0.1 nothing listens on right now, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where PostgreSQL's client programs (pg_dump) are.
pub fn pg_program(name: &str) -> std::path::PathBuf {
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<_> = dirs.flatten().map(|d| d.path().join("bin").join(name)).collect();
        versions.sort();
        if let Some(found) = versions.into_iter().rev().find(|p| p.exists()) {
            return found;
        }
    }
    std::path::PathBuf::from(name)
}

/// A pool of the test's own database made by `keyward::db::connect_with`, as `keyward serve`
/// makes its pool (a test server made from it connects as `SERVER_ROLE` with its options), with this statement timeout and this `application_name` (to find its
/// backends in `pg_stat_activity`). Close it before the test ends.
pub async fn own_pool(pool: &PgPool, application_name: &str, statement_timeout_ms: u64) -> PgPool {
    let database = keyward::config::DatabaseConfig {
        database_url: SecretString::from("unused: the test's own options".to_owned()),
        migration_database_url: None,
        db_max_connections: 5,
        db_statement_timeout_ms: statement_timeout_ms,
    };
    let options = (*pool.connect_options()).clone().application_name(application_name);
    keyward::db::connect_with(options, &database).await.unwrap()
}

/// A `keyward serve` process of its own, on a free port of 127.0.0.1; killed when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts `command` (the binary with its environment) as `serve --skip-migrations`, its
    /// stderr (the log) to `log`, and returns once it answers `/healthz`.
    pub async fn start(mut command: std::process::Command, log: std::process::Stdio) -> ServeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = command
            .args(["serve", "--skip-migrations"])
            .env("KEYWARD_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = ServeProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if reqwest::get(format!("{}/healthz", server.base)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("keyward serve did not start");
    }

    /// Kills the process at once (SIGKILL: nothing of it runs again) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
