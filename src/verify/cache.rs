//! Keys already looked up, kept in memory so that verifying a key seen before costs no database
//! round trip: by token hash (plain keys and service tokens) and by key id (signed requests
//! name their key). Entries age out, and every published [`Change`](super::Change) evicts what
//! it touches (see `changes`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::Change;
use crate::domain::ids::{KeyId, KeyKind};
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

    pub fn evict(&self, change: &Change) {
        match change {
            Change::Key(id) => self.evict_where(|key| &key.id == id),
            Change::Tenant(tenant) => self.evict_where(|key| key.tenant_id == Some(*tenant)),
        }
    }

    pub fn get_signer(&self, id: &KeyId) -> Result<(Key, TenantStatus, TenantSettings), Ticket> {
        let ticket = Ticket(self.generation.load(Ordering::Acquire));
        let signers = self.signers.read().map_err(|_| Ticket(u64::MAX))?;
        match signers.get(id) {
            Some(entry) if entry.loaded.elapsed() < TIME_TO_LIVE => {
                Ok((entry.key.clone(), entry.tenant_status, entry.settings))
            }
            _ => Err(ticket),
        }
    }

    pub fn put_signer(&self, ticket: Ticket, key: &Key, tenant_status: TenantStatus, settings: TenantSettings) {
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
}
