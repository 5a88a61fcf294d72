//! The usage writer: what verification records without a database write per call.
//! - Outcomes are counted per (tenant, key or none, code, minute) and added to
//!   `verification_counts` in one statement per batch: a flood of refused calls grows a count,
//!   never a table.
//! - A refused verification of a real key gets one coalesced `key.verify_failed` audit event per
//!   key, code and minute on each replica, with how many there were; a token that matches no
//!   key gets none (it is counted under the caller's tenant).
//! - A key's last use is the instant its minute's `VALID` counter keeps: verifying a key writes
//!   no `api_keys` row. Service tokens (callers, not verified keys) have their `last_used_at`
//!   updates coalesced per token.
//!
//! All of it is written every interval, on `flush` and on shutdown; events wait for their minute
//! to end (or a flush), so that the count is complete. [`UsageRecorder`] is the half every
//! verification holds (it never waits: the tallies are behind a lock held for a map update);
//! [`UsageWriter`] the background task, started by `App::serve`.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::spool::{self, Spooled, SpooledCount, SpooledRefusal};
use super::{store, VerifyCode};
use crate::clock::Clock;
use crate::domain::audit::NewAuditEvent;
use crate::domain::ids::{KeyId, TenantId};
use crate::repo;
use crate::repo::usage::{Count, Tally};
use std::path::{Path, PathBuf};

const CHANNEL_CAPACITY: usize = 16_384;
/// Coalesced events kept while the database is unreachable; beyond it new ones are dropped
/// (their calls are still counted).
const MAX_PENDING_EVENTS: usize = 100_000;
/// Distinct counters kept while the database is unreachable; beyond it new ones are dropped.
const MAX_PENDING_COUNTS: usize = 1_000_000;

enum Message {
    Used(KeyId, DateTime<Utc>),
    Flush(oneshot::Sender<Unwritten>),
    /// A flush at shutdown: what cannot be written goes to the spool; answers what was lost.
    Spool(oneshot::Sender<Unwritten>),
}

/// One verification outcome: whose, of which key (if the token matched one), which code, when.
pub struct Outcome<'a> {
    pub tenant: Option<TenantId>,
    pub key: Option<&'a KeyId>,
    pub code: VerifyCode,
    pub at: DateTime<Utc>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RefusalKey {
    key: KeyId,
    code: VerifyCode,
    minute: DateTime<Utc>,
}

/// What one write takes out of the tallies: the counters, and the events due.
struct Batch {
    counts: Vec<(Count, Tally)>,
    events: Vec<(RefusalKey, Coalesced)>,
}

struct Coalesced {
    /// The event of the first refusal of its minute; the count is added when it is written.
    event: NewAuditEvent,
    count: i64,
}

#[derive(Default)]
struct Tallies {
    counts: HashMap<Count, Tally>,
    refusals: HashMap<RefusalKey, Coalesced>,
    /// Refusals whose event was written before their minute ended (a flush): the rest of that
    /// minute is counted only, so there is still one event per key, code and minute.
    written: HashSet<RefusalKey>,
}

/// What a flush could not write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unwritten {
    /// Verification counters (each a tenant, key, code and minute).
    pub counts: usize,
    /// Coalesced `key.verify_failed` events.
    pub events: usize,
    /// Service tokens' `last_used_at` updates.
    pub last_uses: usize,
}

impl Unwritten {
    pub fn is_empty(&self) -> bool {
        *self == Unwritten::default()
    }
}

impl Tallies {
    fn unwritten(&self, last_uses: usize) -> Unwritten {
        Unwritten {
            counts: self.counts.len(),
            events: self.refusals.len(),
            last_uses,
        }
    }
}

#[derive(Clone, Debug)]
pub struct UsageRecorder {
    sender: mpsc::Sender<Message>,
    tallies: Arc<Mutex<Tallies>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Tallies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tallies({} counts, {} refusals)",
            self.counts.len(),
            self.refusals.len()
        )
    }
}

/// The background half: writes what the recorders tally and send.
pub struct UsageWriter {
    receiver: mpsc::Receiver<Message>,
    tallies: Arc<Mutex<Tallies>>,
}

