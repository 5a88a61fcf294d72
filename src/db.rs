//! Connecting to PostgreSQL and applying the embedded migrations.

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::time::Duration;

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.expose_secret().parse()?;
    // One connection first: a database that cannot be reached says why at once (refused,
    // unknown host, wrong password) instead of the pool's "timed out" five seconds later.
    let probe = tokio::time::timeout(Duration::from_secs(5), options.connect())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let _ = probe.close().await;
    connect_with(options, config).await
}

/// Where `config`'s database is, for messages: `host:port` (no user, no password).
pub fn target(config: &DatabaseConfig) -> String {
    match config.database_url.expose_secret().parse::<PgConnectOptions>() {
        Ok(options) => format!("{}:{}", options.get_host(), options.get_port()),
        Err(_) => "the database of DATABASE_URL".to_owned(),
    }
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

/// The same failure again, for each waiter of a batch that failed (`sqlx::Error` cannot be
/// cloned), keeping what decides the answer: the pool timing out (the database is away), the
/// database unreachable or too slow (503), or anything else (500).
pub fn same_kind(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        error if is_unreachable(error) || is_timeout(error) => {
            sqlx::Error::Io(std::io::Error::other(error.to_string()))
        }
        error => sqlx::Error::Protocol(error.to_string()),
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

/// Why the migrations for a server did not apply.
#[derive(Debug, thiserror::Error)]
pub enum MigrateForError {
    #[error("cannot connect as the owner role of KEYWARD_MIGRATION_DATABASE_URL: {0}")]
    ConnectOwner(sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot grant the server's role its privileges: {0}")]
    Grant(sqlx::Error),
}

/// Applies the migrations for a server connected through `server`: as the owner role of
/// `KEYWARD_MIGRATION_DATABASE_URL` when it is set (and not empty), which then grants the
/// server's role exactly what it needs (`keyward_grant_server_role`, refusing a server role that
/// is the owner, a superuser or owns a table), else as the server's own role.
pub async fn migrate_for(config: &DatabaseConfig, server: &PgPool) -> Result<(), MigrateForError> {
    let Some(url) = config
        .migration_database_url
        .as_ref()
        .filter(|url| !url.expose_secret().is_empty())
    else {
        return Ok(migrate(server).await?);
    };
    let options: PgConnectOptions = url.expose_secret().parse().map_err(MigrateForError::ConnectOwner)?;
    let owner = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(MigrateForError::ConnectOwner)?;
    let granted = async {
        migrate(&owner).await?;
        let role: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(server)
            .await
            .map_err(MigrateForError::Grant)?;
        sqlx::query("SELECT keyward_grant_server_role(quote_ident($1)::regrole, current_schema())")
            .bind(role)
            .execute(&owner)
            .await
            .map_err(MigrateForError::Grant)?;
        Ok(())
    }
    .await;
    owner.close().await;
    granted
}

/// Whether the server's role may change or remove audit events (one role for migrations and
/// serving, or a member of the owner, even one that must `SET ROLE` first): only the triggers
/// stand between a bug and the trail then.
pub async fn may_alter_audit_trail(server: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT has_table_privilege('audit_events', 'UPDATE') OR has_table_privilege('audit_events', 'DELETE') \
         OR has_table_privilege('audit_events', 'TRUNCATE') OR has_table_privilege('audit_events', 'TRIGGER') \
         OR pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = 'audit_events'::regclass), 'MEMBER')",
    )
    .fetch_one(server)
    .await
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
