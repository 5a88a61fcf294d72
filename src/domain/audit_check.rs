//! Checking an audit chain: every event's hash from its fields and its predecessor's hash, and
//! every checkpoint's signature, event count and hash. Pure: the events come from the database
//! or from an export, the public keys from the database or from `/v1/audit/public-key`, and the
//! signature check from the caller (`crypto::audit_key::verifies`). The first broken link is
//! named.

use std::collections::HashMap;

use super::audit::{AuditEvent, Checkpoint};

/// Whether a signature (third) of a message (second) verifies with a raw public key (first).
pub type SignatureCheck = fn(&[u8], &[u8], &[u8]) -> bool;

/// What holds for a chain that checks out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub events: u64,
    pub checkpoints: u64,
    /// The newest event a checkpoint covers (`None`: no checkpoint).
    pub signed_up_to: Option<i64>,
}

/// The first thing that does not hold.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("event {0}: its fields do not give its hash (the row was altered)")]
    Altered(i64),
    #[error(
        "event {0}: prev_hash does not name the event before it (a row before it was removed, inserted or reordered)"
    )]
    Unlinked(i64),
    #[error("checkpoint {0}: its signature does not verify with the key it names (forged or altered)")]
    Forged(i64),
    #[error("checkpoint {0}: signed by key {1}, which is not among the public keys")]
    UnknownKey(i64, String),
    #[error("checkpoint {checkpoint}: it covers {signed} events up to event {event}, the chain holds {found} (rows were removed or added)")]
    Miscounted {
        checkpoint: i64,
        event: i64,
        signed: i64,
        found: u64,
    },
    #[error("checkpoint {checkpoint}: event {event} it covers has another hash now")]
    Rehashed { checkpoint: i64, event: i64 },
    #[error("checkpoint {checkpoint}: event {event} it covers is missing")]
    Missing { checkpoint: i64, event: i64 },
    #[error("events cut off: checkpoint {checkpoint} covers up to event {event}, the chain ends at {last}")]
    CutOff { checkpoint: i64, event: i64, last: String },
    #[error("event {0}: out of order (ids must ascend)")]
    OutOfOrder(i64),
    #[error("event {event} of {at} is under no checkpoint: checkpoints after it were removed, or signing stopped")]
    Unsigned { event: i64, at: String },
    #[error("the chain resumes at checkpoint {0}, which is not among its checkpoints")]
    NoAnchor(i64),
}

/// How old an event may be and not yet be under a checkpoint: heads are signed every minute.
pub const SIGNED_WITHIN: chrono::Duration = chrono::Duration::minutes(5);

