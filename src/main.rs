//! The `keyward` binary: serve the API, migrate, print the OpenAPI document, administer.

use clap::{Parser, Subcommand};
use secrecy::SecretString;
use std::collections::HashMap;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use keyward::app::{App, ConfigError};
use keyward::clock::Clock;
use keyward::config::{AppConfig, DatabaseConfig, SecretsConfig, ServeConfig};
use keyward::domain::audit::{Actor, ActorKind, RequestMeta};
use keyward::domain::ids::TenantId;
use keyward::domain::key::ServiceTokenDraft;
use keyward::domain::permissions::TenantScope;
use keyward::domain::validation::ValidationErrors;
use keyward::service::Context;
use keyward::signing::client::ClientScheme;
use keyward::{app, db, service};

#[derive(Parser)]
#[command(
    name = "keyward",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BUILT_FROM_COMMIT"), ")"),
    about = "Multi-tenant API-key management"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (applies migrations first unless told not to).
    Serve(Box<ServeConfig>),
    /// Apply database migrations and exit.
    Migrate(DatabaseConfig),
    /// Print the OpenAPI document.
    Openapi,
    /// Sign a request as a client would, and print the headers to add (one `Name: value` per
    /// line). The signing secret is read from KEYWARD_SIGNING_SECRET or stdin, never from argv.
    Sign(SignArgs),
    /// Administrative commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit trail's keys and proofs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write a new Ed25519 audit key (PKCS#8 PEM, mode 0600) for KEYWARD_AUDIT_SIGNING_KEY_FILE;
    /// an existing file is never overwritten.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Check audit chains and their signed checkpoints, from the database (every chain, or
    /// --tenant / --platform) or offline from an export (--export, --checkpoints, --public-key).
    /// Names the first broken link; exits 0 only when everything holds.
    Verify(VerifyArgs),
    /// Archive the events before --before: per chain, those up to its newest checkpoint before
    /// that time, with their checkpoints, to --out (never overwritten); then remove them from the
    /// database, the checkpoint staying as the chain's anchor. Runs as the owner role
    /// (KEYWARD_MIGRATION_DATABASE_URL) when set, else as DATABASE_URL's.
    Archive(ArchiveArgs),
}

#[derive(clap::Args)]
struct ArchiveArgs {
    /// Archive what occurred before this time: RFC 3339, or a date (its midnight, UTC).
    #[arg(long, value_parser = parse_before)]
    before: chrono::DateTime<chrono::Utc>,
    /// The archive to write (NDJSON; `keyward audit verify --archive FILE` checks it).
    #[arg(long)]
    out: std::path::PathBuf,
    #[command(flatten)]
    database: DatabaseConfig,
}

fn parse_before(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time or a YYYY-MM-DD date"))
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Only this tenant's chain.
    #[arg(long, conflicts_with = "platform")]
    tenant: Option<String>,
    /// Only the platform chain.
    #[arg(long)]
    platform: bool,
    /// Offline: an NDJSON export of one chain (`Accept: application/x-ndjson`).
    #[arg(long, requires = "checkpoints", requires = "public_key")]
    export: Option<std::path::PathBuf>,
    /// Offline: an archive `keyward audit archive` wrote, on its own (every chain in it).
    #[arg(long, conflicts_with_all = ["export", "checkpoints", "tenant", "platform"])]
    archive: Option<std::path::PathBuf>,
    /// Offline: that chain's checkpoints, as `GET …/audit/checkpoints` answers (or a JSON array).
    #[arg(long, requires = "export")]
    checkpoints: Option<std::path::PathBuf>,
    /// The public keys to trust: `GET /v1/audit/public-key`'s answer, or a public key PEM.
    /// Without it (database only), the keys stored in the database are used.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
    /// The database (not needed offline).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<secrecy::SecretString>,
}

