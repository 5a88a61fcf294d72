//! Settings, from flags or `KEYWARD_*` / `DATABASE_URL` environment variables.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. postgres://user:pass@127.0.0.1:5432/keyward
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_secret)]
    pub database_url: SecretString,
    /// Largest number of pooled database connections.
    #[arg(long, env = "KEYWARD_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
}

#[derive(clap::Args, Clone, Debug)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Address to listen on.
    #[arg(long, env = "KEYWARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Do not apply database migrations at start.
    #[arg(long, env = "KEYWARD_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
    /// How often coalesced `last_used_at` updates and verify-failure audit events are written (ms).
    #[arg(long, env = "KEYWARD_USAGE_FLUSH_MS", default_value_t = 1000)]
    pub usage_flush_ms: u64,
}

impl ServeConfig {
    pub fn usage_flush_interval(&self) -> Duration {
        Duration::from_millis(self.usage_flush_ms.max(10))
    }
}

fn parse_secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text.to_owned()))
}
