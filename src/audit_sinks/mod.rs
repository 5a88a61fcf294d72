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
use crate::repo;

/// Events sent to a sink in one batch (one chain's, in order).
const BATCH: i64 = 500;

/// How long a replica's lease on a sink lasts without being renewed.
const LEASE: Duration = Duration::from_secs(30);

/// Longest wait between attempts at a sink that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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

/// A configured sink, by kind.
pub enum Sink {
    Syslog(syslog::Syslog),
    Https(https::Https),
}

impl Sink {
    /// The sink's name: the key of its cursors, so that it stays put across restarts.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Syslog(_) => "syslog",
            Sink::Https(_) => "webhook",
        }
    }

    async fn deliver(
        &mut self,
        events: &[crate::domain::audit::AuditEvent],
        clock: &Clock,
    ) -> Result<(), DeliveryError> {
        match self {
            Sink::Syslog(sink) => sink.deliver(events).await,
            Sink::Https(sink) => sink.deliver(events, clock.now().timestamp()).await,
        }
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
        sinks.push(Sink::Syslog(syslog::Syslog::new(target)));
    }
    if let Some(url) = webhook {
        let secret = settings
            .webhook_secret
            .clone()
            .ok_or("KEYWARD_AUDIT_WEBHOOK_URL is set without KEYWARD_AUDIT_WEBHOOK_SECRET")?;
        let sink = https::Https::new(&url, secret, tls).map_err(|e| format!("KEYWARD_AUDIT_WEBHOOK_URL: {e}"))?;
        sinks.push(Sink::Https(sink));
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
/// each such chain one batch, advancing its cursor after each accepted batch.
pub async fn deliver_round(pool: &PgPool, sink: &mut Sink, holder: Uuid, clock: &Clock) -> Result<Round, RoundError> {
    let name = sink.name();
    let lease = LEASE.as_secs_f64();
    // Read first: an idle sink costs no write.
    let pending = {
        let mut conn = pool.acquire().await?;
        repo::sinks::pending(&mut conn, name).await?
    };
    if pending.is_empty() || !repo::sinks::claim(pool, name, holder, lease).await? {
        return Ok(Round::Idle);
    }
    let mut delivered = 0;
    for chain in pending {
        let events = repo::audit::chain_page(pool, chain.tenant, chain.after, BATCH).await?;
        let Some(last) = events.last().map(|e| e.id) else {
            continue;
        };
        sink.deliver(&events, clock).await?;
        if !repo::sinks::advance(pool, name, chain.tenant, last, holder, lease).await? {
            return Err(RoundError::LeaseLost);
        }
        delivered += events.len();
    }
    Ok(if delivered > 0 {
        Round::Delivered(delivered)
    } else {
        Round::Idle
    })
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
