//! The change-notification protocol that keeps every replica's verify cache honest.
//!
//! A use case that changes a key or a tenant in a way verification must see names it as a
//! [`Change`] and commits through [`Engine::commit`](super::Engine::commit): that sends one
//! `NOTIFY` per change inside the transaction (PostgreSQL delivers it to every listening replica
//! when, and only when, the transaction commits), commits, and evicts the change from this
//! replica's cache at once. Each replica's [`listen`] loop evicts what other replicas publish. A
//! replica that loses its listening connection clears its cache, since it may have missed
//! notifications; so does one whose connection goes silent (a hung backend keeps the socket
//! open): every listener sends itself a heartbeat through the database every 400 ms and counts
//! itself lost when one the database took has not come back within a second. Cache entries also age out.
//!
//! Payloads name the replica that published them, which skips its own (it applied them as it
//! committed). A creation is also announced ahead of its commit (`Engine::announce`), and a
//! lookup about to answer "no such key" first has the listener apply what its connection already
//! holds ([`Drain`]), so that a key created elsewhere is known here by the time anyone holds it.

use sqlx::postgres::{PgListener, PgNotification};
use sqlx::{PgConnection, PgPool};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use super::store;
use super::Memory;
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::token::TokenHash;

/// The NOTIFY channel on which changes reach every replica.
pub const CHANNEL: &str = "keyward_key_changes";

/// Something verification may have cached that is no longer true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A key or service token changed (revoked, rotated, edited, limits moved, resealed).
    Key(KeyId),
    /// A tenant's status or settings changed: every key of it is judged again.
    Tenant(TenantId),
    /// A key or service token was created: every replica learns it exists (and forgets any
    /// "no such key" answer for its token). The payload carries the token's SHA-256, which the
    /// database holds anyway; never the token.
    Created { id: KeyId, hash: TokenHash },
}

impl Change {
    /// The NOTIFY payload: `key:<key id>` or `tenant:<tenant id>`.
    fn payload(&self) -> String {
        match self {
            Change::Key(id) => format!("key:{id}"),
            Change::Tenant(id) => format!("tenant:{id}"),
            Change::Created { id, hash } => format!("created:{id}:{}", hex::encode(hash.as_bytes())),
        }
    }

    /// The change a payload names; `None` for one this version does not know (a newer replica's),
    /// which the listener answers by clearing everything.
    fn from_payload(payload: &str) -> Option<Change> {
        match payload.split_once(':')? {
            ("key", id) if !id.is_empty() => Some(Change::Key(KeyId::from_trusted(id.to_owned()))),
            ("tenant", id) => TenantId::parse(id).map(Change::Tenant),
            ("created", rest) => {
                let (id, hash) = rest.rsplit_once(':')?;
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(hash, &mut bytes).ok()?;
                (!id.is_empty()).then(|| Change::Created {
                    id: KeyId::from_trusted(id.to_owned()),
                    hash: TokenHash::from_bytes(bytes),
                })
            }
            _ => None,
        }
    }
}

/// Which replica published a notification: `<16 hex digits>;` before the change. A replica
/// skips its own (it applied them as it committed), so that hearing one later does not make it
/// distrust what it has looked up since.
fn with_origin(origin: u64, change: &Change) -> String {
    format!("{origin:016x};{}", change.payload())
}

/// The origin and the change of a payload (`None` origin: a payload without one).
fn read_payload(payload: &str) -> (Option<u64>, Option<Change>) {
    match payload.split_once(';') {
        Some((origin, rest)) if origin.len() == 16 => {
            (u64::from_str_radix(origin, 16).ok(), Change::from_payload(rest))
        }
        _ => (None, Change::from_payload(payload)),
    }
}

/// Queues the notification of `change`, published by replica `origin`, in the transaction
/// `conn` is in.
pub(super) async fn notify(conn: &mut PgConnection, change: &Change, origin: u64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(with_origin(origin, change))
        .execute(conn)
        .await?;
    Ok(())
}

