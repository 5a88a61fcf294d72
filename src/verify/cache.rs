//! What verification remembers, so that a key seen before costs no database round trip and a
//! token that matches no key costs none at all:
//! - the keys already looked up, by token hash (plain keys, service tokens) and by key id
//!   (signed requests name their key), in bounded caches that keep the hot keys when full
//!   (S3-FIFO, `quick_cache`); answers that found nothing are kept too;
//! - a fingerprint of every key of the deployment ([`Known`]), loaded when the change listener
//!   subscribes and kept current by the same notifications: once complete, a token or key id
//!   not in it is refused without a query.
//!
//! Invalidation never scans. Every entry carries the generation its lookup began in; a
//! [`Change`] moves the generation on and records, for what it touches (a key, a tenant, a token
//! hash), the generation it happened in. An entry older than a record that concerns it is not
//! trusted. Records older than the time to live are forgotten, since every entry they could
//! concern has aged out by then.

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::verifiable::{GrantSets, Signer, Verifiable};
use super::Change;
use crate::domain::ids::{KeyId, KeyKind, TenantId};
use crate::domain::key::Key;
use crate::domain::tenant::TenantStatus;
use crate::domain::token::TokenHash;

/// How long an entry is trusted at most. Changes reach every replica through notifications, and
/// a listener that stops hearing them is noticed within about a second (`changes`), so this is
/// only the bound for a change nobody announced (a row edited by hand in the database).
const TIME_TO_LIVE: Duration = Duration::from_secs(300);
/// Keys kept by default, in each of the two caches.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Invalidation records are pruned at most this often, once there are this many.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
const PRUNE_ABOVE: usize = 1024;

/// A key found by its token hash (with its tenant's status).
pub type ByHash = Verifiable;
/// A customer key found by id, with its signing secret and its tenant's settings.
pub type ById = Signer;

/// When a lookup began: the generation then, and the instant (entries age from it).
#[derive(Clone, Copy)]
pub struct Ticket {
    generation: u64,
    started: Instant,
}

/// What the cache says about a key.
pub enum Lookup<T> {
    /// Known: the key (`Some`), or known not to exist (`None`).
    Hit(Option<Arc<T>>),
    /// Not known: look it up, then `put` the answer with this ticket. `stale` is what a lookup
    /// confirmed within the stale limit and no change since has touched: the answer to give
    /// when the database cannot be reached (nobody can change the key then either).
    Miss {
        ticket: Ticket,
        stale: Option<Option<Arc<T>>>,
    },
}

struct Entry<T> {
    value: Option<Arc<T>>,
    ticket: Ticket,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            value: self.value.clone(),
            ticket: self.ticket,
        }
    }
}

/// What an entry is about: the key and tenant it found, or the token or id that found nothing.
#[derive(Clone, Copy)]
struct Subjects<'a> {
    key: Option<&'a KeyId>,
    tenant: Option<TenantId>,
    token: Option<&'a TokenHash>,
}

/// When each key, tenant and token hash last changed: a generation, and the instant.
#[derive(Default)]
struct Invalidations {
    keys: HashMap<KeyId, (u64, Instant)>,
    tenants: HashMap<TenantId, (u64, Instant)>,
    /// A token hash changes when a key is created with it: its "no such key" answer ends.
    tokens: HashMap<TokenHash, (u64, Instant)>,
    /// Entries from lookups that began before this generation are not trusted without a check
    /// (notifications may have been missed), though they may still be served stale.
    cleared: u64,
    last_prune: Option<Instant>,
}

impl Invalidations {
    fn len(&self) -> usize {
        self.keys.len() + self.tenants.len() + self.tokens.len()
    }

    fn changed_after(&self, generation: u64, subjects: Subjects<'_>) -> bool {
        self.cleared > generation || self.touched_after(generation, subjects)
    }

    /// Whether a change recorded after `generation` touches the subjects.
    fn touched_after(&self, generation: u64, subjects: Subjects<'_>) -> bool {
        let after = |record: Option<&(u64, Instant)>| record.is_some_and(|(changed, _)| *changed > generation);
        subjects.key.is_some_and(|key| after(self.keys.get(key)))
            || subjects.tenant.is_some_and(|tenant| after(self.tenants.get(&tenant)))
            || subjects.token.is_some_and(|token| after(self.tokens.get(token)))
    }