#[derive(clap::Args)]
struct SignArgs {
    /// The key id (`key_…`), the public access key id.
    #[arg(long)]
    key_id: String,
    /// How to sign: keyward's HMAC headers, AWS SigV4, RFC 9421 message signatures or Arrow.
    #[arg(long, value_enum, default_value_t = SignScheme::Hmac)]
    scheme: SignScheme,
    /// The request's method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// A header to send and sign, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The request body.
    #[arg(long, short = 'd', conflicts_with = "data_file")]
    data: Option<String>,
    /// Read the request body from this file.
    #[arg(long)]
    data_file: Option<std::path::PathBuf>,
    /// SigV4 region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// SigV4 service.
    #[arg(long, default_value = "keyward")]
    service: String,
    /// Sign as of this Unix time instead of now.
    #[arg(long)]
    timestamp: Option<i64>,
    /// The absolute URL, e.g. https://api.example.com/v1/orders?page=2
    url: String,
}

/// The schemes `keyward sign` signs with.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SignScheme {
    Hmac,
    AwsSigv4,
    Rfc9421,
    Arrow,
}

/// What every administrative command connects to and runs with: the database and the master
/// keys, nothing else of `serve`'s settings (so a command still runs when those are wrong).
#[derive(clap::Args)]
struct AdminEnv {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    secrets: SecretsConfig,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Re-encrypt every signing secret under the first of KEYWARD_MASTER_KEYS (after adding a
    /// new master key in front); then older master keys can be removed.
    ResealSigningSecrets {
        #[command(flatten)]
        env: AdminEnv,
    },
    /// Disable a user: their sessions end at once and logins are refused.
    DisableUser {
        #[command(flatten)]
        env: AdminEnv,
        /// The user's email address (their login).
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again.
    EnableUser {
        #[command(flatten)]
        env: AdminEnv,
        /// The user's email address (their login).
        #[arg(long)]
        email: String,
    },
    /// Create a user. The password is read from stdin (or asked for on a terminal), never from argv.
    CreateUser {
        #[command(flatten)]
        env: AdminEnv,
        /// The user's email address (their login).
        #[arg(long)]
        email: String,
        /// May act in every tenant and review every audit trail.
        #[arg(long)]
        platform_admin: bool,
    },
    /// Create a service token and print it alone on stdout (it is shown only this once).
    CreateServiceToken {
        #[command(flatten)]
        env: AdminEnv,
        /// A platform-wide token.
        #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
        platform: bool,
        /// A token bound to this tenant (UUID).
        #[arg(long, value_parser = parse_tenant_id)]
        tenant: Option<TenantId>,
        /// Comma-separated: keys:verify, keys:read, keys:write, audit:read, tenants:admin.
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<String>,
        /// A name for the token, shown in listings and the audit trail.
        #[arg(long, default_value = "bootstrap")]
        name: String,
        /// Lifetime in seconds (default: no expiry).
        #[arg(long)]
        ttl_seconds: Option<i64>,
    },
}

fn parse_tenant_id(text: &str) -> Result<TenantId, String> {
    TenantId::parse(text).ok_or_else(|| "not a tenant id (a UUID)".to_owned())
}

/// Why a command failed; printed as `error: …` on stderr, with nothing on stdout.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot connect to the database at {0}: {1}")]
    Connect(String, sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("migration failed: {0}")]
    MigrateFor(#[from] db::MigrateForError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}")]
    Usage(&'static str),
    #[error("--header {0:?} is not `Name: value`")]
    Header(String),
    #[error("{}", describe_invalid(.0))]
    Invalid(ValidationErrors),
    #[error("{0}")]
    Service(service::Error),
    #[error("cannot sign: {0}")]
    Sign(#[from] keyward::signing::SignError),
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
    #[error("{0}: {1}")]
    Unreadable(String, String),
    #[error("the audit trail does not verify")]
    Broken,
    #[error("{}", describe_archive_error(.0))]
    Archive(#[from] service::archive::ArchiveError),
}

/// An archive error, with what to do when the role may not remove archived events.
fn describe_archive_error(error: &service::archive::ArchiveError) -> String {
    let refused = matches!(error, service::archive::ArchiveError::Database(sqlx::Error::Database(e))
        if e.code().as_deref() == Some("42501") && e.message().starts_with("permission denied"));
    if refused {
        format!("{error}: this role may not archive; run as the owner role (KEYWARD_MIGRATION_DATABASE_URL)")
    } else {
        error.to_string()
    }
}

impl From<service::Error> for CliError {
    fn from(error: service::Error) -> Self {
        match error {
            service::Error::Validation(errors) => CliError::Invalid(errors),
            other => CliError::Service(other),
        }
    }
}

fn describe_invalid(errors: &ValidationErrors) -> String {
    errors
        .0
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Logs go to stderr: as JSON lines with `KEYWARD_LOG_FORMAT=json` and by default when stderr is
/// not a terminal (a file, a pipe, a container's log driver), as text with `text` and by default
/// on a terminal; colour only on a terminal. `default_filter` applies unless `KEYWARD_LOG` is set.
fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let json = match std::env::var("KEYWARD_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        Ok(other) => {
            eprintln!("KEYWARD_LOG_FORMAT must be `json` or `text`, not {other:?}; logging as JSON");
            true
        }
        Err(_) => !terminal,
    };
    let filter = EnvFilter::try_from_env("KEYWARD_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal && !json);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// Settings read from the environment outside the command line's own arguments, and those of
/// the development scripts (`scripts/dev-db.sh`, the drills), which a shell may well export.
const OTHER_SETTINGS: [&str; 6] = [
    "KEYWARD_LOG",
    "KEYWARD_LOG_FORMAT",
    "KEYWARD_SIGNING_SECRET",
    "KEYWARD_DEV_PG_PORT",
    "KEYWARD_PG_BIN",
    "KEYWARD_BIN",
];

/// `KEYWARD_*` variables that name no setting, by name only (never a value): a typo must not
/// fall back to a default without a word.
fn unknown_settings() -> Vec<String> {
    fn settings_of(command: &clap::Command, known: &mut std::collections::HashSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                known.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            settings_of(sub, known);
        }
    }
    let mut known: std::collections::HashSet<String> = OTHER_SETTINGS.iter().map(|s| s.to_string()).collect();
    settings_of(&<Cli as clap::CommandFactory>::command(), &mut known);
    let mut unknown: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("KEYWARD_") && !known.contains(name))
        .collect();
    unknown.sort();
    unknown
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; a command run by hand says only what went wrong (its answer
    // is on stdout). PostgreSQL's notices (`relation "_sqlx_migrations" already exists`) are noise.
    init_logging(match cli.command {
        Command::Serve(_) => "info,sqlx::postgres::notice=warn",
        _ => "warn",
    });
    for name in unknown_settings() {
        tracing::warn!(variable = %name, "{name} names no setting of keyward and is ignored (a typo?)");
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Openapi => {
            print!("{}", keyward::openapi_json());
            Ok(())
        }
        Command::Migrate(database) => {
            let pool = connect(&database).await?;
            db::migrate_for(&database, &pool).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Serve(config) => serve(*config).await,
        Command::Sign(args) => sign(args),
        Command::Audit(AuditCommand::Keygen { out }) => audit_keygen(&out),
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(args).await,
        Command::Audit(AuditCommand::Archive(args)) => audit_archive(args).await,
        Command::Admin(AdminCommand::ResealSigningSecrets { env }) => {
            let ctx = admin_context(&env).await?;
            if ctx.master_keys.is_none() {
                return Err(CliError::Usage("set KEYWARD_MASTER_KEYS"));
            }
            let count = service::keys::reseal_signing_secrets(&ctx).await?;
            eprintln!("re-sealed {count} signing secrets");
            Ok(())
        }
        Command::Admin(AdminCommand::DisableUser { env, email }) => set_disabled(env, &email, true).await,
        Command::Admin(AdminCommand::EnableUser { env, email }) => set_disabled(env, &email, false).await,
        Command::Admin(AdminCommand::CreateUser {
            env,
            email,
            platform_admin,
        }) => {
            let password = read_secret("password")?;
            let ctx = admin_context(&env).await?;
            let user = service::accounts::create_user(&ctx, &cli_actor(), &email, &password, platform_admin).await?;
            eprintln!("created user {} ({})", user.email, user.id);
            println!("{}", user.id);
            Ok(())
        }
        Command::Admin(AdminCommand::CreateServiceToken {
            env,
            platform,
            tenant,
            permissions,
            name,
            ttl_seconds,
        }) => {
            let owner = match (platform, tenant) {
                (true, _) => TenantScope::Platform,
                (false, Some(tenant)) => TenantScope::Tenant(tenant),
                (false, None) => return Err(CliError::Usage("give --platform or --tenant <id>")),
            };
            let ctx = admin_context(&env).await?;
            let draft = ServiceTokenDraft {
                name,
                permissions,
                expires_at: None,
                ttl_seconds,
            };
            let spec = draft.validate(ctx.clock.now()).map_err(CliError::Invalid)?;
            let issued =
                service::keys::issue_service_token(&ctx, &cli_actor(), &RequestMeta::default(), owner, spec).await?;
            eprintln!(
                "created service token {} with permissions {} (shown once; store it now)",
                issued.key.id,
                issued.key.grants.names().join(",")
            );
            println!("{}", issued.token.expose());
            Ok(())
        }
    }
}

/// The context of an administrative command: connected and migrated, nothing started.
async fn admin_context(env: &AdminEnv) -> Result<Context, CliError> {
    let pool = connect(&env.database).await?;
    db::migrate_for(&env.database, &pool).await?;
    let config = AppConfig::minimal(env.secrets.clone());
    Ok(App::build(&config, pool, Clock::system())?.into_context())
}

/// What checking one chain found, with the chain's name.
type ChainResult = (
    String,
    Result<keyward::domain::audit_check::Checked, keyward::domain::audit_check::Broken>,
);

/// `keyward audit verify`: prints one line per chain, `ok …` or what broke.
async fn audit_verify(args: VerifyArgs) -> Result<(), CliError> {
    let keys = args.public_key.as_deref().map(read_public_keys).transpose()?;
    let results = match (&args.archive, &args.export) {
        (Some(archive), _) => verify_archive(archive, keys.as_ref())?,
        (None, Some(export)) => verify_export(&args, export, keys.unwrap_or_default())?,
        (None, None) => verify_stored(&args, keys.as_ref()).await?,
    };
    let mut broken = false;
    for (chain, result) in results {
        match result {
            Ok(checked) => println!(
                "ok: chain {chain}: {} events, {} checkpoints{}",
                checked.events,
                checked.checkpoints,
                checked
                    .signed_up_to
                    .map_or_else(String::new, |id| format!(", signed up to event {id}"))
            ),
            Err(what) => {
                broken = true;
                println!("broken: chain {chain}: {what}");
            }
        }
    }
    if broken {
        return Err(CliError::Broken);
    }
    Ok(())
}

/// The chain `--tenant` or `--platform` names: `None` when neither is given, `Some(None)` for
/// the platform's.
fn chain_asked(args: &VerifyArgs) -> Result<Option<Option<TenantId>>, CliError> {
    match (&args.tenant, args.platform) {
        (Some(tenant), _) => Ok(Some(Some(
            TenantId::parse(tenant).ok_or(CliError::Usage("--tenant is not a tenant id"))?,
        ))),
        (None, true) => Ok(Some(None)),
        (None, false) => Ok(None),
    }
}

fn chain_name(tenant: Option<TenantId>) -> String {
    tenant.map_or("platform".to_owned(), |t| t.to_string())
}

/// Offline: one chain from an export, its checkpoints and the trusted keys. The chain is the
/// one asked for, else the first event's; every event and checkpoint must be of it.
fn verify_export(
    args: &VerifyArgs,
    export: &std::path::Path,
    keys: HashMap<String, Vec<u8>>,
) -> Result<Vec<ChainResult>, CliError> {
    let checkpoints = args
        .checkpoints
        .as_deref()
        .map(read_checkpoints)
        .transpose()?
        .unwrap_or_default();
    let events = read_export(export)?;
    let expected = chain_asked(args)?.unwrap_or_else(|| events.first().and_then(|e| e.tenant_id));
    let chain = chain_name(expected);
    let stray_event = events
        .iter()
        .find(|e| e.tenant_id != expected)
        .map(|e| format!("event {}", e.id));
    let stray = stray_event.or_else(|| {
        checkpoints
            .iter()
            .find(|c| c.tenant_id != expected)
            .map(|c| format!("checkpoint {}", c.id))
    });
    if let Some(stray) = stray {
        println!("broken: chain {chain}: {stray} belongs to another chain");
        return Err(CliError::Broken);
    }
    // An export of a chain archived before starts after its anchor: the checkpoint whose hash
    // the first event's prev_hash names.
    let anchor = events.first().and_then(|first| {
        let prev_hash = first.prev_hash.as_ref()?;
        checkpoints
            .iter()
            .find(|c| &c.hash == prev_hash && c.event_id < first.id)
            .map(|c| c.id)
    });
    let checked = keyward::domain::audit_check::check_chain_from(
        events,
        &checkpoints,
        anchor,
        &keys,
        keyward::crypto::audit_key::verifies,
        chrono::Utc::now(),
    );
    Ok(vec![(chain, checked)])
}

/// From the database: the chain asked for, or every chain.
async fn verify_stored(
    args: &VerifyArgs,
    keys: Option<&HashMap<String, Vec<u8>>>,
) -> Result<Vec<ChainResult>, CliError> {
    let Some(url) = args.database_url.clone() else {
        return Err(CliError::Usage(
            "set DATABASE_URL, or give --export, --checkpoints and --public-key",
        ));
    };
    let database = tool_database(url);
    let config = AppConfig::minimal(SecretsConfig { master_keys: None });
    let ctx = App::build(&config, connect(&database).await?, Clock::system())?.into_context();
    let chains = match chain_asked(args)? {
        Some(chain) => vec![chain],
        None => service::audit::chains(&ctx).await?,
    };
    if keys.is_none() {
        eprintln!("note: checking signatures with the public keys stored in the database; pass --public-key to check with the one you trust");
    }
    let mut results = Vec::new();
    for tenant in chains {
        let checked = service::audit::check_stored_chain(&ctx, tenant, keys).await?;
        results.push((chain_name(tenant), checked));
    }
    Ok(results)
}

fn read_text(path: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::Read(path.display().to_string(), e))
}

fn unreadable(path: &std::path::Path, why: impl std::fmt::Display) -> CliError {
    CliError::Unreadable(path.display().to_string(), why.to_string())
}

/// Events of an NDJSON export, in file order.
fn read_export(path: &std::path::Path) -> Result<Vec<keyward::domain::audit::AuditEvent>, CliError> {
    read_text(path)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| unreadable(path, format!("line {}: {e}", n + 1))))
        .collect()
}

/// Checkpoints as the listing answers (`{"items": […]}`), a JSON array, or NDJSON.
fn read_checkpoints(path: &std::path::Path) -> Result<Vec<keyward::domain::audit::Checkpoint>, CliError> {
    let text = read_text(path)?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(_) => serde_json::Value::Array(
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .map_err(|e| unreadable(path, e))?,
        ),
    };
    let items = match value {
        serde_json::Value::Object(mut page) => page.remove("items").unwrap_or_default(),
        other => other,
    };
    serde_json::from_value(items).map_err(|e| unreadable(path, e))
}

/// Public keys by id: `/v1/audit/public-key`'s answer, or one public key PEM.
fn read_public_keys(path: &std::path::Path) -> Result<HashMap<String, Vec<u8>>, CliError> {
    let text = read_text(path)?;
    if let Ok(served) = serde_json::from_str::<serde_json::Value>(&text) {
        let keys = served["keys"].as_array().cloned().unwrap_or_default();
        return keys
            .iter()
            .map(|key| {
                // The id is what the key gives, whatever the file says.
                let raw: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap_or_default())
                    .ok()
                    .and_then(|raw| raw.try_into().ok())
                    .ok_or_else(|| unreadable(path, "a public_key is not 32 bytes of hex"))?;
                Ok((keyward::crypto::audit_key::key_id_of(&raw), raw.to_vec()))
            })
            .collect();
    }
    let raw = keyward::crypto::audit_key::public_key_from_pem(&text)
        .ok_or_else(|| unreadable(path, "not a public key PEM"))?;
    Ok(HashMap::from([(
        keyward::crypto::audit_key::key_id_of(&raw),
        raw.to_vec(),
    )]))
}

/// Writes a new audit key to `out`, readable by its owner only; refuses to replace a file.
/// The database of a command that reads whole chains: a small pool, no statement timeout.
fn tool_database(url: SecretString) -> DatabaseConfig {
    DatabaseConfig {
        database_url: url,
        migration_database_url: None,
        db_max_connections: 2,
        db_statement_timeout_ms: 0,
    }
}

/// Offline: every chain of an archive, on its own.
fn verify_archive(
    path: &std::path::Path,
    keys: Option<&HashMap<String, Vec<u8>>>,
) -> Result<Vec<ChainResult>, CliError> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| CliError::Read(path.display().to_string(), e))?;
    let results = keyward::domain::audit_archive::check_archive(
        std::io::BufReader::new(file).lines(),
        keys,
        keyward::crypto::audit_key::key_id_of,
        keyward::crypto::audit_key::verifies,
    )
    .map_err(|e| unreadable(path, e))?;
    Ok(results
        .into_iter()
        .map(|(tenant, checked)| (chain_name(tenant), checked))
        .collect())
}

