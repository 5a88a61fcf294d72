//! Keys found by token hash, kept in memory so that verifying a key seen before costs no
//! database round trip. Every change to a key or tenant evicts it here at once, and on every
//! other replica through PostgreSQL LISTEN/NOTIFY. A replica that loses its listening
//! connection clears its cache, since it may have missed notifications; entries also age out.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::domain::ids::{KeyId, KeyKind, TenantId};
use crate::domain::key::Key;
use crate::domain::tenant::{TenantSettings, TenantStatus};
use crate::domain::token::TokenHash;

const TIME_TO_LIVE: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
struct Entry {
    key: Key,
    tenant_status: Option<TenantStatus>,
    loaded: Instant,
}

/// A customer key found by id (signed requests name their key), with its tenant's state.
#[derive(Clone)]
struct SignerEntry {
    key: Key,
    tenant_status: TenantStatus,
    settings: TenantSettings,
    loaded: Instant,
}

#[derive(Clone, Default)]
pub struct KeyCache {
    entries: Arc<RwLock<HashMap<(KeyKind, TokenHash), Entry>>>,
    signers: Arc<RwLock<HashMap<KeyId, SignerEntry>>>,
    /// Moves on with every eviction: a lookup that began before one may not fill the cache,
    /// since what it read may be what was just changed.
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCache({} entries)", self.entries.read().map_or(0, |e| e.len()))
    }
}

/// A lookup in progress: the generation it started in.
pub struct Ticket(u64);

impl KeyCache {
    pub fn get(&self, kind: KeyKind, hash: &TokenHash) -> Result<(Key, Option<TenantStatus>), Ticket> {
        let ticket = Ticket(self.generation.load(Ordering::Acquire));
        let entries = self.entries.read().map_err(|_| Ticket(u64::MAX))?;
        match entries.get(&(kind, *hash)) {
            Some(entry) if entry.loaded.elapsed() < TIME_TO_LIVE => Ok((entry.key.clone(), entry.tenant_status)),
            _ => Err(ticket),
        }
    }

    /// Keeps what a lookup found, unless something was evicted since it began.
    pub fn put(&self, ticket: Ticket, kind: KeyKind, hash: TokenHash, key: &Key, tenant_status: Option<TenantStatus>) {
        let Ok(mut entries) = self.entries.write() else { return };
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let entry = Entry {
            key: key.clone(),
            tenant_status,
            loaded: Instant::now(),
        };
        entries.insert((kind, hash), entry);
    }

    fn evict_where(&self, matches: impl Fn(&Key) -> bool) {
        // Both maps are locked (always in this order) before the generation moves on, so no
        // lookup that began earlier can refill either with what is being evicted.
        if let (Ok(mut entries), Ok(mut signers)) = (self.entries.write(), self.signers.write()) {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.retain(|_, entry| !matches(&entry.key));
            signers.retain(|_, entry| !matches(&entry.key));
        }
    }

    pub fn evict_key(&self, id: &KeyId) {
        self.evict_where(|key| &key.id == id);
    }

    pub fn evict_tenant(&self, tenant: TenantId) {
        self.evict_where(|key| key.tenant_id == Some(tenant));
    }

    fn get_signer(&self, id: &KeyId) -> Result<(Key, TenantStatus, TenantSettings), Ticket> {
        let ticket = Ticket(self.generation.load(Ordering::Acquire));
        let signers = self.signers.read().map_err(|_| Ticket(u64::MAX))?;
        match signers.get(id) {
            Some(entry) if entry.loaded.elapsed() < TIME_TO_LIVE => {
                Ok((entry.key.clone(), entry.tenant_status, entry.settings))
            }
            _ => Err(ticket),
        }
    }

    fn put_signer(&self, ticket: Ticket, key: &Key, tenant_status: TenantStatus, settings: TenantSettings) {
        let Ok(mut signers) = self.signers.write() else { return };
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if signers.len() >= MAX_ENTRIES {
            signers.clear();
        }
        let entry = SignerEntry {
            key: key.clone(),
            tenant_status,
            settings,
            loaded: Instant::now(),
        };
        signers.insert(key.id.clone(), entry);
    }

    pub fn clear(&self) {
        self.evict_where(|_| true);
    }

    fn apply(&self, payload: &str) {
        match payload.split_once(':') {
            Some(("key", id)) => self.evict_key(&KeyId::from_trusted(id.to_owned())),
            Some(("tenant", id)) => match TenantId::parse(id) {
                Some(tenant) => self.evict_tenant(tenant),
                None => self.clear(),
            },
            _ => self.clear(),
        }
    }

    /// Listens for changes made anywhere until `pool` is closed.
    pub fn start_listener(&self, pool: PgPool) {
        let cache = self.clone();
        tokio::spawn(async move {
            while !pool.is_closed() {
                match cache.listen(&pool).await {
                    Ok(()) | Err(sqlx::Error::PoolClosed) => return,
                    Err(_) if pool.is_closed() => return,
                    Err(error) => {
                        cache.clear();
                        tracing::warn!(%error, "key cache lost its change notifications; cleared, reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    async fn listen(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(crate::repo::KEY_CHANGES_CHANNEL).await?;
        // Anything may have changed while nobody was listening.
        self.clear();
        // `try_recv` fails with `PoolClosed` as soon as the pool is closed, which ends this.
        loop {
            match listener.try_recv().await? {
                Some(notification) => self.apply(notification.payload()),
                // The connection dropped (and is re-established): notifications may be lost.
                None => self.clear(),
            }
        }
    }
}

/// The key of `kind` whose token hashes to `hash`, with its tenant's status: from the cache, or
/// from the database (and then kept).
pub async fn find_by_hash(
    cache: &KeyCache,
    pool: &PgPool,
    kind: KeyKind,
    hash: &TokenHash,
) -> Result<Option<(Key, Option<TenantStatus>)>, sqlx::Error> {
    match cache.get(kind, hash) {
        Ok(found) => Ok(Some(found)),
        Err(ticket) => {
            let found = crate::repo::keys::find_by_hash(pool, kind, hash).await?;
            if let Some((key, status)) = &found {
                cache.put(ticket, kind, *hash, key, *status);
            }
            Ok(found)
        }
    }
}

/// The customer key with this id and its tenant's status and settings: from the cache, or from
/// the database (and then kept).
pub async fn find_customer_by_id(
    cache: &KeyCache,
    pool: &PgPool,
    id: &KeyId,
) -> Result<Option<(Key, TenantStatus, TenantSettings)>, sqlx::Error> {
    match cache.get_signer(id) {
        Ok(found) => Ok(Some(found)),
        Err(ticket) => {
            let found = crate::repo::keys::find_customer_by_id(pool, id).await?;
            if let Some((key, status, settings)) = &found {
                cache.put_signer(ticket, key, *status, *settings);
            }
            Ok(found)
        }
    }
}