    /// Forgets records older than any entry they could concern (`keep_for`: the longest an
    /// entry is used, fresh or stale).
    fn prune(&mut self, now: Instant, keep_for: Duration) {
        let keep = |(_, at): &mut (u64, Instant)| at.elapsed() < keep_for + PRUNE_EVERY;
        self.keys.retain(|_, record| keep(record));
        self.tenants.retain(|_, record| keep(record));
        self.tokens.retain(|_, record| keep(record));
        self.last_prune = Some(now);
    }
}

/// Fingerprints (the first 8 bytes of a SHA-256) of every key's token hash and id. A fingerprint
/// says "maybe"; the lookup that follows says yes or no, so a collision costs one query.
#[derive(Default)]
struct Known {
    tokens: HashSet<u64>,
    ids: HashSet<u64>,
    /// Holds every key of the deployment: loaded, and no notification missed since.
    complete: bool,
}

pub fn token_fingerprint(hash: &TokenHash) -> u64 {
    let bytes = hash.as_bytes();
    u64::from_be_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

pub fn id_fingerprint(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ])
}

/// Every key of the deployment, as fingerprints: what [`KeyCache::know_all`] is given.
#[derive(Default)]
pub struct KnownKeys {
    pub tokens: HashSet<u64>,
    pub ids: HashSet<u64>,
}

struct Inner {
    /// How long an entry may be served while the database cannot be reached.
    stale_max: Duration,
    by_hash: Cache<(KeyKind, TokenHash), Entry<ByHash>>,
    by_id: Cache<KeyId, Entry<ById>>,
    generation: AtomicU64,
    invalidations: RwLock<Invalidations>,
    known: RwLock<Known>,
    /// The grant sets the cached keys share.
    grants: GrantSets,
}

#[derive(Clone)]
pub struct KeyCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyCache({} by hash, {} by id)",
            self.inner.by_hash.len(),
            self.inner.by_id.len()
        )
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache::new(DEFAULT_CAPACITY, Duration::ZERO)
    }
}

impl KeyCache {
    /// A cache keeping up to `capacity` keys by hash and as many by id, serving what it
    /// confirmed within `stale_max` while the database cannot be reached.
    pub fn new(capacity: usize, stale_max: Duration) -> Self {
        let capacity = capacity.max(1);
        KeyCache {
            inner: Arc::new(Inner {
                stale_max,
                by_hash: Cache::new(capacity),
                by_id: Cache::new(capacity),
                generation: AtomicU64::new(1),
                invalidations: RwLock::default(),
                known: RwLock::default(),
                grants: GrantSets::default(),
            }),
        }
    }

    /// Entries held: by token hash, and by key id.
    pub fn sizes(&self) -> (u64, u64) {
        let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        (len(self.inner.by_hash.len()), len(self.inner.by_id.len()))
    }

    fn ticket(&self) -> Ticket {
        // The instant first: an entry must not outlive a record made after its lookup began.
        let started = Instant::now();
        Ticket {
            generation: self.inner.generation.load(Ordering::Acquire),
            started,
        }
    }

    /// Whether an entry from a lookup that began with `ticket` may still be trusted.
    fn trusted(&self, ticket: Ticket, subjects: Subjects<'_>) -> bool {
        if ticket.started.elapsed() >= TIME_TO_LIVE {
            return false;
        }
        if ticket.generation == self.inner.generation.load(Ordering::Acquire) {
            return true; // nothing has changed since
        }
        self.inner
            .invalidations
            .read()
            .is_ok_and(|invalidations| !invalidations.changed_after(ticket.generation, subjects))
    }

    /// Whether an entry may be served while the database cannot be reached: confirmed within
    /// the stale limit, and no change recorded since touches it.
    fn servable_stale(&self, ticket: Ticket, subjects: Subjects<'_>) -> bool {
        ticket.started.elapsed() < self.inner.stale_max
            && self
                .inner
                .invalidations
                .read()
                .is_ok_and(|invalidations| !invalidations.touched_after(ticket.generation, subjects))
    }

    /// A token that no key has: refused without asking the database.
    pub fn token_unknown(&self, hash: &TokenHash) -> bool {
        self.inner
            .known
            .read()
            .is_ok_and(|known| known.complete && !known.tokens.contains(&token_fingerprint(hash)))
    }

    /// A key id that no key has.
    pub fn id_unknown(&self, id: &KeyId) -> bool {
        self.inner
            .known
            .read()
            .is_ok_and(|known| known.complete && !known.ids.contains(&id_fingerprint(id.as_str())))
    }

