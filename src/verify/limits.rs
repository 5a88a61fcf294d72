//! Usage limits, applied once a key has passed every other check: its rate limit, then its
//! remaining verifications. A key and its successors are one family: they share one counter
//! and one rate limit, so rotating a key never multiplies its limits.
//!
//! Exact without a database write per call: each replica takes a *slice* of a family's budget
//! from PostgreSQL in one statement and spends it in memory.
//! - `remaining`: a slice of the counter (taken off it at once, so the slices of all replicas
//!   never add up to more than was left). A slice lasts [`SLICE_LIFETIME`]; what is left of it
//!   then, or on shutdown, or when the key changes, is given back (unless the counter was set
//!   since: its epoch moved on). A replica that used its slice up quickly takes a bigger one
//!   next time, up to [`MAX_SLICE`], and never more than an eighth of what is left, so the last
//!   verifications go one at a time.
//! - `rate_limit`: a sliding window counted in buckets of a tenth of the window. A replica takes
//!   slots in the current bucket as long as the slots of the last eleven buckets stay within the
//!   limit, and gives back what it did not use once the bucket is over. Any interval of
//!   `window_seconds` lies within eleven buckets, so **no interval of the window admits more
//!   than the limit**; a caller at full speed gets `limit` per 1.1 windows.
//!
//! A refused call spends nothing: a rate slot taken for a call that `remaining` then refuses is
//! put back into the slice.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::store::{self, BudgetSlice};
use super::{Change, Verifiable, VerifyCode};
use crate::domain::ids::KeyId;
use crate::domain::key::RateLimit;

/// How long a slice of `remaining` is spent from before what is left of it is given back.
pub const SLICE_LIFETIME: Duration = Duration::from_secs(2);
/// The largest slice a replica takes of a counter or a rate bucket.
pub const MAX_SLICE: i64 = 1024;
/// Buckets per rate window.
const BUCKETS: i64 = 10;

/// What a verification of a limited key may tell its caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    /// Verifications left after this one (keys with `remaining`).
    pub remaining: Option<i64>,
    pub rate: Option<RateStatus>,
}

/// The rate limit after this call: the limit, the slots still free in the window (as far as
/// this replica knows), and when the window next slides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: i32,
    pub remaining: i32,
    pub reset: DateTime<Utc>,
}

/// A limit that refused a call: the code, and the rate limit's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub code: VerifyCode,
    pub rate: Option<RateStatus>,
}

struct BudgetLease {
    /// Not yet spent.
    left: i64,
    /// What the counter held after the slice was taken.
    counter: i64,
    epoch: i64,
    taken: Instant,
}

struct RateLease {
    bucket: DateTime<Utc>,
    ends: DateTime<Utc>,
    left: i32,
    /// Slots counted in the window (all replicas) once this slice was taken.
    used: i32,
}

#[derive(Default)]
struct Family {
    budget: Option<BudgetLease>,
    rate: Option<RateLease>,
    budget_slice: i64,
    rate_slice: i32,
}

struct Cell {
    family: tokio::sync::Mutex<Family>,
    /// A key of the family changed (or notifications were lost): give back, take afresh.
    stale: AtomicBool,
}

#[derive(Default)]
struct Book {
    families: HashMap<KeyId, Arc<Cell>>,
    /// The family of each key that spent here, so a key's change reaches its family's slices.
    family_of: HashMap<KeyId, KeyId>,
}

/// Every slice this replica holds. Cheap to clone; every clone is the same book.
#[derive(Clone, Default)]
pub struct Limits {
    book: Arc<Mutex<Book>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limits")
    }
}

/// The buckets of a rate window: each a tenth of it.
struct Buckets {
    width: TimeDelta,
}

impl Buckets {
    fn of(rate: RateLimit) -> Self {
        Buckets {
            width: TimeDelta::milliseconds(i64::from(rate.window_seconds) * 1000 / BUCKETS),
        }
    }

    fn start_of(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let width = self.width.num_milliseconds().max(1);
        let start = at.timestamp_millis().div_euclid(width) * width;
        DateTime::from_timestamp_millis(start).unwrap_or(at)
    }

    /// The first of the eleven buckets counted with the one starting at `bucket`.
    fn counted_since(&self, bucket: DateTime<Utc>) -> DateTime<Utc> {
        bucket - self.width * BUCKETS as i32
    }
}

