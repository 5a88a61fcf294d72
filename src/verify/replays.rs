//! The replay store, group-committed: every accepted signature is remembered in
//! `signature_replays` until its window closes, so that a second use is refused on every
//! replica. Callers do not write one row each: they queue their signature, one writer inserts
//! everything queued in one statement while the previous one runs, and answers each caller when
//! its batch has committed. Nobody gets `VALID` before their signature is stored.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashSet;
use tokio::sync::{mpsc, oneshot};

use super::store;
use crate::domain::ids::KeyId;

/// Signatures one statement stores at most.
const BATCH: usize = 512;
const QUEUE: usize = 8192;

/// A signature to remember.
pub struct Signature {
    pub key: KeyId,
    pub digest: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

struct Pending {
    signature: Signature,
    answer: oneshot::Sender<Result<bool, sqlx::Error>>,
}

/// The sending half every verification holds.
#[derive(Clone, Debug)]
pub struct ReplayStore {
    sender: mpsc::Sender<Pending>,
}

/// The writer, started by `Tasks::start`. When it is never started (a context built without
/// serving), the store writes each signature itself.
pub struct ReplayWriter {
    receiver: mpsc::Receiver<Pending>,
}

pub fn channel() -> (ReplayStore, ReplayWriter) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    (ReplayStore { sender }, ReplayWriter { receiver })
}

impl ReplayStore {
    /// Remembers a signature; `false` when it was remembered before (a replay).
    pub async fn remember(&self, pool: &PgPool, signature: Signature) -> Result<bool, sqlx::Error> {
        let (answer, answered) = oneshot::channel();
        match self.sender.send(Pending { signature, answer }).await {
            Ok(()) => answered.await.unwrap_or(Err(sqlx::Error::PoolClosed)),
            Err(mpsc::error::SendError(pending)) => {
                let s = pending.signature;
                store::remember_signature(pool, &s.key, &s.digest, s.expires_at).await
            }
        }
    }
}

impl ReplayWriter {
    /// Stores what is queued, a batch at a time, until every store is gone.
    pub async fn run(mut self, pool: PgPool) {
        let mut batch = Vec::with_capacity(BATCH);
        while self.receiver.recv_many(&mut batch, BATCH).await > 0 {
            write(&pool, std::mem::take(&mut batch)).await;
        }
    }
}

async fn write(pool: &PgPool, batch: Vec<Pending>) {
    // A signature twice in one batch: the first is stored, the second is a replay.
    let mut seen = HashSet::with_capacity(batch.len());
    let (unique, repeats): (Vec<Pending>, Vec<Pending>) = batch
        .into_iter()
        .partition(|p| seen.insert((p.signature.key.clone(), p.signature.digest)));
    for repeat in repeats {
        let _ = repeat.answer.send(Ok(false));
    }
    let signatures: Vec<&Signature> = unique.iter().map(|p| &p.signature).collect();
    match store::remember_signatures(pool, &signatures).await {
        Ok(stored) => {
            for pending in unique {
                let first = stored.contains(&(pending.signature.key.clone(), pending.signature.digest));
                let _ = pending.answer.send(Ok(first));
            }
        }
        Err(error) => {
            tracing::warn!(%error, signatures = unique.len(), "could not store signatures");
            let copy = crate::db::same_kind(&error);
            let mut error = Some(error);
            for pending in unique {
                // The first caller gets the error itself, the others one of the same kind.
                let error = error.take().unwrap_or_else(|| crate::db::same_kind(&copy));
                let _ = pending.answer.send(Err(error));
            }
        }
    }
}