    /// What verification keeps of `key` (to answer now, and to `put`).
    pub fn verifiable(&self, key: &Key, tenant_status: Option<TenantStatus>) -> Arc<Verifiable> {
        Arc::new(Verifiable::of(key, tenant_status, &self.inner.grants))
    }

    pub fn get(&self, kind: KeyKind, hash: &TokenHash) -> Lookup<ByHash> {
        let ticket = self.ticket();
        let Some(entry) = self.inner.by_hash.get(&(kind, *hash)) else {
            return Lookup::Miss { ticket, stale: None };
        };
        self.answer(ticket, &entry, by_hash_subjects(hash, entry.value.as_deref()))
    }

    /// What an entry found for a lookup that began with `ticket` says: a hit when trusted, else
    /// a miss, with the entry as the stale answer when it may serve as one.
    fn answer<T>(&self, ticket: Ticket, entry: &Entry<T>, subjects: Subjects<'_>) -> Lookup<T> {
        let value = || entry.value.clone();
        if self.trusted(entry.ticket, subjects) {
            return Lookup::Hit(value());
        }
        let stale = self.servable_stale(entry.ticket, subjects).then(value);
        Lookup::Miss { ticket, stale }
    }

    /// Keeps what a lookup that began with `ticket` found (`None`: no such key).
    pub fn put(&self, ticket: Ticket, kind: KeyKind, hash: TokenHash, found: Option<Arc<ByHash>>) {
        let entry = Entry { value: found, ticket };
        self.inner.by_hash.insert((kind, hash), entry);
    }

    pub fn get_signer(&self, id: &KeyId) -> Lookup<ById> {
        let ticket = self.ticket();
        let Some(entry) = self.inner.by_id.get(id) else {
            return Lookup::Miss { ticket, stale: None };
        };
        self.answer(ticket, &entry, by_id_subjects(id, entry.value.as_deref()))
    }

    pub fn put_signer(&self, ticket: Ticket, id: &KeyId, found: Option<Arc<ById>>) {
        let entry = Entry { value: found, ticket };
        self.inner.by_id.insert(id.clone(), entry);
    }

    /// Stops trusting what a change touches (and, for a created key, learns its fingerprints).
    pub fn evict(&self, change: &Change) {
        match change {
            Change::Key(id) => {
                self.invalidate(|records, stamp| {
                    records.keys.insert(id.clone(), stamp);
                });
                self.inner.by_id.remove(id);
            }
            Change::Tenant(tenant) => self.invalidate(|records, stamp| {
                records.tenants.insert(*tenant, stamp);
            }),
            Change::Created { id, hash } => {
                if let Ok(mut known) = self.inner.known.write() {
                    known.tokens.insert(token_fingerprint(hash));
                    known.ids.insert(id_fingerprint(id.as_str()));
                }
                self.invalidate(|records, stamp| {
                    records.keys.insert(id.clone(), stamp);
                    records.tokens.insert(*hash, stamp);
                });
                self.inner.by_id.remove(id);
                self.inner.by_hash.remove(&(KeyKind::Customer, *hash));
                self.inner.by_hash.remove(&(KeyKind::Service, *hash));
            }
        }
    }

    /// Records a change, stamped with a new generation, through `record`.
    fn invalidate(&self, record: impl FnOnce(&mut Invalidations, (u64, Instant))) {
        let Ok(mut invalidations) = self.inner.invalidations.write() else {
            return;
        };
        // Moved on under the lock: a reader that sees the new generation then finds the record.
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let now = Instant::now();
        record(&mut invalidations, (generation, now));
        let due = invalidations.last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if invalidations.len() > PRUNE_ABOVE && due {
            invalidations.prune(now, TIME_TO_LIVE.max(self.inner.stale_max));
        }
    }

    /// Trusts nothing cached so far without a check, and no longer treats the fingerprints as
    /// complete (a notification may have been missed) until [`know_all`](Self::know_all) is given
    /// them again. Entries stay, to be served stale while the database cannot be reached; the
    /// records of changes stay too, so that nothing changed before is served.
    pub fn clear(&self) {
        if let Ok(mut invalidations) = self.inner.invalidations.write() {
            let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
            invalidations.cleared = generation;
        }
        if let Ok(mut known) = self.inner.known.write() {
            *known = Known::default();
        }
        if self.inner.stale_max.is_zero() {
            self.inner.by_hash.clear();
            self.inner.by_id.clear();
        }
    }