pub fn channel() -> (UsageRecorder, UsageWriter) {
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let tallies = Arc::new(Mutex::new(Tallies::default()));
    let recorder = UsageRecorder {
        sender,
        tallies: tallies.clone(),
        dropped: Arc::default(),
    };
    (recorder, UsageWriter { receiver, tallies })
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

impl UsageRecorder {
    /// Notes a service token's use. Under overload a note may be dropped: a later use records
    /// it again.
    pub fn token_used(&self, id: &KeyId, at: DateTime<Utc>) {
        let _ = self.sender.try_send(Message::Used(id.clone(), at));
    }

    /// Counts an outcome; for a refusal of a real key, `event` makes the audit event of the first
    /// refusal of its key, code and minute (called at most once per minute).
    pub fn outcome(&self, outcome: Outcome<'_>, event: impl FnOnce() -> NewAuditEvent) {
        let minute = minute_of(outcome.at);
        let Ok(mut tallies) = self.tallies.lock() else { return };
        let counter = Count {
            tenant: outcome.tenant,
            key: outcome.key.cloned(),
            code: outcome.code.as_str(),
            minute,
        };
        let tally = Tally::one((outcome.code == VerifyCode::Valid && outcome.key.is_some()).then_some(outcome.at));
        let full = tallies.counts.len() >= MAX_PENDING_COUNTS;
        match tallies.counts.get_mut(&counter) {
            Some(counted) => counted.add(tally),
            None if full => return self.dropped_one(),
            None => {
                tallies.counts.insert(counter, tally);
            }
        }
        let (Some(key), false) = (outcome.key, outcome.code == VerifyCode::Valid) else {
            return;
        };
        let refusal = RefusalKey {
            key: key.clone(),
            code: outcome.code,
            minute,
        };
        if tallies.written.contains(&refusal) {
            return;
        }
        let full = tallies.refusals.len() >= MAX_PENDING_EVENTS;
        match tallies.refusals.get_mut(&refusal) {
            Some(coalesced) => coalesced.count += 1,
            None if full => self.dropped_one(),
            None => {
                tallies.refusals.insert(
                    refusal,
                    Coalesced {
                        event: event(),
                        count: 1,
                    },
                );
            }
        }
    }

    fn dropped_one(&self) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(
                dropped,
                "verification tallies are full (is the database away?): outcomes go uncounted"
            );
        }
    }

    /// How many outcomes or refusal events went unrecorded because the tallies were full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes everything tallied and queued so far and waits until it is written; returns what
    /// could not be (the database is away): it stays queued for the next write.
    pub async fn flush(&self) -> Unwritten {
        let (ack, done) = oneshot::channel();
        if self.sender.send(Message::Flush(ack)).await.is_ok() {
            if let Ok(unwritten) = done.await {
                return unwritten;
            }
        }
        // No writer (a context that does not serve): everything tallied is unwritten.
        self.tallies
            .lock()
            .map_or_else(|_| Unwritten::default(), |t| t.unwritten(0))
    }
}

impl UsageRecorder {
    /// The flush at shutdown: writes what it can, spools the rest (when a spool directory is
    /// set), and returns what is lost.
    pub async fn flush_or_spool(&self) -> Unwritten {
        let (ack, done) = oneshot::channel();
        if self.sender.send(Message::Spool(ack)).await.is_ok() {
            if let Ok(lost) = done.await {
                return lost;
            }
        }
        self.tallies
            .lock()
            .map_or_else(|_| Unwritten::default(), |t| t.unwritten(0))
    }
}

