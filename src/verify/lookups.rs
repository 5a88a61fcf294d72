//! Lookups by token hash that miss the cache, batched: each waits in a queue, and whoever finds
//! a batch slot free takes everything queued (up to [`MAX_BATCH`]) into one query
//! (`store::find_by_hashes`), answering every waiter when it returns. At most [`SLOTS`] batches
//! run at once; while they do, new lookups queue, so the busier the database, the larger the
//! batches. A lone lookup goes out at once, alone, as before. Many cold keys (a deploy, traffic
//! spread over a million keys) then cost the database one statement per batch instead of one per
//! verification.
//!
//! A batch runs in a task of its own, so a caller that gives up (its timeout, its client gone)
//! never takes the others' answers with it.

use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::cache::KeyCache;
use super::{store, Verifiable};
use crate::domain::ids::KeyKind;
use crate::domain::token::TokenHash;

/// Lookups in one statement at most.
pub const MAX_BATCH: usize = 64;
/// Batches running at once at most.
const SLOTS: usize = 4;

type Answer = Result<Option<Arc<Verifiable>>, sqlx::Error>;

struct Waiting {
    kind: KeyKind,
    hash: TokenHash,
    answer: oneshot::Sender<Answer>,
}

#[derive(Clone, Debug)]
pub struct HashLookups {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Vec<Waiting>>,
    slots: Arc<Semaphore>,
    /// Makes what verification keeps of each key found.
    cache: KeyCache,
    /// Batches read so far.
    batches: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashLookups({} slots free)", self.slots.available_permits())
    }
}

impl HashLookups {
    pub fn new(cache: KeyCache) -> Self {
        HashLookups {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(SLOTS)),
                cache,
                batches: AtomicU64::new(0),
            }),
        }
    }

    /// The key of `kind` whose token hashes to `hash`, read in a batch with whatever other
    /// lookups are waiting.
    pub async fn find(&self, pool: &PgPool, kind: KeyKind, hash: &TokenHash) -> Answer {
        let (answer, answered) = oneshot::channel();
        self.queue().push(Waiting {
            kind,
            hash: *hash,
            answer,
        });
        if let Ok(slot) = self.inner.slots.clone().try_acquire_owned() {
            tokio::spawn(self.clone().run(pool.clone(), slot));
        }
        // Every batch task drains the queue before it gives its slot back, and looks again
        // after, so a waiter queued while every slot was taken is always picked up.
        answered.await.unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// How many batches have been read (each one statement).
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.inner.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take_batch(&self) -> Vec<Waiting> {
        let mut queue = self.queue();
        let take = queue.len().min(MAX_BATCH);
        queue.drain(..take).collect()
    }

    /// Runs batches while lookups are queued, holding `slot`.
    async fn run(self, pool: PgPool, slot: OwnedSemaphorePermit) {
        let mut slot = Some(slot);
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                drop(slot.take());
                // A lookup queued after the take above, while this slot was still held, found
                // no slot free: take it up unless another batch already has one.
                if self.queue().is_empty() {
                    return;
                }
                match self.inner.slots.clone().try_acquire_owned() {
                    Ok(again) => slot = Some(again),
                    Err(_) => return,
                }
                continue;
            }
            self.answer(&pool, batch).await;
        }
    }

    /// Reads a batch in one statement and answers each of its lookups.
    async fn answer(&self, pool: &PgPool, batch: Vec<Waiting>) {
        self.inner.batches.fetch_add(1, Ordering::Relaxed);
        let hashes: Vec<TokenHash> = batch.iter().map(|waiting| waiting.hash).collect();
        // Bounded like a lone lookup, so that a hung database cannot hold a batch slot for ever
        // (its callers have given up by then; the next lookups would queue behind it).
        let read = tokio::time::timeout(super::LOOKUP_TIMEOUT, store::find_by_hashes(pool, &hashes));
        match read.await.unwrap_or(Err(sqlx::Error::PoolTimedOut)) {
            Ok(found) => {
                let found: HashMap<(KeyKind, TokenHash), Arc<Verifiable>> = found
                    .into_iter()
                    .map(|(hash, key, status)| ((key.kind(), hash), self.inner.cache.verifiable(&key, status)))
                    .collect();
                for waiting in batch {
                    let key = found.get(&(waiting.kind, waiting.hash)).cloned();
                    let _ = waiting.answer.send(Ok(key));
                }
            }
            Err(error) => {
                for waiting in batch {
                    let _ = waiting.answer.send(Err(crate::db::same_kind(&error)));
                }
            }
        }
    }
}
