//! Connecting to PostgreSQL and applying the embedded migrations.

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.expose_secret().parse()?;
    connect_with(options, config).await
}

/// The pool for `options` with the limits of `config`: no request waits on the database longer
/// than the acquire timeout plus the statement timeout (which also bounds waits for locks).
pub async fn connect_with(options: PgConnectOptions, config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let timeout = config.db_statement_timeout_ms.to_string();
    let options = options.options([
        ("statement_timeout", timeout.as_str()),
        ("lock_timeout", timeout.as_str()),
    ]);
    PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Whether `error` is PostgreSQL cancelling a statement that ran into the statement or lock
/// timeout: the database is too slow or blocked right now, the request may be retried.
pub fn is_timeout(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57014" | "55P03")),
        _ => false,
    }
}

/// Whether `error` says the database cannot be reached or used right now (connection refused,
/// reset or terminated, the pool timed out or closed, the server shutting down or full): the
/// request may succeed later, so the client is told to retry (503) rather than of a failure (500).
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Applies the migrations on one connection without the pool's statement and lock timeouts:
/// a migration may rightly take longer than any request should.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
    sqlx::query("SET lock_timeout = 0").execute(&mut *conn).await?;
    let applied = MIGRATOR.run(&mut *conn).await;
    // The connection goes back to the pool: give it the pool's limits again.
    sqlx::query("RESET statement_timeout").execute(&mut *conn).await?;
    sqlx::query("RESET lock_timeout").execute(&mut *conn).await?;
    applied
}