impl UsageWriter {
    /// Writes until every recorder is gone, then writes what is left. First takes in what
    /// earlier runs spooled in `spool_dir`, and deletes those files once all is written.
    pub async fn run(mut self, pool: PgPool, interval: Duration, clock: Clock, spool_dir: Option<PathBuf>) {
        let mut last_used: HashMap<KeyId, DateTime<Utc>> = HashMap::new();
        let mut spooled_files = match &spool_dir {
            Some(dir) => self.take_in_spool(dir, &mut last_used),
            None => Vec::new(),
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = self.receiver.recv() => match message {
                    None => {
                        self.write(&pool, &mut last_used, minute_of(clock.now()), true).await;
                        return;
                    }
                    Some(Message::Spool(ack)) => {
                        let written = self.write(&pool, &mut last_used, minute_of(clock.now()), true).await;
                        if written {
                            remove_spooled(&mut spooled_files);
                        }
                        let _ = ack.send(self.spool(spool_dir.as_deref(), &mut last_used));
                    }
                    Some(Message::Used(id, at)) => {
                        let entry = last_used.entry(id).or_insert(at);
                        *entry = (*entry).max(at);
                    }
                    Some(Message::Flush(ack)) => {
                        if self.write(&pool, &mut last_used, minute_of(clock.now()), true).await {
                            remove_spooled(&mut spooled_files);
                        }
                        let unwritten = self.tallies.lock().map_or_else(|_| Unwritten::default(), |t| t.unwritten(last_used.len()));
                        let _ = ack.send(unwritten);
                    }
                },
                _ = ticker.tick() => {
                    if self.write(&pool, &mut last_used, minute_of(clock.now()), false).await {
                        remove_spooled(&mut spooled_files);
                    }
                }
            }
        }
    }

    /// Writes the counts, the last uses, and the events of minutes before `now_minute` (or
    /// every event, with `all`); what cannot be written is kept for the next turn. `true` when
    /// every write that was due succeeded.
    async fn write(
        &self,
        pool: &PgPool,
        last_used: &mut HashMap<KeyId, DateTime<Utc>>,
        now_minute: DateTime<Utc>,
        all: bool,
    ) -> bool {
        let mut written = true;
        let Batch { counts, events } = self.take(now_minute, all);
        if !counts.is_empty() {
            if let Err(error) = repo::usage::add(pool, &counts).await {
                tracing::warn!(%error, counters = counts.len(), "could not write verification counts; will retry");
                self.put_back_counts(counts);
                written = false;
            }
        }
        if !last_used.is_empty() {
            let uses: Vec<(KeyId, DateTime<Utc>)> = last_used.drain().collect();
            if let Err(error) = store::record_last_used(pool, &uses).await {
                tracing::warn!(%error, keys = uses.len(), "could not record last use; will retry");
                for (id, at) in uses {
                    last_used.entry(id).or_insert(at);
                }
                written = false;
            }
        }
        if !events.is_empty() {
            let written: Vec<NewAuditEvent> = events.iter().map(|(_, coalesced)| with_count(coalesced)).collect();
            if let Err(error) = append_all(pool, &written).await {
                tracing::warn!(%error, events = written.len(), "could not write audit events; will retry");
                self.put_back_events(events);
                return false;
            }
        }
        written
    }

    /// Moves what is still unwritten into a spool file; returns what is lost (all of it when
    /// there is no spool directory or the file cannot be written).
    fn spool(&self, dir: Option<&Path>, last_used: &mut HashMap<KeyId, DateTime<Utc>>) -> Unwritten {
        let Ok(mut tallies) = self.tallies.lock() else {
            return Unwritten::default();
        };
        let unwritten = tallies.unwritten(last_used.len());
        let Some(dir) = dir.filter(|_| !unwritten.is_empty()) else {
            return unwritten;
        };
        let spooled = Spooled {
            counts: tallies.counts.iter().map(|(c, t)| SpooledCount::of(c, *t)).collect(),
            last_uses: last_used.iter().map(|(id, at)| (id.as_str().to_owned(), *at)).collect(),
            refusals: tallies
                .refusals
                .iter()
                .map(|(r, c)| SpooledRefusal::of(&r.key, r.code, r.minute, c.count, &c.event))
                .collect(),
        };
        match spool::write(dir, &spooled) {
            Ok(path) => {
                tracing::warn!(?unwritten, path = %path.display(), "the database could not be reached at shutdown: spooled for the next start");
                tallies.counts.clear();
                tallies.refusals.clear();
                last_used.clear();
                Unwritten::default()
            }
            Err(error) => {
                tracing::error!(%error, dir = %dir.display(), "could not write the spool");
                unwritten
            }
        }
    }

    /// Takes in every spool file of `dir`; returns their paths, to delete once written.
    fn take_in_spool(&self, dir: &Path, last_used: &mut HashMap<KeyId, DateTime<Utc>>) -> Vec<PathBuf> {
        let found = spool::read_all(dir);
        let Ok(mut tallies) = self.tallies.lock() else {
            return Vec::new();
        };
        let mut paths = Vec::new();
        for (path, spooled) in found {
            for (counter, tally) in spooled.counts.iter().filter_map(SpooledCount::counter) {
                add(&mut tallies.counts, counter, tally);
            }
            for (id, at) in spooled.last_uses {
                let entry = last_used.entry(KeyId::from_trusted(id)).or_insert(at);
                *entry = (*entry).max(at);
            }
            for (key, code, minute, count, event) in spooled.refusals.iter().filter_map(SpooledRefusal::refusal) {
                let refusal = RefusalKey { key, code, minute };
                match tallies.refusals.get_mut(&refusal) {
                    Some(coalesced) => coalesced.count += count,
                    None => {
                        tallies.refusals.insert(refusal, Coalesced { event, count });
                    }
                }
            }
            tracing::info!(path = %path.display(), "took in a spool file");
            paths.push(path);
        }
        paths
    }

    fn take(&self, now_minute: DateTime<Utc>, all: bool) -> Batch {
        let Ok(mut tallies) = self.tallies.lock() else {
            return Batch {
                counts: Vec::new(),
                events: Vec::new(),
            };
        };
        let counts: Vec<(Count, Tally)> = tallies.counts.drain().collect();
        let due: Vec<RefusalKey> = tallies
            .refusals
            .keys()
            .filter(|refusal| all || refusal.minute < now_minute)
            .cloned()
            .collect();
        let mut events = Vec::with_capacity(due.len());
        for refusal in due {
            if let Some(coalesced) = tallies.refusals.remove(&refusal) {
                if refusal.minute >= now_minute {
                    tallies.written.insert(refusal.clone());
                }
                events.push((refusal, coalesced));
            }
        }
        // Minutes that have ended take no more refusals (late ones a minute back are kept).
        tallies
            .written
            .retain(|refusal| refusal.minute >= now_minute - TimeDelta::minutes(1));
        Batch { counts, events }
    }

    fn put_back_counts(&self, counts: Vec<(Count, Tally)>) {
        let Ok(mut tallies) = self.tallies.lock() else { return };
        for (counter, tally) in counts {
            add(&mut tallies.counts, counter, tally);
        }
    }

    fn put_back_events(&self, events: Vec<(RefusalKey, Coalesced)>) {
        let Ok(mut tallies) = self.tallies.lock() else { return };
        for (refusal, coalesced) in events {
            tallies.written.remove(&refusal);
            match tallies.refusals.get_mut(&refusal) {
                Some(newer) => newer.count += coalesced.count,
                None => {
                    tallies.refusals.insert(refusal, coalesced);
                }
            }
        }
    }
}

fn add(counts: &mut HashMap<Count, Tally>, counter: Count, tally: Tally) {
    counts
        .entry(counter)
        .and_modify(|counted| counted.add(tally))
        .or_insert(tally);
}

/// The coalesced event as written: the first refusal's, with the minute's count.
fn with_count(coalesced: &Coalesced) -> NewAuditEvent {
    let mut event = coalesced.event.clone();
    if let serde_json::Value::Object(details) = &mut event.details {
        details.insert("count".into(), coalesced.count.into());
    }
    event
}

async fn append_all(pool: &PgPool, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    repo::audit::append_all(&mut tx, events).await?;
    tx.commit().await
}

/// Deletes spool files whose content has been written.
fn remove_spooled(files: &mut Vec<PathBuf>) {
    for path in files.drain(..) {
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(%error, path = %path.display(), "could not delete a written spool file");
        }
    }
}