/// Evicts what every replica publishes until `pool` is closed; reconnects after a lost connection.
/// `ready` is told once the first attempt to listen has subscribed (or failed).
pub(super) async fn listen(memory: Memory, pool: PgPool, ready: oneshot::Sender<()>, mut drains: DrainRequests) {
    let mut ready = Some(ready);
    while !pool.is_closed() {
        match listen_once(&memory, &pool, &mut ready, &mut drains.0).await {
            Ok(()) | Err(sqlx::Error::PoolClosed) => return,
            Err(_) if pool.is_closed() => return,
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                memory.clear();
                tracing::warn!(%error, "key cache lost its change notifications; cleared, reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// How often a listener sends itself a heartbeat through its own connection's subscriptions.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(400);
/// A listener that has not heard a heartbeat this long after one was sent (and committed) has
/// stalled (its backend may be hung while the socket stays open): it is treated as lost.
const SILENT_AFTER: Duration = Duration::from_millis(1000);

async fn listen_once(
    memory: &Memory,
    pool: &PgPool,
    ready: &mut Option<oneshot::Sender<()>>,
    drains: &mut mpsc::Receiver<oneshot::Sender<()>>,
) -> Result<(), sqlx::Error> {
    // A channel of this listener's own: the heartbeats concern no other replica.
    let heartbeat_channel = format!("keyward_heartbeat_{:016x}", rand::random::<u64>());
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection ends this listener (see `Lost`) instead of being re-established inside
    // `try_recv`: that reconnection waits for the database, and when the wait is cancelled (the
    // loop below polls `try_recv` with a timeout) it completes in a later call, which then says
    // nothing of the loss, so notifications missed meanwhile would go unnoticed.
    listener.eager_reconnect(false);
    listener.listen_all([CHANNEL, heartbeat_channel.as_str()]).await?;
    // Anything may have changed while nobody was listening. Keys created from here on arrive
    // as notifications, so the keys read now and those make the complete set.
    memory.clear();
    memory.cache.know_all(store::known_keys(pool).await?);
    // The database answered: lookups need not wait out a breaker set while it was away.
    memory.reachability.up();
    memory.listening.store(true, std::sync::atomic::Ordering::Release);
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    let heartbeats = Heartbeats::start(pool.clone(), heartbeat_channel.clone());
    // `try_recv` fails with `PoolClosed` as soon as the pool is closed, which ends this.
    loop {
        // Checked on every turn, so that a stream of other notifications cannot hide it.
        if heartbeats.unheard_for().is_some_and(|waited| waited > SILENT_AFTER) {
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the listening connection stopped delivering notifications",
            )));
        }
        let received = tokio::select! {
            received = listener.try_recv() => received?,
            Some(first) = drains.recv() => {
                // Lookups wait until what the socket already holds is applied (see `Drain`).
                let mut waiting = vec![first];
                while let Ok(more) = drains.try_recv() {
                    waiting.push(more);
                }
                // Polled once each: ready only with what the connection already holds. (Not a
                // zero timeout: timers have millisecond ticks.)
                while let Some(received) = futures_util::FutureExt::now_or_never(listener.try_recv()) {
                    apply(memory, &heartbeats, &heartbeat_channel, received?.ok_or_else(lost)?);
                }
                for done in waiting {
                    let _ = done.send(());
                }
                continue;
            }
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => continue,
        };
        apply(memory, &heartbeats, &heartbeat_channel, received.ok_or_else(lost)?);
    }
}

/// The listening connection dropped: notifications may have been missed, so the listener
/// starts over (clearing the cache, subscribing again, reading every key).
fn lost() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "the listening connection was lost",
    ))
}

/// What one notification changes.
fn apply(memory: &Memory, heartbeats: &Heartbeats, heartbeat_channel: &str, notification: PgNotification) {
    if notification.channel() == heartbeat_channel {
        return heartbeats.heard(notification.payload());
    }
    match read_payload(notification.payload()) {
        (Some(origin), _) if origin == memory.origin => {}
        (_, Some(change)) => memory.evict(&change),
        (_, None) => memory.clear(),
    }
}

