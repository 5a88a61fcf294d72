//! The application, built one way from its configuration (by `serve` and by the test harness
//! alike), and run: bind, start the background work, serve until a shutdown signal, then write
//! what is still queued.

use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::background;
use crate::clock::Clock;
use crate::config::{AppConfig, TrustedProxies};
use crate::crypto::password::Passwords;
use crate::service::{Context, ContextParts};
use crate::verify;

/// A configuration `App::build` refuses, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("access tokens: {0}")]
    Sessions(String),
    #[error("KEYWARD_MASTER_KEYS: {0}")]
    MasterKeys(String),
    #[error("KEYWARD_AUDIT_SIGNING_KEY_FILE: {0}")]
    AuditKey(String),
    #[error("audit sinks: {0}")]
    AuditSinks(String),
}

/// The built application: the context every use case runs in, and the background work that
/// `serve` starts.
pub struct App {
    pub ctx: Context,
    tasks: verify::Tasks,
    usage_flush: Duration,
    spool_dir: Option<std::path::PathBuf>,
    limits: crate::http::server::Limits,
    sinks: Vec<crate::audit_sinks::Sink>,
    sink_poll: Duration,
}

impl App {
    /// Wires the configuration into a context. Starts nothing: commands that only need the
    /// context (the CLI's) use it as is; `serve` starts the background work.
    pub fn build(config: &AppConfig, pool: PgPool, clock: Clock) -> Result<App, ConfigError> {
        let (engine, tasks) = verify::Engine::new(verify::Settings {
            sigv4: config.sigv4_accept(),
            open_gateway: config.authorize_open,
            cache_keys: config.cache_keys,
            stale_max: Duration::from_secs(config.stale_max),
        });
        let jwt = config.sessions.jwt().map_err(ConfigError::Sessions)?;
        let master_keys = config.secrets.master_keys().map_err(ConfigError::MasterKeys)?;
        let audit_key = config.audit_key().map_err(ConfigError::AuditKey)?;
        let sink_settings = config.audit_sinks();
        let sinks = crate::audit_sinks::sinks(&sink_settings).map_err(ConfigError::AuditSinks)?;
        let ctx: Context = ContextParts {
            pool,
            clock,
            verify: engine,
            passwords: Passwords::default(),
            jwt: jwt.map(Arc::new),
            master_keys: master_keys.map(Arc::new),
            audit_key: audit_key.map(Arc::new),
            trusted_proxies: Arc::new(TrustedProxies::new(config.trusted_proxies.clone())),
            stored_audit_keys: Arc::default(),
            metrics: Arc::default(),
        }
        .into();
        Ok(App {
            ctx,
            tasks,
            usage_flush: config.usage_flush_interval(),
            spool_dir: config.spool_dir(),
            limits: config.server_limits(),
            sinks,
            sink_poll: sink_settings.poll,
        })
    }

    /// The context alone, for a command that serves nothing: the background work is dropped,
    /// so what would wait for it (a flush, a full usage queue) fails at once instead.
    pub fn into_context(self) -> Context {
        self.ctx
    }

    /// Starts the background work, serves until `shutdown` completes, then flushes the verify
    /// side effects so none are lost.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let ctx = self.ctx;
        if ctx.jwt.is_none() {
            tracing::warn!("no KEYWARD_JWT_SECRET or KEYWARD_JWT_PRIVATE_KEY_FILE: user logins are disabled");
        }
        if ctx.master_keys.is_none() {
            tracing::warn!("no KEYWARD_MASTER_KEYS: keys cannot be issued with signing secrets");
        }
        self.tasks
            .start(ctx.pool.clone(), self.usage_flush, ctx.clock.clone(), self.spool_dir)
            .await;
        background::spawn_pruner(ctx.pool.clone(), ctx.clock.clone());
        background::spawn_checkpointer(ctx.clone());
        let deliveries = crate::audit_sinks::spawn(ctx.pool.clone(), self.sinks, self.sink_poll, ctx.clock.clone());
        let router = crate::http::router(ctx.clone(), self.limits);
        let served = crate::http::server::serve(listener, router, self.limits, shutdown).await;
        deliveries.stop().await;
        served?;
        ctx.verify.release_limits(&ctx.pool, ctx.clock.now()).await;
        let unwritten = ctx.verify.flush_or_spool().await;
        // The chains' heads as they end, refusal events just written included.
        if let Err(error) = crate::service::audit::sign_checkpoints(&ctx).await {
            tracing::warn!(%error, "could not sign the audit checkpoints at shutdown");
        }
        if !unwritten.is_empty() {
            // Never a clean exit having dropped them.
            tracing::error!(
                ?unwritten,
                "the database could not be reached at shutdown and nothing could be spooled: these are lost"
            );
            return Err(std::io::Error::other(format!(
                "lost at shutdown, the database being unreachable: {} verification counters, {} refusal events, {} last-use times",
                unwritten.counts, unwritten.events, unwritten.last_uses
            )));
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
