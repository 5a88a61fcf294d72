//! The `keyward` binary: serve the API, migrate, print the OpenAPI document, administer.

use clap::{Parser, Subcommand};
use secrecy::SecretString;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use keyward::clock::Clock;
use keyward::config::{DatabaseConfig, ServeConfig};
use keyward::domain::audit::{Actor, ActorKind, RequestMeta};
use keyward::domain::ids::TenantId;
use keyward::domain::key::ServiceTokenDraft;
use keyward::domain::permissions::TenantScope;
use keyward::{app, db, service};

#[derive(Parser)]
#[command(name = "keyward", version, about = "Multi-tenant API-key management")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (applies migrations first unless told not to).
    Serve(ServeConfig),
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
}

#[derive(clap::Args)]
struct SignArgs {
    /// The key id (`key_…`), the public access key id.
    #[arg(long)]
    key_id: String,
    #[arg(long, default_value = "hmac", value_parser = ["hmac", "aws-sigv4", "rfc9421", "arrow"])]
    scheme: String,
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

#[derive(Subcommand)]
enum AdminCommand {
    /// Re-encrypt every signing secret under the first of KEYWARD_MASTER_KEYS (after adding a
    /// new master key in front); then older master keys can be removed.
    ResealSigningSecrets {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        secrets: keyward::config::SecretsConfig,
    },
    /// Disable a user: their sessions end at once and logins are refused.
    DisableUser {
        #[command(flatten)]
        database: DatabaseConfig,
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again.
    EnableUser {
        #[command(flatten)]
        database: DatabaseConfig,
        #[arg(long)]
        email: String,
    },
    /// Create a user. The password is read from stdin (or asked for on a terminal), never from argv.
    CreateUser {
        #[command(flatten)]
        database: DatabaseConfig,
        #[arg(long)]
        email: String,
        /// May act in every tenant and review every audit trail.
        #[arg(long)]
        platform_admin: bool,
    },
    /// Create a service token and print it alone on stdout (it is shown only this once).
    CreateServiceToken {
        #[command(flatten)]
        database: DatabaseConfig,
        /// A platform-wide token.
        #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
        platform: bool,
        /// A token bound to this tenant (UUID).
        #[arg(long)]
        tenant: Option<String>,
        /// Comma-separated: keys:verify, keys:read, keys:write, audit:read, tenants:admin.
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<String>,
        #[arg(long, default_value = "bootstrap")]
        name: String,
        /// Lifetime in seconds (default: no expiry).
        #[arg(long)]
        ttl_seconds: Option<i64>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("KEYWARD_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Openapi => {
            print!("{}", keyward::openapi_json());
            Ok(())
        }
        Command::Migrate(database) => {
            let pool = connect(&database).await?;
            db::migrate(&pool).await.map_err(|e| format!("migration failed: {e}"))?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Serve(config) => serve(config).await,
        Command::Sign(args) => sign(args),
        Command::Admin(AdminCommand::ResealSigningSecrets { database, secrets }) => {
            let keys = secrets.master_keys()?.ok_or("set KEYWARD_MASTER_KEYS")?;
            let pool = connect(&database).await?;
            db::migrate(&pool).await.map_err(|e| format!("migration failed: {e}"))?;
            let ctx = app::context(pool, Clock::system(), std::time::Duration::from_secs(1)).with_master_keys(keys);
            let count = service::keys::reseal_signing_secrets(&ctx).await.map_err(describe)?;
            eprintln!("re-sealed {count} signing secrets");
            Ok(())
        }
        Command::Admin(AdminCommand::DisableUser { database, email }) => set_disabled(database, &email, true).await,
        Command::Admin(AdminCommand::EnableUser { database, email }) => set_disabled(database, &email, false).await,
        Command::Admin(AdminCommand::CreateUser {
            database,
            email,
            platform_admin,
        }) => {
            let password = read_password()?;
            let pool = connect(&database).await?;
            db::migrate(&pool).await.map_err(|e| format!("migration failed: {e}"))?;
            let ctx = app::context(pool, Clock::system(), std::time::Duration::from_secs(1));
            let user = service::accounts::create_user(&ctx, &cli_actor(), &email, &password, platform_admin)
                .await
                .map_err(describe)?;
            eprintln!("created user {} ({})", user.email, user.id);
            println!("{}", user.id);
            Ok(())
        }
        Command::Admin(AdminCommand::CreateServiceToken {
            database,
            platform,
            tenant,
            permissions,
            name,
            ttl_seconds,
        }) => {
            let owner = match (platform, tenant) {
                (true, _) => TenantScope::Platform,
                (false, Some(text)) => TenantScope::Tenant(
                    TenantId::parse(&text).ok_or_else(|| format!("--tenant {text:?} is not a UUID"))?,
                ),
                (false, None) => return Err("give --platform or --tenant <id>".into()),
            };
            let pool = connect(&database).await?;
            db::migrate(&pool).await.map_err(|e| format!("migration failed: {e}"))?;
            let ctx = app::context(pool, Clock::system(), std::time::Duration::from_secs(1));
            let draft = ServiceTokenDraft {
                name,
                permissions,
                expires_at: None,
                ttl_seconds,
            };
            let spec = draft.validate(ctx.clock.now()).map_err(|errors| {
                errors
                    .0
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
            let actor = Actor {
                kind: ActorKind::System,
                id: "cli".into(),
            };
            let issued = service::keys::issue_service_token(&ctx, &actor, &RequestMeta::default(), owner, spec)
                .await
                .map_err(|e| match e {
                    service::Error::NotFound(what) => format!("{what} not found"),
                    other => other.to_string(),
                })?;
            eprintln!(
                "created service token {} with permissions {} (shown once; store it now)",
                issued.key.id,
                issued.key.scopes.join(",")
            );
            println!("{}", issued.token.expose());
            Ok(())
        }
    }
}

fn sign(args: SignArgs) -> Result<(), String> {
    use keyward::signing::client::{self, ClientScheme, Outgoing};
    use secrecy::ExposeSecret;
    let secret = match std::env::var("KEYWARD_SIGNING_SECRET") {
        Ok(secret) => SecretString::from(secret),
        Err(_) => read_password()?,
    };
    let body = match (&args.data, &args.data_file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, None) => Vec::new(),
    };
    let mut headers = Vec::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header {header:?} is not `Name: value`"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let scheme = match args.scheme.as_str() {
        "aws-sigv4" => ClientScheme::AwsSigV4 {
            region: args.region,
            service: args.service,
        },
        "rfc9421" => ClientScheme::Rfc9421,
        "arrow" => ClientScheme::Arrow,
        _ => ClientScheme::Hmac,
    };
    let time = match args.timestamp {
        Some(secs) => chrono::DateTime::from_timestamp(secs, 0).ok_or("--timestamp is out of range")?,
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
    )
    .map_err(|e| e.to_string())?;
    for (name, value) in added {
        println!("{name}: {value}");
    }
    Ok(())
}

async fn set_disabled(database: DatabaseConfig, email: &str, disabled: bool) -> Result<(), String> {
    let pool = connect(&database).await?;
    db::migrate(&pool).await.map_err(|e| format!("migration failed: {e}"))?;
    let ctx = app::context(pool, Clock::system(), std::time::Duration::from_secs(1));
    let user = service::accounts::set_user_disabled(&ctx, &cli_actor(), email, disabled)
        .await
        .map_err(describe)?;
    eprintln!("{} {}", if disabled { "disabled" } else { "enabled" }, user.email);
    Ok(())
}

fn cli_actor() -> Actor {
    Actor {
        kind: ActorKind::System,
        id: "cli".into(),
    }
}

fn describe(error: service::Error) -> String {
    match error {
        service::Error::Validation(errors) => errors
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        service::Error::NotFound(what) => format!("{what} not found"),
        other => other.to_string(),
    }
}

/// The password from a terminal prompt (not echoed) or the first line of stdin.
fn read_password() -> Result<SecretString, String> {
    use std::io::IsTerminal;
    let text = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ").map_err(|e| format!("cannot read the password: {e}"))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(SecretString::from(text))
}

async fn connect(database: &DatabaseConfig) -> Result<sqlx::PgPool, String> {
    db::connect(database)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))
}

async fn serve(config: ServeConfig) -> Result<(), String> {
    let pool = connect(&config.database).await?;
    if !config.skip_migrations {
        db::migrate(&pool).await.map_err(|e| format!("migration failed: {e}"))?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(listen = %config.listen, "keyward serving");
    let mut ctx = app::context(pool, Clock::system(), config.usage_flush_interval());
    match config.sessions.jwt()? {
        Some(jwt) => ctx = ctx.with_jwt(jwt),
        None => tracing::warn!("no KEYWARD_JWT_SECRET or KEYWARD_JWT_PRIVATE_KEY_FILE: user logins are disabled"),
    }
    let regions: Vec<&str> = config.sigv4_region.iter().map(|s| s.trim()).collect();
    let services: Vec<&str> = config.sigv4_service.iter().map(|s| s.trim()).collect();
    ctx = ctx.with_sigv4(keyward::signing::sigv4::Accept::new(&regions, &services));
    ctx.authorize_open = config.authorize_open;
    ctx.trusted_proxies = std::sync::Arc::new(config.trusted_proxies.clone());
    match config.secrets.master_keys()? {
        Some(keys) => ctx = ctx.with_master_keys(keys),
        None => tracing::warn!("no KEYWARD_MASTER_KEYS: keys cannot be issued with signing secrets"),
    }
    app::serve(listener, ctx, app::shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))
}
