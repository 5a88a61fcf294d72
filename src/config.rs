//! Settings, from flags or `KEYWARD_*` / `DATABASE_URL` environment variables.

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::jwt::Jwt;
use crate::crypto::secrets::MasterKeys;
use crate::signing::sigv4::Accept;

#[derive(clap::Args, Clone, Debug)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. postgres://user:pass@127.0.0.1:5432/keyward
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_secret)]
    pub database_url: SecretString,
    /// The owner role's URL, for the two-role setup (docs/audit.md, "Least privilege"): the
    /// migrations run as this role, which then grants `DATABASE_URL`'s role what the server
    /// needs and no more (on the audit tables SELECT and INSERT only). Unset: one role does both.
    #[arg(long, env = "KEYWARD_MIGRATION_DATABASE_URL", hide_env_values = true, value_parser = parse_secret)]
    pub migration_database_url: Option<SecretString>,
    /// Largest number of pooled database connections.
    #[arg(long, env = "KEYWARD_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
    /// Longest a statement, or a wait for a lock, may take (ms) before it is cancelled and the
    /// request answered 503; 0 = no limit.
    #[arg(long, env = "KEYWARD_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub db_statement_timeout_ms: u64,
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
    pub app: AppConfig,
}

/// Everything `App::build` turns into the running application, apart from the database.
#[derive(clap::Args, Clone, Debug)]
pub struct AppConfig {
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
    /// Reverse proxies in front of keyward (comma-separated addresses or CIDR networks, e.g.
    /// `10.0.0.0/8`). From these peers the client address is taken from `X-Forwarded-For`; from
    /// any other peer it is the peer itself.
    #[arg(long, env = "KEYWARD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<IpNet>,
    /// Let `/v1/authorize` answer gateways that send no `X-Keyward-Gateway-Token`.
    #[arg(long, env = "KEYWARD_AUTHORIZE_OPEN", default_value_t = false, action = clap::ArgAction::Set)]
    pub authorize_open: bool,
    /// How often coalesced `last_used_at` updates and verify-failure audit events are written (ms).
    #[arg(long, env = "KEYWARD_USAGE_FLUSH_MS", default_value_t = 1000)]
    pub usage_flush_ms: u64,
    /// How many keys each replica keeps in memory (by token hash, and as many signing keys by
    /// id); the least used go first when full.
    #[arg(long, env = "KEYWARD_CACHE_KEYS", default_value_t = 100_000)]
    pub cache_keys: usize,
    /// While the database cannot be reached, keys and callers confirmed within this many
    /// seconds keep answering from memory (nobody can revoke then); 0: never.
    #[arg(long, env = "KEYWARD_STALE_MAX", default_value_t = 60)]
    pub stale_max: u64,
    /// A client that has not sent its request headers within this many milliseconds is cut off.
    #[arg(long, env = "KEYWARD_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// After its first request, a connection on which no byte moves for this many milliseconds
    /// is cut off: idle between requests, or stalled sending a response its client stopped
    /// reading. A request being handled is bounded by the request timeout instead.
    #[arg(long, env = "KEYWARD_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Connections open at once; beyond it new ones are closed at once.
    #[arg(long, env = "KEYWARD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections open at once from one address.
    #[arg(long, env = "KEYWARD_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1_000)]
    pub max_connections_per_address: usize,
    /// Requests handled at once; beyond it requests get 503 with Retry-After at once.
    #[arg(long, env = "KEYWARD_MAX_IN_FLIGHT", default_value_t = 1_024)]
    pub max_in_flight: usize,
    /// Requests handled at once for one client (its address behind trusted proxies; IPv6 by
    /// /64); beyond it that client's requests get 503 with Retry-After at once.
    #[arg(long, env = "KEYWARD_MAX_IN_FLIGHT_PER_CLIENT", default_value_t = 256)]
    pub max_in_flight_per_client: usize,
    /// On shutdown, how many milliseconds in-flight requests get to finish before what is left
    /// is cut off.
    #[arg(long, env = "KEYWARD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Where verification counts and refusal events that could not be written at shutdown (the
    /// database unreachable) are kept for the next start; empty: nowhere (serve then exits
    /// non-zero naming what it lost).
    #[arg(long, env = "KEYWARD_SPOOL_DIR", default_value = ".data/spool")]
    pub spool_dir: String,
    /// Ed25519 private key (PKCS#8 PEM) signing the audit chains' checkpoints; without it no
    /// checkpoints are signed. `keyward audit keygen --out FILE` makes one.
    #[arg(long, env = "KEYWARD_AUDIT_SIGNING_KEY_FILE")]
    pub audit_signing_key_file: Option<PathBuf>,
    /// Audit sink: syslog over TCP, `tcp://HOST:PORT`, or over TLS, `tls://HOST:PORT`; every
    /// event one RFC 5424 message (octet-counted), its MSG the event's JSON.
    #[arg(long, env = "KEYWARD_AUDIT_SYSLOG")]
    pub audit_syslog: Option<String>,
    /// Audit sink: an `https://` URL receiving NDJSON batches of events, signed with
    /// `KEYWARD_AUDIT_WEBHOOK_SECRET` (`Keyward-Signature: t=…,v1=…`).
    #[arg(long, env = "KEYWARD_AUDIT_WEBHOOK_URL", hide_env_values = true)]
    pub audit_webhook_url: Option<String>,
    /// The secret signing the batches of `KEYWARD_AUDIT_WEBHOOK_URL` (at least 32 characters).
    #[arg(long, env = "KEYWARD_AUDIT_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub audit_webhook_secret: Option<SecretString>,
    /// PEM certificates to trust, besides the public roots, for the sinks' TLS (an internal CA).
    #[arg(long, env = "KEYWARD_AUDIT_SINK_CA_FILE")]
    pub audit_sink_ca_file: Option<PathBuf>,
    /// How often an idle sink looks for new events (ms).
    #[arg(long, env = "KEYWARD_AUDIT_SINK_POLL_MS", default_value_t = 1000)]
    pub audit_sink_poll_ms: u64,
}

