//! Settings, from flags or `KEYWARD_*` / `DATABASE_URL` environment variables.

use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::jwt::Jwt;
use crate::crypto::secrets::MasterKeys;

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
    #[command(flatten)]
    pub sessions: SessionConfig,
    #[command(flatten)]
    pub secrets: SecretsConfig,
    /// SigV4 regions accepted in credential scopes (comma-separated).
    #[arg(
        long,
        env = "KEYWARD_SIGV4_REGION",
        default_value = "us-east-1",
        value_delimiter = ','
    )]
    pub sigv4_region: Vec<String>,
    /// SigV4 services accepted in credential scopes (comma-separated).
    #[arg(
        long,
        env = "KEYWARD_SIGV4_SERVICE",
        default_value = "keyward",
        value_delimiter = ','
    )]
    pub sigv4_service: Vec<String>,
    /// Addresses of reverse proxies in front of keyward (comma-separated). From these peers the
    /// client address is taken from `X-Forwarded-For`; from any other peer it is the peer itself.
    #[arg(long, env = "KEYWARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Let `/v1/authorize` answer gateways that send no `X-Keyward-Gateway-Token`.
    #[arg(long, env = "KEYWARD_AUTHORIZE_OPEN", default_value_t = false, action = clap::ArgAction::Set)]
    pub authorize_open: bool,
    /// How often coalesced `last_used_at` updates and verify-failure audit events are written (ms).
    #[arg(long, env = "KEYWARD_USAGE_FLUSH_MS", default_value_t = 1000)]
    pub usage_flush_ms: u64,
}

impl ServeConfig {
    pub fn usage_flush_interval(&self) -> Duration {
        Duration::from_millis(self.usage_flush_ms.max(10))
    }
}

/// Signing of users' access tokens. Without either setting, user logins are unavailable and
/// only service tokens authenticate.
#[derive(clap::Args, Clone, Debug)]
pub struct SessionConfig {
    /// HS256 secret for access tokens, at least 32 bytes.
    #[arg(long, env = "KEYWARD_JWT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub jwt_secret: Option<SecretString>,
    /// Ed25519 private key (PKCS#8 PEM) for EdDSA access tokens, instead of a secret.
    #[arg(long, env = "KEYWARD_JWT_PRIVATE_KEY_FILE", conflicts_with = "jwt_secret")]
    pub jwt_private_key_file: Option<PathBuf>,
    #[arg(long, env = "KEYWARD_JWT_ISSUER", default_value = "keyward")]
    pub jwt_issuer: String,
    #[arg(long, env = "KEYWARD_JWT_AUDIENCE", default_value = "keyward-api")]
    pub jwt_audience: String,
}

impl SessionConfig {
    pub fn jwt(&self) -> Result<Option<Jwt>, String> {
        // An empty variable (as `docker compose` passes an unset one) counts as unset.
        if let Some(secret) = self.jwt_secret.as_ref().filter(|s| !s.expose_secret().is_empty()) {
            return Jwt::hs256(secret.expose_secret().as_bytes(), &self.jwt_issuer, &self.jwt_audience)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        if let Some(path) = self.jwt_private_key_file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
            let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Jwt::eddsa_from_pem(&pem, &self.jwt_issuer, &self.jwt_audience)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        Ok(None)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct SecretsConfig {
    /// Master keys sealing signing secrets: `v2:<base64 32 bytes>,v1:<…>`; the first encrypts,
    /// all decrypt.
    #[arg(long, env = "KEYWARD_MASTER_KEYS", hide_env_values = true, value_parser = parse_secret)]
    pub master_keys: Option<SecretString>,
}

impl SecretsConfig {
    pub fn master_keys(&self) -> Result<Option<MasterKeys>, String> {
        self.master_keys
            .as_ref()
            .filter(|s| !s.expose_secret().is_empty())
            .map(|text| MasterKeys::parse(text).map_err(|e| e.to_string()))
            .transpose()
    }
}

fn parse_secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text.to_owned()))
}