/// `keyward audit archive`: writes the archive (and syncs it to disk), then removes what it
/// holds; nothing is removed unless the whole archive was written.
async fn audit_archive(args: ArchiveArgs) -> Result<(), CliError> {
    use secrecy::ExposeSecret;
    let url = args
        .database
        .migration_database_url
        .clone()
        .filter(|url| !url.expose_secret().is_empty())
        .unwrap_or_else(|| args.database.database_url.clone());
    let database = tool_database(url);
    let config = AppConfig::minimal(SecretsConfig { master_keys: None });
    let ctx = App::build(&config, connect(&database).await?, Clock::system())?.into_context();
    let out = &args.out;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(out)
        .map_err(|e| CliError::Write(out.display().to_string(), e))?;
    let mut writer = std::io::BufWriter::new(file);
    let written = service::archive::write_archive(&ctx, args.before, &mut writer).await?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all())
        .map_err(|e| CliError::Write(out.display().to_string(), e))?;
    let removed = service::archive::remove_archived(&ctx, &written).await?;
    eprintln!(
        "archived {} events of {} chains to {}, and removed {removed} from the database",
        written.events,
        written.anchors.len(),
        out.display()
    );
    Ok(())
}

fn audit_keygen(out: &std::path::Path) -> Result<(), CliError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(out)
        .and_then(|mut file| file.write_all(keyward::crypto::audit_key::AuditKey::generate_pem().as_bytes()));
    written.map_err(|e| CliError::Write(out.display().to_string(), e))?;
    eprintln!("wrote a new audit key to {}", out.display());
    Ok(())
}

