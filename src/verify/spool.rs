//! The spool: what the usage writer could not write at shutdown (the database unreachable),
//! kept in a local file that the next start writes. One JSON document per shutdown,
//! `usage-<unix ms>-<pid>.json` in `KEYWARD_SPOOL_DIR`; a file is deleted once everything it
//! held has been written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::VerifyCode;
use crate::domain::audit::{Actor, ActorKind, AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::ids::{KeyId, TenantId};
use crate::repo::usage::{Count, Tally};

#[derive(Default, Serialize, Deserialize)]
pub struct Spooled {
    pub counts: Vec<SpooledCount>,
    pub last_uses: Vec<(String, DateTime<Utc>)>,
    pub refusals: Vec<SpooledRefusal>,
}

#[derive(Serialize, Deserialize)]
pub struct SpooledCount {
    tenant: Option<uuid::Uuid>,
    key: Option<String>,
    code: String,
    minute: DateTime<Utc>,
    count: i64,
    /// The newest successful verification counted (absent in spools of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_at: Option<DateTime<Utc>>,
}

/// A coalesced `key.verify_failed` event: its key, code and minute, count, and the first
/// refusal's event.
#[derive(Serialize, Deserialize)]
pub struct SpooledRefusal {
    key: String,
    code: String,
    minute: DateTime<Utc>,
    count: i64,
    occurred_at: DateTime<Utc>,
    tenant: Option<uuid::Uuid>,
    actor_kind: String,
    actor_id: String,
    request_id: Option<String>,
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    details: serde_json::Value,
}

impl SpooledCount {
    pub fn of(counter: &Count, tally: Tally) -> Self {
        SpooledCount {
            tenant: counter.tenant.map(|t| t.0),
            key: counter.key.as_ref().map(|k| k.as_str().to_owned()),
            code: counter.code.to_owned(),
            minute: counter.minute,
            count: tally.count,
            last_at: tally.last_at,
        }
    }

    /// Back as a counter; `None` for a code this version does not know.
    pub fn counter(&self) -> Option<(Count, Tally)> {
        let code: VerifyCode = self.code.parse().ok()?;
        let counter = Count {
            tenant: self.tenant.map(TenantId),
            key: self.key.clone().map(KeyId::from_trusted),
            code: code.as_str(),
            minute: self.minute,
        };
        let tally = Tally {
            count: self.count,
            last_at: self.last_at,
        };
        Some((counter, tally))
    }
}

impl SpooledRefusal {
    pub fn of(key: &KeyId, code: VerifyCode, minute: DateTime<Utc>, count: i64, event: &NewAuditEvent) -> Self {
        SpooledRefusal {
            key: key.as_str().to_owned(),
            code: code.as_str().to_owned(),
            minute,
            count,
            occurred_at: event.occurred_at,
            tenant: event.tenant_id.map(|t| t.0),
            actor_kind: event.actor.kind.as_str().to_owned(),
            actor_id: event.actor.id.clone(),
            request_id: event.meta.request_id.clone(),
            ip: event.meta.ip,
            user_agent: event.meta.user_agent.clone(),
            details: event.details.clone(),
        }
    }

    /// Back as (key, code, minute, count, event); `None` for what this version does not know.
    pub fn refusal(&self) -> Option<(KeyId, VerifyCode, DateTime<Utc>, i64, NewAuditEvent)> {
        let code: VerifyCode = self.code.parse().ok()?;
        let actor = Actor {
            kind: ActorKind::parse(&self.actor_kind)?,
            id: self.actor_id.clone(),
        };
        let meta = RequestMeta {
            request_id: self.request_id.clone(),
            ip: self.ip,
            user_agent: self.user_agent.clone(),
        };
        let key = KeyId::from_trusted(self.key.clone());
        let event = NewAuditEvent::new(
            self.occurred_at,
            &actor,
            &meta,
            self.tenant.map(TenantId),
            AuditAction::KeyVerifyFailed,
            Outcome::Denied,
        )
        .target("key", &key)
        .details(self.details.clone());
        Some((key, code, self.minute, self.count, event))
    }
}

/// Writes `spooled` to a new file in `dir` (created if missing); returns its path. The file is
/// readable by keyward's user only: refusal events carry addresses and user agents.
pub fn write(dir: &Path, spooled: &Spooled) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let name = format!("usage-{}-{}.json", Utc::now().timestamp_millis(), std::process::id());
    let path = dir.join(name);
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&partial)?;
    file.write_all(&serde_json::to_vec(spooled)?)?;
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// Every spool file in `dir`, read; unreadable ones are logged and left in place.
pub fn read_all(dir: &Path) -> Vec<(PathBuf, Spooled)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_spool = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("usage-") && n.ends_with(".json"));
        if !is_spool {
            continue;
        }
        match std::fs::read(&path).map(|bytes| serde_json::from_slice::<Spooled>(&bytes)) {
            Ok(Ok(spooled)) => found.push((path, spooled)),
            Ok(Err(error)) => tracing::error!(%error, path = %path.display(), "unreadable spool file left in place"),
            Err(error) => tracing::error!(%error, path = %path.display(), "could not read a spool file"),
        }
    }
    found
}
