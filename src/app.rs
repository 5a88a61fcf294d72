//! Running the server: bind, serve until a shutdown signal, then write what is still queued.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::crypto::password::Passwords;
use crate::service::key_cache::KeyCache;
use crate::service::usage::UsageRecorder;
use crate::service::Context;

pub fn context(pool: sqlx::PgPool, clock: Clock, usage_flush: Duration) -> Context {
    let key_cache = KeyCache::default();
    key_cache.start_listener(pool.clone());
    Context {
        key_cache,
        usage: UsageRecorder::start(pool.clone(), usage_flush),
        pool,
        clock,
        passwords: Passwords::default(),
        jwt: None,
        master_keys: None,
        sigv4: Default::default(),
        authorize_open: false,
        trusted_proxies: Default::default(),
    }
}

/// Serves until `shutdown` completes, then flushes the verify side effects so none are lost.
pub async fn serve(
    listener: TcpListener,
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = crate::http::router(ctx.clone());
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    ctx.usage.flush().await;
    Ok(())
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