fn sign(args: SignArgs) -> Result<(), CliError> {
    use keyward::signing::client::{self, Outgoing};
    use secrecy::ExposeSecret;
    let secret = match std::env::var("KEYWARD_SIGNING_SECRET") {
        Ok(secret) => SecretString::from(secret),
        Err(_) => read_secret("signing secret")?,
    };
    if secret.expose_secret().is_empty() {
        return Err(CliError::Usage(
            "the signing secret is empty: set KEYWARD_SIGNING_SECRET or pass the secret on stdin",
        ));
    }
    let body = match (&args.data, &args.data_file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path).map_err(|e| CliError::Read(path.display().to_string(), e))?,
        (None, None) => Vec::new(),
    };
    let mut headers = Vec::new();
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| CliError::Header(header.clone()))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let scheme = match args.scheme {
        SignScheme::AwsSigv4 => ClientScheme::AwsSigV4 {
            region: args.region,
            service: args.service,
        },
        SignScheme::Rfc9421 => ClientScheme::Rfc9421,
        SignScheme::Arrow => ClientScheme::Arrow,
        SignScheme::Hmac => ClientScheme::Hmac,
    };
    let time = match args.timestamp {
        Some(secs) => {
            chrono::DateTime::from_timestamp(secs, 0).ok_or(CliError::Usage("--timestamp is out of range"))?
        }
        None => chrono::Utc::now(),
    };
    let outgoing = Outgoing {
        method: &args.method,
        url: &args.url,
        headers,
        body,
    };
    let added = client::sign(
        &outgoing,
        &scheme,
        &args.key_id,
        secret.expose_secret().as_bytes(),
        time,
    )?;
    for (name, value) in added {
        println!("{name}: {value}");
    }
    Ok(())
}