impl AppConfig {
    /// What a command runs with that serves nothing (the admin commands, the benchmark):
    /// these master keys and no other setting, whatever the environment says; nothing a server
    /// needs has to be configured.
    pub fn minimal(secrets: SecretsConfig) -> Self {
        AppConfig {
            sessions: SessionConfig {
                jwt_secret: None,
                jwt_private_key_file: None,
                jwt_issuer: String::new(),
                jwt_audience: String::new(),
            },
            secrets,
            sigv4_region: Vec::new(),
            sigv4_service: Vec::new(),
            trusted_proxies: Vec::new(),
            authorize_open: false,
            usage_flush_ms: 1000,
            cache_keys: 100_000,
            stale_max: 60,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            max_in_flight: 1_024,
            max_in_flight_per_client: 256,
            shutdown_grace_ms: 10_000,
            spool_dir: String::new(),
            audit_signing_key_file: None,
            audit_syslog: None,
            audit_webhook_url: None,
            audit_webhook_secret: None,
            audit_sink_ca_file: None,
            audit_sink_poll_ms: 1000,
        }
    }

    /// The audit key, read from `audit_signing_key_file` (`None` when unset or empty).
    pub fn audit_key(&self) -> Result<Option<crate::crypto::audit_key::AuditKey>, String> {
        let Some(path) = self
            .audit_signing_key_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        else {
            return Ok(None);
        };
        let pem = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        crate::crypto::audit_key::AuditKey::from_pem(&pem)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The audit sinks' settings.
    pub fn audit_sinks(&self) -> crate::audit_sinks::SinkSettings {
        crate::audit_sinks::SinkSettings {
            syslog: self.audit_syslog.clone(),
            webhook_url: self.audit_webhook_url.clone(),
            webhook_secret: self.audit_webhook_secret.clone(),
            ca_file: self.audit_sink_ca_file.clone(),
            poll: Duration::from_millis(self.audit_sink_poll_ms),
        }
    }

    pub fn spool_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self.spool_dir.trim();
        (!dir.is_empty()).then(|| std::path::PathBuf::from(dir))
    }

