//! Work that runs beside the server, started by `App::serve` and by nothing else:
//! - the verify engine's change listener and usage writer (`verify::Tasks`);
//! - the pruner, here: it forgets what can no longer matter, so that no table grows with time.
//!   Replay-store entries go once their signature's window has closed (such a signature is
//!   refused as expired anyway), rate-limit windows once they are over, verification counts
//!   after [`USAGE_RETENTION`]. Login failures are
//!   forgotten by the login throttle itself, as attempts come in;
//! - the checkpointer: it signs the head of every audit chain with new events each minute
//!   (and `App::serve` once more at shutdown).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

use crate::clock::Clock;
use crate::repo;
use crate::verify::store;

/// How often the pruner runs.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Rate windows are at most a day long: one that started two days ago is over.
const RATE_WINDOW_RETENTION: chrono::Duration = chrono::Duration::days(2);

/// How long verification counts are kept: long enough to bill a quarter and compare it with the
/// one before.
pub const USAGE_RETENTION: chrono::Duration = chrono::Duration::days(400);

/// What one pruning pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub replays: u64,
    pub rate_windows: u64,
    pub usage_counts: u64,
}

/// One pruning pass, as of `now`.
pub async fn prune(pool: &PgPool, now: DateTime<Utc>) -> Result<Pruned, sqlx::Error> {
    Ok(Pruned {
        replays: store::prune_replays(pool, now).await?,
        rate_windows: store::prune_rate_windows(pool, now - RATE_WINDOW_RETENTION).await?,
        usage_counts: repo::usage::prune(pool, now - USAGE_RETENTION).await?,
    })
}

/// Prunes every [`PRUNE_INTERVAL`] until the pool is closed (and lets go of it then).
pub fn spawn_pruner(pool: PgPool, clock: Clock) {
    tokio::spawn(async move {
        // The first pass one interval after the start: a replica that just started has
        // nothing of its own to prune yet.
        let start = tokio::time::Instant::now() + PRUNE_INTERVAL;
        let mut ticker = tokio::time::interval_at(start, PRUNE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closed = pool.close_event();
        tokio::pin!(closed);
        loop {
            tokio::select! {
                _ = &mut closed => return,
                _ = ticker.tick() => match prune(&pool, clock.now()).await {
                    Ok(pruned) => tracing::debug!(?pruned, "pruned"),
                    Err(_) if pool.is_closed() => return,
                    Err(error) => tracing::warn!(%error, "could not prune the replay store and rate windows"),
                },
            }
        }
    });
}

/// How often the audit chains' heads are signed (when they have new events).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// Signs checkpoints every [`CHECKPOINT_INTERVAL`] until the pool is closed (`App::serve`
/// signs once more at shutdown).
pub fn spawn_checkpointer(ctx: crate::service::Context) {
    if ctx.audit_key.is_none() {
        return;
    }
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + CHECKPOINT_INTERVAL;
        let mut ticker = tokio::time::interval_at(start, CHECKPOINT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closed = ctx.pool.close_event();
        tokio::pin!(closed);
        loop {
            tokio::select! {
                _ = &mut closed => return,
                _ = ticker.tick() => match crate::service::audit::sign_checkpoints(&ctx).await {
                    Ok(signed) => tracing::debug!(signed, "audit checkpoints signed"),
                    Err(_) if ctx.pool.is_closed() => return,
                    Err(error) => tracing::warn!(%error, "could not sign audit checkpoints"),
                },
            }
        }
    });
}