/// Checks one chain: `events` oldest first, `checkpoints` of that chain in any order, `keys`
/// the raw public keys by key id.
pub fn check_chain(
    events: impl IntoIterator<Item = AuditEvent>,
    checkpoints: &[Checkpoint],
    keys: &HashMap<String, Vec<u8>>,
    verifies: SignatureCheck,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Checked, Broken> {
    check_chain_from(events, checkpoints, None, keys, verifies, now)
}

/// [`check_chain`] of a chain resuming at the checkpoint `anchor` (its events up to there
/// archived); `None`: from its first event.
pub fn check_chain_from(
    events: impl IntoIterator<Item = AuditEvent>,
    checkpoints: &[Checkpoint],
    anchor: Option<i64>,
    keys: &HashMap<String, Vec<u8>>,
    verifies: SignatureCheck,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Checked, Broken> {
    let mut check = ChainCheck::new(checkpoints, keys, verifies)?;
    if let Some(anchor) = anchor {
        check.resume_at(anchor)?;
    }
    for event in events {
        check.push(event)?;
    }
    check.finish(now)
}

/// A chain being checked, an event at a time (so a chain of any length fits in memory).
pub struct ChainCheck<'a> {
    pending: std::iter::Peekable<std::vec::IntoIter<&'a Checkpoint>>,
    checked: Checked,
    previous: Option<(i64, String)>,
    /// The oldest event under no checkpoint yet.
    oldest_unsigned: Option<(i64, chrono::DateTime<chrono::Utc>)>,
}

impl<'a> ChainCheck<'a> {
    /// Verifies every checkpoint's signature first: a forged one is named before any event.
    pub fn new(
        checkpoints: &'a [Checkpoint],
        keys: &HashMap<String, Vec<u8>>,
        verifies: SignatureCheck,
    ) -> Result<Self, Broken> {
        let mut by_event: Vec<&Checkpoint> = checkpoints.iter().collect();
        by_event.sort_by_key(|c| (c.event_id, c.id));
        for checkpoint in &by_event {
            let key = keys
                .get(&checkpoint.key_id)
                .ok_or_else(|| Broken::UnknownKey(checkpoint.id, checkpoint.key_id.clone()))?;
            let signature = hex::decode(&checkpoint.signature).unwrap_or_default();
            if !verifies(key, checkpoint.signed_message().as_bytes(), &signature) {
                return Err(Broken::Forged(checkpoint.id));
            }
        }
        Ok(ChainCheck {
            pending: by_event.into_iter().peekable(),
            checked: Checked::default(),
            previous: None,
            oldest_unsigned: None,
        })
    }

    /// A check of the events after `previous` (the id and hash of the event before them;
    /// `None`: from the chain's first event) against no checkpoint: links and hashes only.
    pub fn continuing(previous: Option<(i64, String)>) -> ChainCheck<'static> {
        ChainCheck {
            pending: Vec::new().into_iter().peekable(),
            checked: Checked::default(),
            previous,
            oldest_unsigned: None,
        }
    }

    /// Resumes after the events archived up to `checkpoint` (the chain's anchor, one of the
    /// checkpoints given, so its signature was checked): the next event must link to its hash,
    /// and counting goes on from its count. Checkpoints before it are not checked again.
    pub fn resume_at(&mut self, checkpoint: i64) -> Result<(), Broken> {
        let anchor: &Checkpoint = self
            .pending
            .clone()
            .find(|c| c.id == checkpoint)
            .ok_or(Broken::NoAnchor(checkpoint))?;
        while self.pending.next_if(|c| c.event_id <= anchor.event_id).is_some() {}
        self.previous = Some((anchor.event_id, anchor.hash.clone()));
        self.checked.events = u64::try_from(anchor.event_count).unwrap_or(0);
        self.checked.checkpoints += 1;
        self.checked.signed_up_to = Some(anchor.event_id);
        Ok(())
    }

    /// The chain's next event.
    pub fn push(&mut self, event: AuditEvent) -> Result<(), Broken> {
        if self.previous.as_ref().is_some_and(|(id, _)| event.id <= *id) {
            return Err(Broken::OutOfOrder(event.id));
        }
        if event.prev_hash.as_deref() != self.previous.as_ref().map(|(_, hash)| hash.as_str()) {
            return Err(Broken::Unlinked(event.id));
        }
        if event.recomputed_hash().as_deref() != Some(event.hash.as_str()) {
            return Err(Broken::Altered(event.id));
        }
        self.checked.events += 1;
        self.oldest_unsigned.get_or_insert((event.id, event.occurred_at));
        while let Some(checkpoint) = self.pending.next_if(|c| c.event_id <= event.id) {
            self.check_covered(checkpoint, &event)?;
            self.oldest_unsigned = None;
        }
        self.previous = Some((event.id, event.hash));
        Ok(())
    }

    /// `checkpoint` (whose event is at or before `event`) against the chain so far.
    fn check_covered(&mut self, checkpoint: &Checkpoint, event: &AuditEvent) -> Result<(), Broken> {
        let (id, event_id) = (checkpoint.id, checkpoint.event_id);
        if event_id < event.id {
            return Err(Broken::Missing {
                checkpoint: id,
                event: event_id,
            });
        }
        if checkpoint.hash != event.hash {
            return Err(Broken::Rehashed {
                checkpoint: id,
                event: event_id,
            });
        }
        if u64::try_from(checkpoint.event_count).ok() != Some(self.checked.events) {
            return Err(Broken::Miscounted {
                checkpoint: id,
                event: event_id,
                signed: checkpoint.event_count,
                found: self.checked.events,
            });
        }
        self.checked.checkpoints += 1;
        self.checked.signed_up_to = Some(event_id);
        Ok(())
    }

    /// The end of the chain, checked at `now`: a checkpoint beyond its last event means events
    /// were cut off, and an event older than [`SIGNED_WITHIN`] under no checkpoint means
    /// checkpoints were removed (or nothing signs).
    pub fn finish(mut self, now: chrono::DateTime<chrono::Utc>) -> Result<Checked, Broken> {
        if let Some(checkpoint) = self.pending.next() {
            let last = self
                .previous
                .map_or_else(|| "before its first event".to_owned(), |(id, _)| format!("event {id}"));
            return Err(Broken::CutOff {
                checkpoint: checkpoint.id,
                event: checkpoint.event_id,
                last,
            });
        }
        if let Some((event, at)) = self.oldest_unsigned.filter(|(_, at)| *at < now - SIGNED_WITHIN) {
            return Err(Broken::Unsigned {
                event,
                at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        Ok(self.checked)
    }
}