    /// How the server treats connections and requests in flight.
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address.max(1),
            max_in_flight: self.max_in_flight.max(1),
            max_in_flight_per_client: self.max_in_flight_per_client.max(1),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }

    pub fn usage_flush_interval(&self) -> Duration {
        Duration::from_millis(self.usage_flush_ms.max(10))
    }

    pub fn sigv4_accept(&self) -> Accept {
        let regions: Vec<&str> = self.sigv4_region.iter().map(|s| s.trim()).collect();
        let services: Vec<&str> = self.sigv4_service.iter().map(|s| s.trim()).collect();
        Accept::new(&regions, &services)
    }
}

/// Reverse proxies whose `X-Forwarded-For` names the client.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks)
    }

    /// Whether `address` (IPv4-mapped IPv6 counts as the IPv4 it carries) is a trusted proxy.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }
}

/// A network (`10.0.0.0/8`) or a single address (`10.0.0.2`, `::1`). A network with host bits
/// set (`10.0.0.5/8`, likely meant as one address) and one that holds every address are
/// refused; an IPv4-mapped IPv6 network is the IPv4 network it maps, as peers are compared.
fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address.to_canonical()));
    }
    let network = text
        .parse::<IpNet>()
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR network"))?;
    if network.trunc() != network {
        return Err(format!(
            "{text:?} has host bits set: give the address alone or the network it is in ({})",
            network.trunc()
        ));
    }
    if network.prefix_len() == 0 {
        return Err(format!(
            "{text:?} holds every address: any client could choose its own address"
        ));
    }
    match network {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .map_err(|_| format!("{text:?} is not a network")),
            _ => Ok(network),
        },
        IpNet::V4(_) => Ok(network),
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
    /// The `iss` of access tokens issued, and the only one accepted.
    #[arg(long, env = "KEYWARD_JWT_ISSUER", default_value = "keyward")]
    pub jwt_issuer: String,
    /// The `aud` of access tokens issued, and the only one accepted.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_network_trusts_every_address_in_it() {
        let proxies = TrustedProxies::new(vec![parse_network("10.0.0.0/8").unwrap()]);

        assert!(proxies.trusts("10.20.30.40".parse().unwrap()));
        assert!(!proxies.trusts("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_bare_address_trusts_that_address_alone() {
        let proxies = TrustedProxies::new(vec![parse_network("10.0.0.2").unwrap()]);

        assert!(proxies.trusts("10.0.0.2".parse().unwrap()));
        assert!(!proxies.trusts("10.0.0.3".parse().unwrap()));
    }

    #[test]
    fn an_ipv4_mapped_peer_is_trusted_as_its_ipv4_address() {
        let proxies = TrustedProxies::new(vec![parse_network("127.0.0.1").unwrap()]);

        assert!(proxies.trusts("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_network_with_host_bits_or_holding_every_address_is_refused() {
        assert_eq!(
            parse_network("10.0.0.5/8").unwrap_err(),
            "\"10.0.0.5/8\" has host bits set: give the address alone or the network it is in (10.0.0.0/8)"
        );
        assert!(parse_network("0.0.0.0/0").is_err());
        assert!(parse_network("::/0").is_err());
    }

    #[test]
    fn an_ipv4_mapped_network_trusts_the_ipv4_addresses_it_maps() {
        let proxies = TrustedProxies::new(vec![parse_network("::ffff:10.0.0.0/104").unwrap()]);

        assert!(proxies.trusts("10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!proxies.trusts("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_network_that_is_not_one_is_refused_by_name() {
        assert_eq!(
            parse_network("10.0.0.0/33").unwrap_err(),
            "\"10.0.0.0/33\" is neither an IP address nor a CIDR network"
        );
    }
}

/// How the server treats connections and requests in flight (see `http::server`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_in_flight: usize,
    pub max_in_flight_per_client: usize,
    pub shutdown_grace: Duration,
}