    /// Takes every key of the deployment, read after the listener subscribed: from now on a
    /// token or id not among them (nor created since) is unknown. Keys created while they were
    /// read arrive as notifications too, and are added again.
    pub fn know_all(&self, keys: KnownKeys) {
        if let Ok(mut known) = self.inner.known.write() {
            let mut tokens = keys.tokens;
            let mut ids = keys.ids;
            // What notifications added since the last clear, while the keys were being read.
            tokens.extend(known.tokens.drain());
            ids.extend(known.ids.drain());
            *known = Known {
                tokens,
                ids,
                complete: true,
            };
        }
    }
}

fn by_hash_subjects<'a>(hash: &'a TokenHash, found: Option<&'a ByHash>) -> Subjects<'a> {
    match found {
        Some(key) => Subjects {
            key: Some(key.id()),
            tenant: key.tenant_id(),
            token: None,
        },
        None => Subjects {
            key: None,
            tenant: None,
            token: Some(hash),
        },
    }
}

fn by_id_subjects<'a>(id: &'a KeyId, found: Option<&'a ById>) -> Subjects<'a> {
    Subjects {
        key: Some(found.map_or(id, |signer| signer.key.id())),
        tenant: found.and_then(|signer| signer.key.tenant_id()),
        token: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(tenant: TenantId) -> Arc<ByHash> {
        Arc::new(Verifiable::of(
            &Key::example(Some(tenant)),
            Some(TenantStatus::Active),
            &GrantSets::default(),
        ))
    }

    fn hit<T>(lookup: Lookup<T>) -> Option<Option<Arc<T>>> {
        match lookup {
            Lookup::Hit(found) => Some(found),
            Lookup::Miss { .. } => None,
        }
    }

    fn ticket<T>(lookup: Lookup<T>) -> Ticket {
        match lookup {
            Lookup::Miss { ticket, .. } => ticket,
            Lookup::Hit(_) => panic!("expected a miss"),
        }
    }

    fn stale<T>(lookup: Lookup<T>) -> Option<Option<Arc<T>>> {
        match lookup {
            Lookup::Miss { stale, .. } => stale,
            Lookup::Hit(_) => panic!("expected a miss"),
        }
    }

    #[test]
    fn a_key_put_is_a_hit() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        let key = found(TenantId::generate());

        cache.put(
            ticket(cache.get(KeyKind::Customer, &hash)),
            KeyKind::Customer,
            hash,
            Some(key.clone()),
        );

        let cached = hit(cache.get(KeyKind::Customer, &hash)).unwrap().unwrap();
        assert_eq!(cached.id(), key.id());
    }

    #[test]
    fn what_a_lookup_read_before_a_change_of_its_key_is_not_trusted() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        let key = found(TenantId::generate());
        let before = ticket(cache.get(KeyKind::Customer, &hash));

        cache.evict(&Change::Key(key.id().clone()));
        cache.put(before, KeyKind::Customer, hash, Some(key));

        assert!(hit(cache.get(KeyKind::Customer, &hash)).is_none());
    }

    #[test]
    fn a_change_of_another_key_leaves_an_entry_trusted() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        let key = found(TenantId::generate());
        cache.put(
            ticket(cache.get(KeyKind::Customer, &hash)),
            KeyKind::Customer,
            hash,
            Some(key.clone()),
        );

        cache.evict(&Change::Key(KeyId::generate(KeyKind::Customer)));

        assert!(hit(cache.get(KeyKind::Customer, &hash)).is_some());
    }

    #[test]
    fn a_tenant_change_ends_the_trust_in_every_key_of_it_only() {
        let cache = KeyCache::default();
        let (acme, globex) = (TenantId::generate(), TenantId::generate());
        let (a, b) = (TokenHash::of("sk_live_a"), TokenHash::of("sk_live_b"));
        cache.put(
            ticket(cache.get(KeyKind::Customer, &a)),
            KeyKind::Customer,
            a,
            Some(found(acme)),
        );
        cache.put(
            ticket(cache.get(KeyKind::Customer, &b)),
            KeyKind::Customer,
            b,
            Some(found(globex)),
        );

        cache.evict(&Change::Tenant(acme));

        assert!(hit(cache.get(KeyKind::Customer, &a)).is_none());
        assert!(hit(cache.get(KeyKind::Customer, &b)).is_some());
    }

    #[test]
    fn a_no_such_key_answer_is_kept_until_a_key_is_created_with_that_token() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        cache.put(
            ticket(cache.get(KeyKind::Customer, &hash)),
            KeyKind::Customer,
            hash,
            None,
        );
        assert!(matches!(hit(cache.get(KeyKind::Customer, &hash)), Some(None)));

        let id = KeyId::generate(KeyKind::Customer);
        cache.evict(&Change::Created { id, hash });

        assert!(hit(cache.get(KeyKind::Customer, &hash)).is_none());
    }

    #[test]
    fn a_no_such_key_answer_read_before_the_creation_is_not_trusted() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        let before = ticket(cache.get(KeyKind::Customer, &hash));

        cache.evict(&Change::Created {
            id: KeyId::generate(KeyKind::Customer),
            hash,
        });
        cache.put(before, KeyKind::Customer, hash, None);

        assert!(hit(cache.get(KeyKind::Customer, &hash)).is_none());
    }

    #[test]
    fn nothing_is_unknown_until_every_key_is_known() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        assert!(!cache.token_unknown(&hash));

        cache.know_all(KnownKeys::default());

        assert!(cache.token_unknown(&hash));
        assert!(cache.id_unknown(&KeyId::generate(KeyKind::Customer)));
    }

    #[test]
    fn a_created_key_is_known_even_when_created_while_the_keys_were_read() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        let id = KeyId::generate(KeyKind::Customer);

        cache.evict(&Change::Created { id: id.clone(), hash });
        cache.know_all(KnownKeys::default());

        assert!(!cache.token_unknown(&hash));
        assert!(!cache.id_unknown(&id));
    }

    #[test]
    fn clearing_trusts_nothing_and_knows_nothing_until_told_again() {
        let cache = KeyCache::default();
        let hash = TokenHash::of("sk_live_a");
        cache.know_all(KnownKeys::default());
        cache.put(
            ticket(cache.get(KeyKind::Customer, &hash)),
            KeyKind::Customer,
            hash,
            None,
        );

        cache.clear();

        assert!(hit(cache.get(KeyKind::Customer, &hash)).is_none());
        assert!(!cache.token_unknown(&hash));
    }

    #[test]
    fn after_a_clear_an_entry_is_rechecked_but_may_be_served_stale() {
        let cache = KeyCache::new(100, Duration::from_secs(60));
        let hash = TokenHash::of("sk_live_a");
        let key = found(TenantId::generate());
        cache.put(
            ticket(cache.get(KeyKind::Customer, &hash)),
            KeyKind::Customer,
            hash,
            Some(key.clone()),
        );

        cache.clear();

        let served = stale(cache.get(KeyKind::Customer, &hash)).unwrap().unwrap();
        assert_eq!(served.id(), key.id());
    }

    #[test]
    fn a_changed_key_is_never_served_stale() {
        let cache = KeyCache::new(100, Duration::from_secs(60));
        let hash = TokenHash::of("sk_live_a");
        let key = found(TenantId::generate());
        cache.put(
            ticket(cache.get(KeyKind::Customer, &hash)),
            KeyKind::Customer,
            hash,
            Some(key.clone()),
        );

        cache.evict(&Change::Key(key.id().clone()));
        cache.clear();

        assert!(stale(cache.get(KeyKind::Customer, &hash)).is_none());
    }

    #[test]
    fn without_a_stale_limit_nothing_is_served_stale() {
        let cache = KeyCache::new(100, Duration::ZERO);
        let hash = TokenHash::of("sk_live_a");
        cache.put(
            ticket(cache.get(KeyKind::Customer, &hash)),
            KeyKind::Customer,
            hash,
            None,
        );

        cache.clear();

        assert!(stale(cache.get(KeyKind::Customer, &hash)).is_none());
    }

    #[test]
    fn a_full_cache_keeps_its_hot_key() {
        let cache = KeyCache::new(100, Duration::ZERO);
        let tenant = TenantId::generate();
        let hot = TokenHash::of("sk_live_hot");
        cache.put(
            ticket(cache.get(KeyKind::Customer, &hot)),
            KeyKind::Customer,
            hot,
            Some(found(tenant)),
        );

        for n in 0..10_000 {
            let cold = TokenHash::of(&format!("sk_live_{n}"));
            cache.put(
                ticket(cache.get(KeyKind::Customer, &cold)),
                KeyKind::Customer,
                cold,
                Some(found(tenant)),
            );
            assert!(
                hit(cache.get(KeyKind::Customer, &hot)).is_some(),
                "hot key lost after {n} others"
            );
        }

        assert!(cache.inner.by_hash.len() <= 200);
    }
}
