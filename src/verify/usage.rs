//! The usage writer: side effects of verification that must not cost a database write per call.
//! `last_used_at` updates are coalesced per key, and audit events of refused verifications are
//! batched. Both are written every interval, when a batch fills, on `flush`, and on shutdown.
//! [`UsageRecorder`] is the sending half every verification holds; [`UsageWriter`] the
//! background task, started by `App::serve`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::store;
use crate::domain::audit::NewAuditEvent;
use crate::domain::ids::KeyId;
use crate::repo;

const CHANNEL_CAPACITY: usize = 16_384;
const AUDIT_BATCH: usize = 500;
/// Events kept for a retry while the database is unreachable; beyond it the oldest are dropped.
const MAX_PENDING_EVENTS: usize = 100_000;

enum Message {
    Used(KeyId, DateTime<Utc>),
    Failed(Box<NewAuditEvent>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Debug)]
pub struct UsageRecorder {
    sender: mpsc::Sender<Message>,
    dropped_refusals: Arc<AtomicU64>,
}

/// The background half: writes what the recorders send.
pub struct UsageWriter {
    receiver: mpsc::Receiver<Message>,
}

/// A recorder and the writer it sends to. Nothing a recorder does waits for room in the queue:
/// what does not fit is dropped (and refusal events counted as dropped).
pub fn channel() -> (UsageRecorder, UsageWriter) {
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let recorder = UsageRecorder {
        sender,
        dropped_refusals: Arc::default(),
    };
    (recorder, UsageWriter { receiver })
}

impl UsageRecorder {
    /// Notes a use. Under overload a note may be dropped: a later use records it again.
    pub fn key_used(&self, id: &KeyId, at: DateTime<Utc>) {
        let _ = self.sender.try_send(Message::Used(id.clone(), at));
    }

    /// Queues the audit event of a refused verification. A refusal never waits: when the queue
    /// is full (the database is slow or gone, or a flood outruns the writer) the event is
    /// dropped and counted, and the count is logged as it doubles.
    pub fn verify_failed(&self, event: NewAuditEvent) {
        if self.sender.try_send(Message::Failed(Box::new(event))).is_err() {
            let dropped = self.dropped_refusals.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the usage queue is full: refused verifications go unrecorded");
            }
        }
    }

    /// How many refusal events were dropped for a full queue since start.
    pub fn dropped_refusals(&self) -> u64 {
        self.dropped_refusals.load(Ordering::Relaxed)
    }

    /// Writes everything queued so far and waits until it is written.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.sender.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

#[derive(Default)]
struct Pending {
    last_used: HashMap<KeyId, DateTime<Utc>>,
    events: Vec<NewAuditEvent>,
}

impl UsageWriter {
    /// Writes until every recorder is gone, then writes what is left.
    pub async fn run(self, pool: PgPool, interval: Duration) {
        run(pool, self.receiver, interval).await
    }
}

async fn run(pool: PgPool, mut receiver: mpsc::Receiver<Message>, interval: Duration) {
    let mut pending = Pending::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = receiver.recv() => match message {
                None => {
                    pending.write(&pool).await;
                    return;
                }
                Some(Message::Used(id, at)) => {
                    let entry = pending.last_used.entry(id).or_insert(at);
                    *entry = (*entry).max(at);
                }
                Some(Message::Failed(event)) => {
                    pending.events.push(*event);
                    if pending.events.len() >= AUDIT_BATCH {
                        pending.write(&pool).await;
                    }
                }
                Some(Message::Flush(ack)) => {
                    pending.write(&pool).await;
                    let _ = ack.send(());
                }
            },
            _ = ticker.tick() => pending.write(&pool).await,
        }
    }
}

impl Pending {
    async fn write(&mut self, pool: &PgPool) {
        if !self.last_used.is_empty() {
            let uses: Vec<(KeyId, DateTime<Utc>)> = self.last_used.drain().collect();
            if let Err(error) = store::record_last_used(pool, &uses).await {
                tracing::warn!(%error, keys = uses.len(), "could not record last use; will retry");
                for (id, at) in uses {
                    self.last_used.entry(id).or_insert(at);
                }
            }
        }
        if !self.events.is_empty() {
            if let Err(error) = append_all(pool, &self.events).await {
                tracing::warn!(%error, events = self.events.len(), "could not write audit events; will retry");
                if self.events.len() > MAX_PENDING_EVENTS {
                    let excess = self.events.len() - MAX_PENDING_EVENTS;
                    tracing::error!(
                        dropped = excess,
                        "audit backlog full; dropping the oldest verify failures"
                    );
                    self.events.drain(..excess);
                }
            } else {
                self.events.clear();
            }
        }
    }
}

async fn append_all(pool: &PgPool, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    repo::audit::append_all(&mut tx, events).await?;
    tx.commit().await
}
