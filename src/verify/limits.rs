//! Usage limits, applied once a key has passed every other check: its rate limit (fixed windows
//! counted in PostgreSQL, so every replica shares them) and its remaining verifications. Only keys
//! that have a limit pay the write this takes. A key and its successors are one family: they
//! share one window and one counter, so rotating a key never multiplies its limits.

use chrono::{DateTime, Utc};

use super::store::{self, FamilyUse};
use super::VerifyCode;
use crate::domain::key::Key;
use crate::service::{Context, Result};

/// `Ok(remaining)` (after this use, for limited keys) or the code that refuses the key.
pub async fn consume(ctx: &Context, key: &Key, now: DateTime<Utc>) -> Result<Result<Option<i64>, VerifyCode>> {
    if let Some(rate) = key.rate_limit {
        let window = i64::from(rate.window_seconds);
        let start = DateTime::from_timestamp(now.timestamp().div_euclid(window) * window, 0).unwrap_or(now);
        let hits = store::hit_rate_window(&ctx.pool, &key.limit_family, start).await?;
        if hits > rate.limit {
            return Ok(Err(VerifyCode::RateLimited));
        }
    }
    if key.remaining.is_none() {
        return Ok(Ok(None));
    }
    match store::use_one(&ctx.pool, &key.limit_family).await? {
        FamilyUse::Used(left) => Ok(Ok(Some(left))),
        FamilyUse::Unlimited => Ok(Ok(None)),
        FamilyUse::Exhausted => Ok(Err(VerifyCode::UsageExceeded)),
    }
}
