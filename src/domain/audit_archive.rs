//! The archive `keyward audit archive` writes, and checking one on its own. NDJSON, one object
//! a line, each with its `type`:
//!
//! - `archive` (first): the format `version`, `before` (the date asked for) and the public keys
//!   of every audit key that signed (`public_keys`, raw Ed25519 keys in hex);
//! - `chain`: a chain (`tenant_id`, `null` for the platform's), its checkpoints up to and with
//!   the one it was cut at (its anchor, the last), and `resumes_at`: the checkpoint an earlier
//!   archive of the chain ended at (also among `checkpoints`), `null` when this one starts at
//!   the chain's first event;
//! - `event`: the chain's events, oldest first, each as the NDJSON export has it.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::audit::{AuditEvent, Checkpoint};
use super::audit_check::{Broken, ChainCheck, Checked, SignatureCheck};
use super::ids::TenantId;

pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ArchiveLine {
    Archive {
        version: u32,
        before: chrono::DateTime<chrono::Utc>,
        public_keys: Vec<String>,
    },
    Chain {
        tenant_id: Option<TenantId>,
        resumes_at: Option<i64>,
        checkpoints: Vec<Checkpoint>,
    },
    Event {
        event: Box<AuditEvent>,
    },
}

/// Why an archive cannot be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("line {0}: {1}")]
    Unreadable(usize, String),
    #[error("not a keyward audit archive: the first line is not its `archive` header")]
    NoHeader,
    #[error("archive version {0} is not one this keyward reads ({VERSION})")]
    Version(u32),
    #[error("line {0}: an event before any chain")]
    Orphan(usize),
}

/// What checking each chain of an archive gave, by chain (`None`: the platform's).
pub type ChainResults = Vec<(Option<TenantId>, Result<Checked, Broken>)>;

/// Checks every chain of the archive in `lines`, with `keys` (raw public keys by id) or, when
/// `None`, the keys the archive names (which whoever wrote it chose: an auditor passes the keys
/// they trust). Every event must be under the chain's last checkpoint: an archive holds events
/// up to its anchor, nothing after it.
pub fn check_archive(
    lines: impl IntoIterator<Item = std::io::Result<String>>,
    keys: Option<&HashMap<String, Vec<u8>>>,
    key_id_of: fn(&[u8; 32]) -> String,
    verifies: SignatureCheck,
) -> Result<ChainResults, ArchiveError> {
    let mut lines = lines
        .into_iter()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(n, line)| {
            let line = line.map_err(|e| ArchiveError::Unreadable(n + 1, e.to_string()))?;
            serde_json::from_str::<ArchiveLine>(&line)
                .map(|parsed| (n + 1, parsed))
                .map_err(|e| ArchiveError::Unreadable(n + 1, e.to_string()))
        })
        .peekable();
    let named_keys = match lines.next().transpose()? {
        Some((
            _,
            ArchiveLine::Archive {
                version, public_keys, ..
            },
        )) => {
            if version != VERSION {
                return Err(ArchiveError::Version(version));
            }
            public_keys
                .iter()
                .filter_map(|hex_key| hex::decode(hex_key).ok()?.try_into().ok())
                .map(|raw: [u8; 32]| (key_id_of(&raw), raw.to_vec()))
                .collect()
        }
        _ => return Err(ArchiveError::NoHeader),
    };
    let keys = keys.unwrap_or(&named_keys);
    let mut results = Vec::new();
    while let Some(line) = lines.next().transpose()? {
        let (n, line) = line;
        let ArchiveLine::Chain {
            tenant_id,
            resumes_at,
            checkpoints,
        } = line
        else {
            return Err(ArchiveError::Orphan(n));
        };
        let mut check = ChainCheck::new(&checkpoints, keys, verifies).and_then(|mut check| {
            if let Some(anchor) = resumes_at {
                check.resume_at(anchor)?;
            }
            Ok(check)
        });
        // The chain's events; after the first broken link the rest are only read past. An
        // unreadable line stops at the outer loop.
        let is_event =
            |line: &Result<(usize, ArchiveLine), ArchiveError>| matches!(line, Ok((_, ArchiveLine::Event { .. })));
        while let Some(Ok((_, ArchiveLine::Event { event }))) = lines.next_if(is_event) {
            if let Ok(running) = &mut check {
                if let Err(broken) = running.push(*event) {
                    check = Err(broken);
                }
            }
        }
        // Every archived event is under a checkpoint: check as if signing were long overdue.
        let checked = check.and_then(|check| check.finish(chrono::DateTime::<chrono::Utc>::MAX_UTC));
        results.push((tenant_id, checked));
    }
    Ok(results)
}
