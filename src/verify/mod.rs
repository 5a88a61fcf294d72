//! Verification, the hot path, in one place: is this key (or this signed request) good, right
//! now, for these scopes?
//!
//! The API the HTTP layer calls is three functions and one answer:
//! - [`verify_key`]: a presented token (`POST /v1/verify`, and plain keys at `/v1/authorize`);
//! - [`verify_request`]: a signed request, any scheme of `signing` (`POST /v1/verify/request`);
//! - [`forward_auth::check`]: a gateway's forwarded request (`/v1/authorize`);
//! - each answers a [`Verdict`]: a [`VerifyCode`], and on `VALID` the key.
//!
//! Inside: format and checksum first (no I/O), then the [`Engine`]'s cache (`cache`) or one
//! indexed lookup (`store`), the key's own state and its tenant's (`verdict::judge`), the
//! signature (`signed`), the replay store and the limits (`limits`), and the side effects
//! batched by the usage writer (`usage`) so that no verification waits on a database write.
//! Changes to keys and tenants reach the cache of every replica through `changes`.

mod cache;
pub mod changes;
pub mod forward_auth;
mod key;
mod limits;
mod lookups;
mod replays;
mod secrets;
mod signed;
mod spool;
pub mod store;
mod usage;
mod verdict;
mod verifiable;

use sqlx::{PgPool, Postgres, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use changes::Change;
pub use key::verify_key;
pub use limits::{RateStatus, Spent};
pub use signed::verify_request;
pub use usage::Unwritten;
pub use verdict::{judge, Verdict, VerifyCode};
pub use verifiable::{KeyLimits, Verifiable};

use crate::clock::Clock;
use crate::domain::audit::NewAuditEvent;
use crate::domain::ids::{KeyId, KeyKind};
use crate::domain::permissions::{authorize, Action, Caller, Principal};
use crate::domain::scope::{parse_scopes, Scope, MAX_SCOPES_PER_KEY};

use crate::domain::token::TokenHash;
use crate::domain::validation::ValidationErrors;
use crate::service::Context;
use crate::signing::sigv4;
use cache::{KeyCache, Lookup};
use limits::Limits;
use replays::{ReplayStore, ReplayWriter};
use secrets::{SigningSecrets, Unsealed};
use usage::{UsageRecorder, UsageWriter};
use verifiable::Signer;

/// How a deployment verifies: the SigV4 credential scopes it accepts and whether gateways may
/// call `/v1/authorize` without a gateway token.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sigv4: sigv4::Accept,
    pub open_gateway: bool,
    /// Keys kept in memory (see `cache`).
    pub cache_keys: usize,
    /// How long a key (or caller) confirmed by the database may still be served from memory
    /// while the database cannot be reached; zero: never.
    pub stale_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sigv4: sigv4::Accept::default(),
            open_gateway: false,
            cache_keys: cache::DEFAULT_CAPACITY,
            stale_max: Duration::from_secs(60),
        }
    }
}

/// The verify engine's shared state: the key cache, the usage recorder and the settings.
/// Cheap to clone; every clone is the same engine.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The cache, the limit slices, the listener's state: what the listener keeps current.
    memory: Memory,
    drain: changes::Drain,
    confirmations: Arc<Confirmations>,
    lookups: lookups::HashLookups,
    replays: ReplayStore,
    usage: UsageRecorder,
    settings: Arc<Settings>,
}

/// The engine's background work, started by `App::serve` only: the change listener and the
/// usage writer.
pub struct Tasks {
    memory: Memory,
    drains: changes::DrainRequests,
    writer: UsageWriter,
    replays: ReplayWriter,
}

/// What a replica keeps in memory that a change may make untrue: the key cache and the limit
/// slices. The change listener and `Engine::commit` tell both.
#[derive(Clone, Debug)]
pub(crate) struct Memory {
    pub cache: KeyCache,
    pub limits: Limits,
    pub secrets: SigningSecrets,
    /// The change listener is subscribed and has read every key.
    pub listening: Arc<AtomicBool>,
    /// When lookups last found the database unreachable; the listener subscribing again
    /// proves it reachable.
    pub reachability: Arc<Reachability>,
    /// This replica, in the notifications it publishes (see `changes`).
    pub origin: u64,
    /// The background tasks running now (see [`Running`]).
    pub running: Arc<Running>,
}