async fn set_disabled(env: AdminEnv, email: &str, disabled: bool) -> Result<(), CliError> {
    let ctx = admin_context(&env).await?;
    let user = service::accounts::set_user_disabled(&ctx, &cli_actor(), email, disabled).await?;
    eprintln!("{} {}", if disabled { "disabled" } else { "enabled" }, user.email);
    Ok(())
}

fn cli_actor() -> Actor {
    Actor {
        kind: ActorKind::System,
        id: "cli".into(),
    }
}

/// A secret (`what`: "password", "signing secret") from a terminal prompt (not echoed) or the
/// first line of stdin.
fn read_secret(what: &str) -> Result<SecretString, CliError> {
    use std::io::IsTerminal;
    let text = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{what}: ")).map_err(|e| CliError::Read(format!("the {what}"), e))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::Read(format!("the {what} from stdin"), e))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(SecretString::from(text))
}

async fn connect(database: &DatabaseConfig) -> Result<sqlx::PgPool, CliError> {
    db::connect(database)
        .await
        .map_err(|error| CliError::Connect(db::target(database), error))
}

/// Binds the listening socket with a backlog for bursts of new connections (tokio's default is
/// 128; the kernel caps it at `net.core.somaxconn`).
fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    const BACKLOG: u32 = 4096;
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Raises the soft limit on open files to the hard one, since every connection holds a file,
/// and warns when even that leaves too little room for `max_connections` (accepting beyond the
/// limit fails, and the connection waits in the kernel's backlog instead of being closed).
fn raise_open_file_limit(max_connections: usize) {
    const SPARE: u64 = 256; // database connections, log and spool files, the listener
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < max_connections as u64 + SPARE => tracing::warn!(
            open_files = limit,
            max_connections,
            "the open-file limit leaves too little room for KEYWARD_MAX_CONNECTIONS: raise it (ulimit -n, LimitNOFILE=) or lower the cap"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not read or raise the open-file limit"),
    }
}

