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

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

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

/// Queues the notification of `change` in the transaction `conn` is in.
pub(super) async fn notify(conn: &mut PgConnection, change: &Change) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(change.payload())
        .execute(conn)
        .await?;
    Ok(())
}

/// Evicts what every replica publishes until `pool` is closed; reconnects after a lost connection.
/// `ready` is told once the first attempt to listen has subscribed (or failed).
pub(super) async fn listen(memory: Memory, pool: PgPool, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    while !pool.is_closed() {
        match listen_once(&memory, &pool, &mut ready).await {
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
) -> Result<(), sqlx::Error> {
    // A channel of this listener's own: the heartbeats concern no other replica.
    let heartbeat_channel = format!("keyward_heartbeat_{:016x}", rand::random::<u64>());
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, heartbeat_channel.as_str()]).await?;
    // Anything may have changed while nobody was listening. Keys created from here on arrive
    // as notifications, so the keys read now and those make the complete set.
    memory.clear();
    memory.cache.know_all(store::known_keys(pool).await?);
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
        let Ok(received) = tokio::time::timeout(HEARTBEAT_EVERY, listener.try_recv()).await else {
            continue;
        };
        match received? {
            Some(notification) if notification.channel() == heartbeat_channel => heartbeats.heard(),
            Some(notification) => match Change::from_payload(notification.payload()) {
                Some(change) => memory.evict(&change),
                None => memory.clear(),
            },
            // The connection dropped (and is re-established): notifications may be lost.
            None => memory.clear(),
        }
    }
}

/// Sends heartbeats to a listener's own channel until dropped, and keeps when the oldest one
/// sent but not yet heard was sent. Only heartbeats the database took count: while it cannot be
/// reached, the listener's own connection fails instead.
struct Heartbeats {
    task: tokio::task::JoinHandle<()>,
    unheard_since: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Heartbeats {
    fn heard(&self) {
        if let Ok(mut since) = self.unheard_since.lock() {
            *since = None;
        }
    }

    fn unheard_for(&self) -> Option<Duration> {
        self.unheard_since.lock().ok()?.map(|since| since.elapsed())
    }

    fn start(pool: PgPool, channel: String) -> Self {
        let unheard_since = std::sync::Arc::new(std::sync::Mutex::new(None));
        let sent = unheard_since.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
            while !pool.is_closed() {
                ticker.tick().await;
                // A heartbeat that cannot be sent (the database is away) is simply missed: the
                // listener then finds itself silent, as it should.
                let result = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(&channel)
                    .execute(&pool)
                    .await;
                match result {
                    Ok(_) => {
                        if let Ok(mut since) = sent.lock() {
                            since.get_or_insert_with(Instant::now);
                        }
                    }
                    Err(error) => tracing::debug!(%error, "could not send the change listener its heartbeat"),
                }
            }
        });
        Heartbeats { task, unheard_since }
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
    fn payloads_this_version_does_not_know_name_no_change() {
        assert_eq!(Change::from_payload("tenant:not-a-uuid"), None);
        assert_eq!(Change::from_payload("key:"), None);
        assert_eq!(Change::from_payload("webhook:123"), None);
        assert_eq!(Change::from_payload("created:key_1:not-hex"), None);
        assert_eq!(Change::from_payload("created::00"), None);
        assert_eq!(Change::from_payload("garbage"), None);
    }
}
