//! Streaming the audit trail to where auditors already look: every event is delivered, at least
//! once and in order per chain, to each configured sink (syslog over TCP or TLS, an HTTPS
//! endpoint taking signed NDJSON batches).
//!
//! The trail is the durable queue: events are written in the transaction of their change, and
//! each sink keeps a cursor per chain in PostgreSQL (`repo::sinks`), advanced only once the sink
//! took the events. A sink that is down gets everything once it is back, across restarts. Each
//! sink has its own task, which holds no database connection while it talks to its receiver, so
//! one sink's outage holds up neither requests nor another sink. One replica at a time delivers
//! to a sink (a lease renewed as it goes); another takes over when that lease runs out.

pub mod https;
pub mod syslog;
pub mod tls;

use secrecy::SecretString;
use sqlx::PgPool;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::audit::AuditEvent;
use crate::domain::ids::TenantId;
use crate::repo;
use std::collections::HashMap;

/// Events sent to a sink in one batch (one chain's, in order), at most.
const BATCH: i64 = 500;

/// Bytes of JSON in one batch, at most (but one event, whatever its size): below common
/// request-body limits (nginx's default is 1 MiB).
const BATCH_BYTES: usize = 512 * 1024;

/// How long one batch may take to deliver, connecting included: well within the lease, so that
/// a replica never delivers after another took over.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);

/// How long a replica's lease on a sink lasts without being renewed.
const LEASE: Duration = Duration::from_secs(60);

/// Longest wait between attempts at a sink that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// An event with its JSON (the NDJSON line, without the newline), encoded once per batch for
/// both the size budget and the sink.
pub struct Encoded {
    pub event: AuditEvent,
    pub json: String,
}

/// Why a batch did not reach a sink. Never holds a secret: URLs are left out of HTTP errors.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Http(String),
    #[error("the receiver answered {0}")]
    Refused(u16),
}

/// The sinks' settings, as configured (`KEYWARD_AUDIT_SYSLOG`, `KEYWARD_AUDIT_WEBHOOK_*`).
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    pub syslog: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<SecretString>,
    pub ca_file: Option<PathBuf>,
    pub poll: Duration,
}

/// A configured sink: its kind, its name, and the chains it is holding back.
pub struct Sink {
    name: String,
    kind: SinkKind,
    /// Chains whose batch the receiver refused (say, as too large), retried later on their own
    /// so that they hold up no other chain.
    refused: HashMap<Option<TenantId>, Refused>,
}

enum SinkKind {
    Syslog(syslog::Syslog),
    Https(https::Https),
}

struct Refused {
    retry_at: tokio::time::Instant,
    backoff: Duration,
}

impl Sink {
    fn new(kind: SinkKind, destination: &str) -> Sink {
        let prefix = match &kind {
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Https(_) => "webhook",
        };
        // The destination names the cursors: a sink pointed elsewhere starts from the first
        // event, so a new receiver gets everything (the old sink's row is left, see
        // docs/audit.md). Hashed: a URL may hold a token.
        let digest = crate::signing::canon::hex_sha256(destination.as_bytes());
        Sink {
            name: format!("{prefix}-{}", &digest[..12]),
            kind,
            refused: HashMap::new(),
        }
    }

    /// The sink's name: its kind and a digest of its destination, the key of its cursors.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, events: &[Encoded], clock: &Clock) -> Result<(), DeliveryError> {
        let delivery = async {
            match &mut self.kind {
                SinkKind::Syslog(sink) => sink.deliver(events).await,
                SinkKind::Https(sink) => sink.deliver(events, clock.now().timestamp()).await,
            }
        };
        tokio::time::timeout(DELIVERY_DEADLINE, delivery)
            .await
            .unwrap_or(Err(DeliveryError::Timeout))
    }

    fn is_held_back(&self, chain: Option<TenantId>, now: tokio::time::Instant) -> bool {
        self.refused.get(&chain).is_some_and(|r| r.retry_at > now)
    }

    fn hold_back(&mut self, chain: Option<TenantId>) {
        let backoff = self
            .refused
            .get(&chain)
            .map_or(Duration::from_secs(1), |r| (r.backoff * 2).min(MAX_BACKOFF));
        self.refused.insert(
            chain,
            Refused {
                retry_at: tokio::time::Instant::now() + backoff,
                backoff,
            },
        );
    }
}

/// The sinks `settings` configure, or what is wrong with them.
pub fn sinks(settings: &SinkSettings) -> Result<Vec<Sink>, String> {
    let set = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let syslog = set(&settings.syslog);
    let webhook = set(&settings.webhook_url);
    if syslog.is_none() && webhook.is_none() {
        return Ok(Vec::new());
    }
    let ca_file = settings.ca_file.as_deref().filter(|p| !p.as_os_str().is_empty());
    let tls = tls::client_config(ca_file)?;
    let mut sinks = Vec::new();
    if let Some(url) = syslog {
        let target = syslog::SyslogTarget::parse(&url, &Arc::new(tls.clone()))
            .map_err(|e| format!("KEYWARD_AUDIT_SYSLOG: {e}"))?;
        let sink = syslog::Syslog::new(target);
        let destination = sink.destination();
        sinks.push(Sink::new(SinkKind::Syslog(sink), &destination));
    }
    if let Some(url) = webhook {
        let secret = settings
            .webhook_secret
            .clone()
            .ok_or("KEYWARD_AUDIT_WEBHOOK_URL is set without KEYWARD_AUDIT_WEBHOOK_SECRET")?;
        let sink = https::Https::new(&url, secret, tls).map_err(|e| format!("KEYWARD_AUDIT_WEBHOOK_URL: {e}"))?;
        sinks.push(Sink::new(SinkKind::Https(sink), &url));
    }
    Ok(sinks)
}