/// How many of the engine's background tasks besides the listener (the limit give-back, the
/// replay writer and the usage writer) are running: each holds a guard while it runs, given back
/// however it ends (returned, panicked, aborted). `/readyz` is not ready without all of them:
/// without the replay writer no signed request is answered, without the usage writer nothing is
/// counted.
#[derive(Debug, Default)]
pub(crate) struct Running(std::sync::atomic::AtomicUsize);

/// The tasks `Tasks::start` starts that hold a [`Running`] guard.
const BACKGROUND_TASKS: usize = 3;

struct RunningGuard(Arc<Running>);

impl Running {
    fn enter(self: &Arc<Self>) -> RunningGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        RunningGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `task` holding `guard` (taken before the task is spawned, so that it counts at once).
async fn in_background<T>(guard: RunningGuard, task: impl std::future::Future<Output = T>) -> T {
    let _guard = guard;
    task.await
}

impl Memory {
    pub fn evict(&self, change: &Change) {
        self.cache.evict(change);
        self.limits.forget(change);
        self.secrets.forget(change);
    }

    pub fn clear(&self) {
        self.listening.store(false, Ordering::Release);
        self.cache.clear();
        self.limits.forget_all();
        self.secrets.clear();
    }
}

impl Engine {
    pub fn new(settings: Settings) -> (Engine, Tasks) {
        let memory = Memory {
            cache: KeyCache::new(settings.cache_keys, settings.stale_max),
            limits: Limits::default(),
            secrets: SigningSecrets::new(settings.cache_keys),
            listening: Arc::default(),
            reachability: Arc::default(),
            origin: rand::random(),
            running: Arc::default(),
        };
        let (usage, writer) = usage::channel();
        let (replays, replay_writer) = replays::channel();
        let (drain, drains) = changes::drain_channel();
        let engine = Engine {
            memory: memory.clone(),
            drain,
            confirmations: Arc::default(),
            lookups: lookups::HashLookups::new(memory.cache.clone()),
            replays,
            usage,
            settings: Arc::new(settings),
        };
        let tasks = Tasks {
            memory,
            drains,
            writer,
            replays: replay_writer,
        };
        (engine, tasks)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Commits `tx` with `changes` published and `events` appended to the audit trail: every
    /// replica (this one at once, the others on commit through NOTIFY) stops trusting what it
    /// cached about them. The events go last, just before the commit: appending takes the
    /// chain's lock, held until the commit, so nothing else waits under it.
    ///
    /// A creation is also announced *before* the commit, outside the transaction: by the time
    /// the caller holds the new token, every replica has been told of it for at least the
    /// commit's round trip, so that one verifying it an instant later already knows it. (An
    /// announcement whose transaction then fails names a key that does not exist: one wasted
    /// lookup, never a wrong answer.) It goes out only when a pool connection is free at once.
    pub async fn commit(
        &self,
        pool: &PgPool,
        mut tx: Transaction<'_, Postgres>,
        changes: &[Change],
        events: &[NewAuditEvent],
    ) -> Result<(), sqlx::Error> {
        for created in changes.iter().filter(|change| matches!(change, Change::Created { .. })) {
            // Only on a connection that is free now: waiting for one while holding the
            // transaction's could deadlock a busy pool. Without it, the commit's own
            // notification still tells every replica.
            if let Some(mut conn) = pool.try_acquire() {
                changes::notify(&mut conn, created, self.memory.origin).await?;
            }
        }
        for change in changes {
            changes::notify(&mut tx, change, self.memory.origin).await?;
        }
        crate::repo::audit::append_all(&mut tx, events).await?;
        tx.commit().await?;
        for change in changes {
            self.memory.evict(change);
        }
        Ok(())
    }

    /// Spends one verification of `key`'s limits (see `limits`).
    async fn consume_limits(
        &self,
        pool: &PgPool,
        key: &Verifiable,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Result<Spent, limits::Refused>, sqlx::Error> {
        // Bounded like a lookup: a slice cut short is at worst lost to the key, never doubled.
        tokio::time::timeout(LOOKUP_TIMEOUT, self.memory.limits.consume(pool, key, now))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Remembers an accepted signature (group-committed); `false` for a replay.
    async fn remember_signature(&self, pool: &PgPool, signature: replays::Signature) -> Result<bool, sqlx::Error> {
        tokio::time::timeout(LOOKUP_TIMEOUT, self.replays.remember(pool, signature))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Announces a creation before its transaction begins (see [`commit`](Self::commit)): on a
    /// connection of its own, so that no transaction is held while waiting for it. A failure only
    /// means the commit's own notification is the first the other replicas hear.
    pub async fn announce(&self, pool: &PgPool, created: &Change) {
        let announced = async {
            let mut conn = pool.acquire().await?;
            changes::notify(&mut conn, created, self.memory.origin).await
        };
        if let Err(error) = announced.await {
            tracing::debug!(%error, "could not announce a new key ahead of its commit");
        }
    }

    /// Gives back every unused slice of every limit (on shutdown).
    pub async fn release_limits(&self, pool: &PgPool, now: chrono::DateTime<chrono::Utc>) {
        self.memory.limits.give_back(pool, now, true).await;
    }

    /// The flush at shutdown: what cannot be written goes to the spool (when one is set);
    /// returns what is lost.
    pub async fn flush_or_spool(&self) -> Unwritten {
        self.usage.flush_or_spool().await
    }

    /// Writes every tallied side effect (counts, last uses, refusal events) now and waits until
    /// written; returns what could not be.
    pub async fn flush(&self) -> Unwritten {
        self.usage.flush().await
    }

    /// Notes that a service token was used (coalesced, written in the background). A customer
    /// key's use needs no note: its counted `VALID` outcome is its last use.
    pub fn note_token_use(&self, id: &KeyId, at: chrono::DateTime<chrono::Utc>) {
        self.usage.token_used(id, at);
    }

    /// Counts a verification's outcome; `event` makes the audit event of a refusal of a real
    /// key, asked for once per key, code and minute (see `usage`).
    fn count(&self, outcome: usage::Outcome<'_>, event: impl FnOnce() -> NewAuditEvent) {
        self.usage.outcome(outcome, event);
    }

    /// Keys the cache holds: by token hash, and by key id.
    pub fn cached_keys(&self) -> (u64, u64) {
        self.memory.cache.sizes()
    }

    /// How many batches of lookups by token hash have been read (see `lookups`).
    pub fn lookup_batches(&self) -> u64 {
        self.lookups.batches()
    }

    /// How many outcomes or refusal events went unrecorded because the tallies were full.
    pub fn dropped_outcomes(&self) -> u64 {
        self.usage.dropped()
    }

    /// The key of `kind` whose token hashes to `hash`, with its tenant's status: `None` without
    /// a query when no key of the deployment has that hash, else from the cache, else from the
    /// database (and then kept, found or not).
    pub async fn find_by_hash(
        &self,
        pool: &PgPool,
        kind: KeyKind,
        hash: &TokenHash,
    ) -> Result<Option<Arc<Verifiable>>, sqlx::Error> {
        if self.memory.cache.token_unknown(hash) {
            self.drain.caught_up().await;
            if self.memory.cache.token_unknown(hash) && !self.confirmations.take() {
                return Ok(None);
            }
        }
        match self.memory.cache.get(kind, hash) {
            Lookup::Hit(found) => Ok(found),
            Lookup::Miss { ticket, stale } => {
                let found = self.lookup(stale, self.lookups.find(pool, kind, hash)).await?;
                if let Looked::Confirmed(found) = &found {
                    self.memory.cache.put(ticket, kind, *hash, found.clone());
                }
                Ok(found.into_inner())
            }
        }
    }

    /// The customer key with this id and its tenant's status and settings, found as
    /// [`find_by_hash`](Self::find_by_hash) finds a key.
    async fn find_customer_by_id(&self, pool: &PgPool, id: &KeyId) -> Result<Option<Arc<Signer>>, sqlx::Error> {
        if self.memory.cache.id_unknown(id) {
            self.drain.caught_up().await;
            if self.memory.cache.id_unknown(id) && !self.confirmations.take() {
                return Ok(None);
            }
        }
        match self.memory.cache.get_signer(id) {
            Lookup::Hit(found) => Ok(found),
            Lookup::Miss { ticket, stale } => {
                let read = async {
                    let found = store::find_customer_by_id(pool, id).await?;
                    let cache = &self.memory.cache;
                    Ok(found.map(|(key, tenant_status, settings)| {
                        Arc::new(Signer {
                            key: cache.verifiable(&key, Some(tenant_status)),
                            secret: key.signing_secret,
                            settings,
                        })
                    }))
                };
                let found = self.lookup(stale, read).await?;
                if let Looked::Confirmed(found) = &found {
                    self.memory.cache.put_signer(ticket, id, found.clone());
                }
                Ok(found.into_inner())
            }
        }
    }

    /// Runs a lookup, bounded by [`LOOKUP_TIMEOUT`] even when the database hangs. When the
    /// database cannot be reached (or could not a moment ago, [`DOWN_FOR`]), what was confirmed
    /// within the stale limit is served instead: nobody can change a key while the database is
    /// away. Everything else is an error the caller answers 503.
    async fn lookup<T>(
        &self,
        stale: Option<Option<T>>,
        query: impl std::future::Future<Output = Result<Option<T>, sqlx::Error>>,
    ) -> Result<Looked<T>, sqlx::Error> {
        if self.memory.reachability.down() {
            // Asked again a moment later; until then, an answer from memory or a prompt 503.
            return match stale {
                Some(stale) => Ok(Looked::Stale(stale)),
                None => Err(sqlx::Error::PoolTimedOut),
            };
        }
        let result = match tokio::time::timeout(LOOKUP_TIMEOUT, query).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        };
        match result {
            Ok(found) => {
                self.memory.reachability.up();
                Ok(Looked::Confirmed(found))
            }
            Err(error) if crate::db::is_unreachable(&error) || crate::db::is_timeout(&error) => {
                // One broken connection is replaced by the pool; a pool that cannot connect
                // (or a statement that never comes back) means the database is away.
                if matches!(error, sqlx::Error::PoolTimedOut) {
                    self.memory.reachability.went_down(&error);
                }
                match stale {
                    Some(stale) => Ok(Looked::Stale(stale)),
                    None => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The signing secret of key `id`, unsealed once while the key stays unchanged.
    fn signing_secret(
        &self,
        master: &crate::crypto::secrets::MasterKeys,
        id: &KeyId,
        sealed: &crate::domain::key::Sealed,
    ) -> Result<Arc<Unsealed>, crate::crypto::secrets::SecretError> {
        self.memory.secrets.open(master, id, sealed)
    }

    /// Whether the change listener is subscribed and knows every key (`/readyz`).
    pub fn listening(&self) -> bool {
        self.memory.listening.load(Ordering::Acquire)
    }

    /// Whether every background task besides the listener is running (`/readyz`).
    pub fn background_running(&self) -> bool {
        self.memory.running.count() == BACKGROUND_TASKS
    }
}

/// Lets `caller` verify (it needs `keys:verify`; the open gateway only where the deployment
/// allows it) and reads the scopes it requires.
fn admit(ctx: &Context, caller: &Caller, required_scopes: &[String]) -> crate::service::Result<Vec<Scope>> {
    if caller.principal == Principal::OpenGateway && !ctx.verify.settings().open_gateway {
        return Err(crate::service::Error::Unauthenticated);
    }
    authorize(caller, Action::VerifyKeys, None)?;
    let mut errors = ValidationErrors::default();
    let required = parse_scopes(&mut errors, "scopes", required_scopes, MAX_SCOPES_PER_KEY);
    errors.finish(required).map_err(Into::into)
}

/// The longest a verify lookup (or a limit slice, or the replay store) waits for the database,
/// even one that hangs without answering (a statement timeout cannot fire on a stopped server).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(6);
/// After a lookup found the database unreachable, lookups do not ask it again for this long:
/// what may be served stale is, the rest gets a prompt 503.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// How many "no such key" answers per second a replica confirms with the database although its
/// known keys already say so: a key created on another replica an instant ago, whose
/// announcement has not arrived yet (a loaded machine), is then still found. Beyond the budget
/// (a flood of unknown tokens), the known keys answer alone, without a query.
const CONFIRMATIONS_PER_SECOND: f64 = 50.0;

/// A token bucket of [`CONFIRMATIONS_PER_SECOND`].
#[derive(Debug)]
struct Confirmations {
    bucket: std::sync::Mutex<(f64, Instant)>,
}

impl Default for Confirmations {
    fn default() -> Self {
        Confirmations {
            bucket: std::sync::Mutex::new((CONFIRMATIONS_PER_SECOND, Instant::now())),
        }
    }
}

impl Confirmations {
    fn take(&self) -> bool {
        let Ok(mut bucket) = self.bucket.lock() else {
            return false;
        };
        let (tokens, last) = *bucket;
        let now = Instant::now();
        let tokens =
            (tokens + now.duration_since(last).as_secs_f64() * CONFIRMATIONS_PER_SECOND).min(CONFIRMATIONS_PER_SECOND);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            true
        } else {
            *bucket = (tokens, now);
            false
        }
    }
}

/// An answer of `Engine::lookup`: confirmed by the database now, or served from memory.
enum Looked<T> {
    Confirmed(Option<T>),
    Stale(Option<T>),
}

impl<T> Looked<T> {
    fn into_inner(self) -> Option<T> {
        match self {
            Looked::Confirmed(found) | Looked::Stale(found) => found,
        }
    }
}

/// When verify lookups last found the database unreachable.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    down_since: std::sync::Mutex<Option<Instant>>,
}

impl Reachability {
    fn down(&self) -> bool {
        self.down_since
            .lock()
            .is_ok_and(|since| since.is_some_and(|at| at.elapsed() < DOWN_FOR))
    }

    fn went_down(&self, error: &sqlx::Error) {
        if let Ok(mut since) = self.down_since.lock() {
            if since.is_none_or(|at| at.elapsed() >= DOWN_FOR) {
                tracing::warn!(%error, "the database cannot be reached: keys confirmed lately are served from memory");
            }
            *since = Some(Instant::now());
        }
    }

    pub(crate) fn up(&self) {
        if let Ok(mut since) = self.down_since.lock() {
            *since = None;
        }
    }
}

/// How long `Tasks::start` waits for the change listener to subscribe before serving anyway.
const LISTENER_START: Duration = Duration::from_secs(5);

impl Tasks {
    /// Starts the change listener and the usage writer on the current Tokio runtime, and
    /// returns once the listener has subscribed (or failed its first attempt, or
    /// `LISTENER_START` passed): a cache filled before then would be cleared when it subscribes.
    pub async fn start(self, pool: PgPool, usage_flush: Duration, clock: Clock, spool_dir: Option<std::path::PathBuf>) {
        let (ready, subscribed) = tokio::sync::oneshot::channel();
        let running = self.memory.running.clone();
        tokio::spawn(in_background(
            running.enter(),
            limits::give_back_expired(self.memory.limits.clone(), pool.clone(), clock.clone()),
        ));
        tokio::spawn(changes::listen(self.memory, pool.clone(), ready, self.drains));
        tokio::spawn(in_background(running.enter(), self.replays.run(pool.clone())));
        tokio::spawn(in_background(
            running.enter(),
            self.writer.run(pool, usage_flush, clock, spool_dir),
        ));
        let _ = tokio::time::timeout(LISTENER_START, subscribed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_background_task_that_ends_or_is_aborted_no_longer_counts_as_running() {
        let running = Arc::new(Running::default());
        let done = tokio::spawn(in_background(running.enter(), async {}));
        let forever = tokio::spawn(in_background(running.enter(), std::future::pending::<()>()));
        assert_eq!(running.count(), 2);

        done.await.unwrap();
        assert_eq!(running.count(), 1);
        forever.abort();
        let _ = forever.await;
        assert_eq!(running.count(), 0);
    }

    #[tokio::test]
    async fn a_panicking_background_task_no_longer_counts_as_running() {
        let running = Arc::new(Running::default());
        let panicked = tokio::spawn(in_background(running.enter(), async { panic!("a writer's bug") }));

        assert!(panicked.await.is_err());

        assert_eq!(running.count(), 0);
    }
}
