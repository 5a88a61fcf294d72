//! Retention that keeps the proof: `keyward audit archive --before DATE --out FILE`.
//!
//! Per chain, the cut is its newest checkpoint whose event occurred before DATE (and which every
//! sink has delivered past): the events up to it, and its checkpoints, go to the archive; then,
//! in one transaction, the checkpoint becomes the chain's anchor and what it covers is removed
//! (the only DELETE the triggers let through). The remaining chain verifies from the anchor, and
//! the archive on its own (`keyward audit verify --archive FILE`). Events after the cut stay,
//! even when older than DATE: they are not under a checkpoint yet.

use chrono::{DateTime, Utc};
use std::io::Write;

use super::Context;
use crate::domain::audit::Checkpoint;
use crate::domain::audit_archive::{ArchiveLine, VERSION};
use crate::repo;

/// Why an archive was not written or its events not removed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot write the archive: {0}")]
    Write(#[from] std::io::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// Events read per page while writing an archive.
const PAGE: i64 = 1000;

/// What an archive holds, chain by chain: the anchor each chain is cut at.
#[derive(Debug, Default)]
pub struct Written {
    pub anchors: Vec<Checkpoint>,
    pub events: u64,
}

/// Writes the archive of everything before `before` to `out` (NDJSON, see
/// `domain::audit_archive`), removing nothing yet.
pub async fn write_archive(ctx: &Context, before: DateTime<Utc>, out: &mut impl Write) -> Result<Written> {
    let public_keys = repo::checkpoints::public_keys(&ctx.pool)
        .await?
        .into_iter()
        .map(|(_, key)| hex::encode(key))
        .collect();
    write_line(
        out,
        &ArchiveLine::Archive {
            version: VERSION,
            before,
            public_keys,
        },
    )?;
    let mut written = Written::default();
    for tenant in repo::checkpoints::chains(&ctx.pool).await? {
        let resumes = repo::checkpoints::anchor(&ctx.pool, tenant).await?;
        let after_event = resumes.map_or(0, |(_, event)| event);
        let Some(anchor) = repo::checkpoints::archivable(&ctx.pool, tenant, before, after_event).await? else {
            continue;
        };
        let checkpoints: Vec<Checkpoint> = repo::checkpoints::all_of_chain(&ctx.pool, tenant)
            .await?
            .into_iter()
            .filter(|c| c.event_id >= after_event && c.event_id <= anchor.event_id)
            .filter(|c| c.event_id > after_event || Some(c.id) == resumes.map(|(id, _)| id))
            .collect();
        write_line(
            out,
            &ArchiveLine::Chain {
                tenant_id: tenant,
                resumes_at: resumes.map(|(id, _)| id),
                checkpoints,
            },
        )?;
        let mut pages = repo::audit::ChainPages::new(tenant, after_event, Some(anchor.event_id), PAGE);
        while let Some(page) = pages.next(&ctx.pool).await? {
            for event in page {
                write_line(out, &ArchiveLine::Event { event: Box::new(event) })?;
                written.events += 1;
            }
        }
        written.anchors.push(anchor);
    }
    Ok(written)
}

fn write_line(out: &mut impl Write, line: &ArchiveLine) -> Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    Ok(out.write_all(b"\n")?)
}

/// Removes what `written` archived, in one transaction: each anchor recorded, the events and
/// checkpoints before it gone. Returns how many events were removed.
pub async fn remove_archived(ctx: &Context, written: &Written) -> Result<u64> {
    let mut tx = ctx.pool.begin().await?;
    let mut removed = 0;
    for anchor in &written.anchors {
        removed += repo::checkpoints::archive_up_to(&mut tx, anchor).await?;
    }
    tx.commit().await?;
    Ok(removed)
}