impl Limits {
    fn cell(&self, id: &KeyId, family: &KeyId) -> Arc<Cell> {
        let mut book = self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !book.family_of.contains_key(id) {
            book.family_of.insert(id.clone(), family.clone());
        }
        book.families
            .entry(family.clone())
            .or_insert_with(|| {
                Arc::new(Cell {
                    family: tokio::sync::Mutex::new(Family::default()),
                    stale: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// `Ok(what the caller may be told)`, or why the key is refused.
    pub async fn consume(
        &self,
        pool: &PgPool,
        key: &Verifiable,
        now: DateTime<Utc>,
    ) -> Result<Result<Spent, Refused>, sqlx::Error> {
        let Some(limits) = key.limits() else {
            return Ok(Ok(Spent::default()));
        };
        let cell = self.cell(key.id(), &limits.family);
        let mut family = cell.family.lock().await;
        if cell.stale.swap(false, Ordering::AcqRel) {
            family.give_back_all(pool, &limits.family).await;
        }
        let rate = match limits.rate_limit {
            None => None,
            Some(rate) => match family.spend_rate(pool, &limits.family, rate, now).await? {
                Ok(status) => Some(status),
                Err(status) => {
                    return Ok(Err(Refused {
                        code: VerifyCode::RateLimited,
                        rate: Some(status),
                    }))
                }
            },
        };
        if !limits.usage_limited {
            return Ok(Ok(Spent { remaining: None, rate }));
        }
        match family.spend_budget(pool, &limits.family).await? {
            Budget::Spent(left) => Ok(Ok(Spent {
                remaining: Some(left),
                rate,
            })),
            Budget::Unlimited => Ok(Ok(Spent { remaining: None, rate })),
            Budget::Exhausted => {
                if let (Some(lease), Some(_)) = (family.rate.as_mut(), rate) {
                    lease.left += 1; // the refused call spends no rate slot
                }
                Ok(Err(Refused {
                    code: VerifyCode::UsageExceeded,
                    rate,
                }))
            }
        }
    }

    /// Stops trusting the slices of the family of a changed key.
    pub fn forget(&self, change: &Change) {
        let Change::Key(id) = change else { return };
        let book = self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cell) = book.family_of.get(id).and_then(|family| book.families.get(family)) {
            cell.stale.store(true, Ordering::Release);
        }
    }

    /// Stops trusting every slice (notifications may have been missed).
    pub fn forget_all(&self) {
        let book = self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for cell in book.families.values() {
            cell.stale.store(true, Ordering::Release);
        }
    }

    /// Gives back what is left of slices that have lived out their time (or all of them, with
    /// `all`: on shutdown), and forgets families that hold nothing.
    pub async fn give_back(&self, pool: &PgPool, now: DateTime<Utc>, all: bool) {
        let cells: Vec<(KeyId, Arc<Cell>)> = {
            let book = self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            book.families
                .iter()
                .map(|(id, cell)| (id.clone(), cell.clone()))
                .collect()
        };
        let mut idle = Vec::new();
        for (id, cell) in cells {
            let mut family = if all {
                cell.family.lock().await
            } else {
                match cell.family.try_lock() {
                    Ok(family) => family,
                    Err(_) => continue, // in use: its next spend or pass gives it back
                }
            };
            if all
                || family
                    .budget
                    .as_ref()
                    .is_some_and(|b| b.taken.elapsed() >= SLICE_LIFETIME)
            {
                family.give_back_budget(pool, &id).await;
            }
            if all || family.rate.as_ref().is_some_and(|r| r.ends <= now) {
                family.give_back_rate(pool, &id).await;
            }
            if family.budget.is_none() && family.rate.is_none() {
                idle.push(id);
            }
        }
        let mut book = self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut forgotten = std::collections::HashSet::new();
        for id in idle {
            // Only if nobody picked the family up since.
            if book.families.get(&id).is_some_and(|cell| Arc::strong_count(cell) == 1) {
                book.families.remove(&id);
                forgotten.insert(id);
            }
        }
        if !forgotten.is_empty() {
            book.family_of.retain(|_, family| !forgotten.contains(family));
        }
    }
}

enum Budget {
    Spent(i64),
    Exhausted,
    Unlimited,
}

impl Family {
    async fn spend_rate(
        &mut self,
        pool: &PgPool,
        id: &KeyId,
        rate: RateLimit,
        now: DateTime<Utc>,
    ) -> Result<Result<RateStatus, RateStatus>, sqlx::Error> {
        let buckets = Buckets::of(rate);
        let bucket = buckets.start_of(now);
        let status = |lease: &RateLease| RateStatus {
            limit: rate.limit,
            remaining: (rate.limit - lease.used + lease.left).max(0),
            reset: lease.ends,
        };
        if let Some(lease) = self
            .rate
            .as_mut()
            .filter(|lease| lease.bucket == bucket && lease.left > 0)
        {
            lease.left -= 1;
            return Ok(Ok(status(lease)));
        }
        let used_up_in_time = self.rate.as_ref().is_some_and(|lease| lease.bucket == bucket);
        self.give_back_rate(pool, id).await;
        self.rate_slice = next_slice(i64::from(self.rate_slice), used_up_in_time) as i32;
        // Never more than a tenth of the limit at once, so the others get their share.
        let want = self.rate_slice.min((rate.limit / BUCKETS as i32).max(1));
        let (taken, used) =
            store::take_rate_slots(pool, id, buckets.counted_since(bucket), bucket, rate.limit, want).await?;
        if taken == 0 {
            return Ok(Err(RateStatus {
                limit: rate.limit,
                remaining: 0,
                reset: bucket + buckets.width,
            }));
        }
        let lease = RateLease {
            bucket,
            ends: bucket + buckets.width,
            left: taken - 1,
            used,
        };
        let answer = status(&lease);
        self.rate = Some(lease);
        Ok(Ok(answer))
    }

    async fn spend_budget(&mut self, pool: &PgPool, id: &KeyId) -> Result<Budget, sqlx::Error> {
        let live = |lease: &BudgetLease| lease.left > 0 && lease.taken.elapsed() < SLICE_LIFETIME;
        if let Some(lease) = self.budget.as_mut().filter(|lease| live(lease)) {
            lease.left -= 1;
            return Ok(Budget::Spent(lease.counter + lease.left));
        }
        let used_up_in_time = self
            .budget
            .as_ref()
            .is_some_and(|lease| lease.left == 0 && lease.taken.elapsed() < SLICE_LIFETIME / 2);
        let counter = self.budget.as_ref().map(|lease| lease.counter);
        self.give_back_budget(pool, id).await;
        self.budget_slice = next_slice(self.budget_slice, used_up_in_time);
        let want = match counter {
            Some(counter) => self.budget_slice.min((counter / 8).max(1)),
            None => 1,
        };
        match store::take_budget(pool, id, want).await? {
            BudgetSlice::Taken { took, left, epoch } => {
                self.budget = Some(BudgetLease {
                    left: took - 1,
                    counter: left,
                    epoch,
                    taken: Instant::now(),
                });
                Ok(Budget::Spent(left + took - 1))
            }
            BudgetSlice::Exhausted => Ok(Budget::Exhausted),
            BudgetSlice::Unlimited => Ok(Budget::Unlimited),
        }
    }

    async fn give_back_all(&mut self, pool: &PgPool, id: &KeyId) {
        self.give_back_budget(pool, id).await;
        self.give_back_rate(pool, id).await;
    }

    /// Gives back what is left of the budget slice. If that fails (the database is away), it is
    /// lost to the key: an under-count, never an over-count.
    async fn give_back_budget(&mut self, pool: &PgPool, id: &KeyId) {
        let Some(lease) = self.budget.take() else { return };
        if lease.left > 0 {
            if let Err(error) = store::return_budget(pool, id, lease.epoch, lease.left).await {
                tracing::warn!(%error, family = %id, unused = lease.left, "could not give back an unused slice of remaining verifications");
            }
        }
    }

    async fn give_back_rate(&mut self, pool: &PgPool, id: &KeyId) {
        let Some(lease) = self.rate.take() else { return };
        if lease.left > 0 {
            if let Err(error) = store::return_rate_slots(pool, id, lease.bucket, lease.left).await {
                tracing::warn!(%error, family = %id, unused = lease.left, "could not give back unused rate-limit slots");
            }
        }
    }
}

/// The next slice: twice the last when that was used up in time, else half of it.
fn next_slice(last: i64, used_up_in_time: bool) -> i64 {
    if used_up_in_time {
        (last * 2).clamp(1, MAX_SLICE)
    } else {
        (last / 2).max(1)
    }
}

/// How often expired slices are given back.
const GIVE_BACK_EVERY: Duration = Duration::from_millis(500);

/// Gives back what is left of expired slices every [`GIVE_BACK_EVERY`] until the pool closes.
pub(super) async fn give_back_expired(limits: Limits, pool: PgPool, clock: crate::clock::Clock) {
    let mut ticker = tokio::time::interval(GIVE_BACK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        ticker.tick().await;
        limits.give_back(&pool, clock.now(), false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_used_up_in_time_doubles_up_to_the_cap_and_halves_otherwise() {
        assert_eq!(next_slice(1, true), 2);
        assert_eq!(next_slice(MAX_SLICE, true), MAX_SLICE);
        assert_eq!(next_slice(8, false), 4);
        assert_eq!(next_slice(1, false), 1);
        assert_eq!(next_slice(0, false), 1);
    }

    #[test]
    fn a_minute_window_counts_in_six_second_buckets() {
        let buckets = Buckets::of(RateLimit {
            limit: 10,
            window_seconds: 60,
        });
        let at: DateTime<Utc> = "2026-12-03T10:00:07.5Z".parse().unwrap();

        let bucket = buckets.start_of(at);

        assert_eq!(bucket, "2026-12-03T10:00:06Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(
            buckets.counted_since(bucket),
            "2026-12-03T09:59:06Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn a_one_second_window_counts_in_tenths_of_a_second() {
        let buckets = Buckets::of(RateLimit {
            limit: 10,
            window_seconds: 1,
        });
        let at: DateTime<Utc> = "2026-12-03T10:00:00.250Z".parse().unwrap();

        assert_eq!(
            buckets.start_of(at),
            "2026-12-03T10:00:00.200Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