async fn serve(config: ServeConfig) -> Result<(), CliError> {
    let pool = connect(&config.database).await?;
    if !config.skip_migrations {
        db::migrate_for(&config.database, &pool).await?;
        tracing::info!("migrations applied");
    }
    let target = || db::target(&config.database);
    if db::may_alter_audit_trail(&pool)
        .await
        .map_err(|error| CliError::Connect(target(), error))?
    {
        tracing::warn!(
            "the database role of DATABASE_URL may change or remove audit events: run the server as a role \
             that may only read and append to them (KEYWARD_MIGRATION_DATABASE_URL, docs/audit.md)"
        );
    }
    // A wrong setting stops here, before anything listens.
    let app = App::build(&config.app, pool, Clock::system())?;
    raise_open_file_limit(config.app.max_connections);
    let listener = listen(config.listen).map_err(|e| CliError::Listen(config.listen, e))?;
    tracing::info!(listen = %config.listen, "keyward serving");
    // Said once the server is up, where a first run's build output cannot bury it.
    match keyward::repo::keys::any_credential(&app.ctx.pool).await {
        Ok(false) => tracing::info!(
            "no service token or user exists yet: make the first with `keyward admin create-service-token --platform \
             --name bootstrap --permissions tenants:admin,keys:read,keys:write,keys:verify,audit:read` (or `keyward \
             admin create-user --email you@example.com --platform-admin`), with DATABASE_URL as for serve"
        ),
        Ok(true) => {}
        Err(error) => tracing::warn!(%error, "could not check whether any credential exists"),
    }
    app.serve(listener, app::shutdown_signal())
        .await
        .map_err(CliError::Serve)
}