/// A lookup about to answer "no such key" asks the listener to apply every notification its
/// connection has already received (no query, no waiting for more): a creation announced by
/// another replica before its commit is then known. Bounded: a full queue or a slow listener
/// only means the lookup answers from what is known.
#[derive(Clone, Debug)]
pub struct Drain {
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

/// The listener's half of [`Drain`].
pub struct DrainRequests(mpsc::Receiver<oneshot::Sender<()>>);

const DRAIN_QUEUE: usize = 1024;
const DRAIN_WAIT: Duration = Duration::from_millis(50);

pub fn drain_channel() -> (Drain, DrainRequests) {
    let (requests, receiver) = mpsc::channel(DRAIN_QUEUE);
    (Drain { requests }, DrainRequests(receiver))
}

impl Drain {
    pub async fn caught_up(&self) {
        let (done, applied) = oneshot::channel();
        if self.requests.try_send(done).is_ok() {
            let _ = tokio::time::timeout(DRAIN_WAIT, applied).await;
        }
    }
}

/// Sends heartbeats to a listener's own channel every [`HEARTBEAT_EVERY`] until dropped, each
/// numbered, and keeps when the database took each. Only heartbeats the
/// database took count: while it cannot be reached, the listener's own connection fails instead.
struct Heartbeats {
    task: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<HeartbeatState>>,
}

#[derive(Default)]
struct HeartbeatState {
    /// Taken by the database, not yet heard: number, and when the database took it.
    unheard: VecDeque<(u64, Instant)>,
}

impl Heartbeats {
    /// The heartbeat numbered `payload` came back: it, and every one before it, was heard.
    fn heard(&self, payload: &str) {
        let Ok(number) = payload.parse::<u64>() else { return };
        let Ok(mut state) = self.state.lock() else { return };
        while state.unheard.front().is_some_and(|(n, _)| *n <= number) {
            state.unheard.pop_front();
        }
    }

    /// How long the oldest heartbeat the database took has gone unheard since it took it.
    fn unheard_for(&self) -> Option<Duration> {
        let state = self.state.lock().ok()?;
        state.unheard.front().map(|(_, taken)| taken.elapsed())
    }

    fn start(pool: PgPool, channel: String) -> Self {
        let state = Arc::new(Mutex::new(HeartbeatState::default()));
        let sent = state.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
            let mut number = 0u64;
            while !pool.is_closed() {
                ticker.tick().await;
                number += 1;
                // A heartbeat that cannot be sent (the database is away) is simply missed: the
                // listener then finds itself silent, as it should.
                let result = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&channel)
                    .bind(number.to_string())
                    .execute(&pool)
                    .await;
                match result {
                    Ok(_) => {
                        if let Ok(mut state) = sent.lock() {
                            state.unheard.push_back((number, Instant::now()));
                        }
                    }
                    Err(error) => tracing::debug!(%error, "could not send the change listener its heartbeat"),
                }
            }
        });
        Heartbeats { task, state }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_change_reads_back_from_its_payload() {
        let change = Change::Key(KeyId::from_trusted("key_01J00000000000000000000000".into()));

        assert_eq!(change.payload(), "key:key_01J00000000000000000000000");
        assert_eq!(Change::from_payload(&change.payload()), Some(change));
    }

    #[test]
    fn a_tenant_change_reads_back_from_its_payload() {
        let change = Change::Tenant(TenantId::generate());

        assert_eq!(Change::from_payload(&change.payload()), Some(change));
    }

    #[test]
    fn a_creation_reads_back_from_its_payload() {
        let change = Change::Created {
            id: KeyId::from_trusted("key_01J00000000000000000000000".into()),
            hash: TokenHash::of("sk_live_example"),
        };

        assert!(change.payload().starts_with("created:key_01J00000000000000000000000:"));
        assert_eq!(Change::from_payload(&change.payload()), Some(change));
    }

    #[test]
    fn a_payload_names_the_replica_that_published_it() {
        let change = Change::Tenant(TenantId::generate());

        let payload = with_origin(0xfeed, &change);

        assert!(payload.starts_with("000000000000feed;tenant:"));
        assert_eq!(read_payload(&payload), (Some(0xfeed), Some(change)));
    }

    #[test]
    fn payloads_this_version_does_not_know_name_no_change() {
        assert_eq!(Change::from_payload("tenant:not-a-uuid"), None);
        assert_eq!(Change::from_payload("key:"), None);
        assert_eq!(Change::from_payload("webhook:123"), None);
        assert_eq!(Change::from_payload("created:key_1:not-hex"), None);
        assert_eq!(Change::from_payload("created::00"), None);
        assert_eq!(Change::from_payload("garbage"), None);
    }
}