/// What one round at a sink did.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// Batches went out: there may be more.
    Delivered(usize),
    /// Nothing to send, or another replica holds the sink.
    Idle,
}

/// One round: find the chains with events after the sink's cursor, take the lease, then send
/// each such chain one batch, advancing its cursor after each accepted batch. A batch the
/// receiver refuses as such (a 4xx) holds back only its chain; a receiver that cannot be
/// reached ends the round.
pub async fn deliver_round(pool: &PgPool, sink: &mut Sink, holder: Uuid, clock: &Clock) -> Result<Round, RoundError> {
    let name = sink.name.clone();
    let lease = LEASE.as_secs_f64();
    // Reads first: an idle sink, or one another replica delivers to, costs no write.
    if repo::sinks::held_by_another(pool, &name, holder).await? {
        return Ok(Round::Idle);
    }
    let now = tokio::time::Instant::now();
    let pending: Vec<_> = {
        let mut conn = pool.acquire().await?;
        repo::sinks::pending(&mut conn, &name).await?
    }
    .into_iter()
    .filter(|chain| !sink.is_held_back(chain.tenant, now))
    .collect();
    if pending.is_empty() || !repo::sinks::claim(pool, &name, holder, lease).await? {
        return Ok(Round::Idle);
    }
    let mut delivered = 0;
    let mut refused = None;
    for chain in pending {
        let events = within_budget(repo::audit::chain_page(pool, chain.tenant, chain.after, BATCH).await?);
        let Some(last) = events.last().map(|e| e.event.id) else {
            continue;
        };
        match sink.deliver(&events, clock).await {
            Ok(()) => {
                sink.refused.remove(&chain.tenant);
            }
            Err(error @ DeliveryError::Refused(status)) if refused_as_such(status) => {
                tracing::warn!(sink = %name, chain = ?chain.tenant, %error, "the receiver refused a batch; that chain is retried later");
                sink.hold_back(chain.tenant);
                refused = Some(error);
                continue;
            }
            Err(error) => return Err(error.into()),
        }
        if !repo::sinks::advance(pool, &name, chain.tenant, last, holder, lease).await? {
            return Err(RoundError::LeaseLost);
        }
        delivered += events.len();
    }
    match (delivered, refused) {
        (0, Some(error)) => Err(error.into()),
        (0, None) => Ok(Round::Idle),
        (delivered, _) => Ok(Round::Delivered(delivered)),
    }
}

/// Whether a receiver's answer refuses the batch itself (too large, malformed for it), not the
/// moment (408, 429: try again) or every batch alike (5xx).
fn refused_as_such(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// The events of a batch, encoded, cut to [`BATCH_BYTES`] of JSON (at least one event).
fn within_budget(events: Vec<AuditEvent>) -> Vec<Encoded> {
    let mut bytes = 0;
    let mut batch = Vec::with_capacity(events.len());
    for event in events {
        let json = serde_json::to_string(&event).unwrap_or_default();
        bytes += json.len() + 1;
        if !batch.is_empty() && bytes > BATCH_BYTES {
            break;
        }
        batch.push(Encoded { event, json });
    }
    batch
}

#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("another replica took over the sink")]
    LeaseLost,
}

/// The running deliveries of one replica, stopped at shutdown.
pub struct Deliveries {
    pool: PgPool,
    holder: Uuid,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Deliveries {
    /// Stops the deliveries and gives up this replica's leases, so that the next replica (or
    /// this one restarted) takes over at once instead of after the lease. A batch cut off
    /// halfway is sent again: at least once.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(error) = repo::sinks::release_all(&self.pool, self.holder).await {
            tracing::debug!(%error, "could not give up the audit sinks' leases");
        }
    }
}

/// Starts one task per sink, delivering until stopped or the pool is closed: right away again
/// after a round that sent something, after `poll` when there was nothing, with a growing
/// pause while the sink or the database fails.
pub fn spawn(pool: PgPool, sinks: Vec<Sink>, poll: Duration, clock: Clock) -> Deliveries {
    let holder = Uuid::new_v4();
    let tasks = sinks
        .into_iter()
        .map(|sink| tokio::spawn(deliver_until_closed(pool.clone(), sink, holder, poll, clock.clone())))
        .collect();
    Deliveries { pool, holder, tasks }
}

async fn deliver_until_closed(pool: PgPool, mut sink: Sink, holder: Uuid, poll: Duration, clock: Clock) {
    let poll = poll.max(Duration::from_millis(10));
    let mut backoff = poll;
    let closed = pool.close_event();
    tokio::pin!(closed);
    loop {
        let round = tokio::select! {
            _ = &mut closed => return,
            round = deliver_round(&pool, &mut sink, holder, &clock) => round,
        };
        let pause = match round {
            Ok(Round::Delivered(count)) => {
                tracing::debug!(sink = sink.name(), count, "audit events delivered");
                backoff = poll;
                continue;
            }
            Ok(Round::Idle) => {
                backoff = poll;
                poll
            }
            Err(_) if pool.is_closed() => return,
            Err(error) => {
                tracing::warn!(sink = sink.name(), %error, retry_in_ms = backoff.as_millis() as u64, "could not deliver audit events");
                // Another replica may reach the receiver: let it take over meanwhile.
                let _ = repo::sinks::release(&pool, sink.name(), holder).await;
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            _ = &mut closed => return,
            _ = tokio::time::sleep(pause) => {},
        }
    }
}
