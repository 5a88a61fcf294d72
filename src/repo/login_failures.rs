//! The `login_failures` table: failed login attempts, counted by the login throttles.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use std::net::IpAddr;

/// Records a failed (or not yet successful) login attempt; returns its id. `email` is `None` for
/// an attempt whose email could not be any account's (it is never stored: it may be a secret).
pub async fn record(
    db: impl PgExecutor<'_>,
    email: Option<&str>,
    ip: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO login_failures (email, ip, occurred_at) VALUES (lower(coalesce($1, '')), $2::inet, $3) RETURNING id",
    )
    .bind(email)
    .bind(ip.map(|ip| ip.to_string()))
    .bind(now)
    .fetch_one(db)
    .await
}

/// Forgets one recorded attempt (one that a throttle refused before it was tried).
pub async fn forget(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Failures since `since` from the address's network, and of the account from that network,
/// with the oldest of each.
#[derive(Debug, Default, sqlx::FromRow)]
pub struct FailureCounts {
    pub account: i64,
    pub account_oldest: Option<DateTime<Utc>>,
    pub address: i64,
    pub address_oldest: Option<DateTime<Utc>>,
}

/// The network an address's failures are counted over: one IPv4 address, or the /64 that one
/// IPv6 client typically holds. (Addresses arrive normalised: IPv4-mapped IPv6 is IPv4.)
fn network_bits(ip: Option<IpAddr>) -> i32 {
    if ip.is_some_and(|ip| ip.is_ipv6()) {
        64
    } else {
        32
    }
}

pub async fn count(
    db: impl PgExecutor<'_>,
    email: Option<&str>,
    ip: Option<IpAddr>,
    since: DateTime<Utc>,
) -> Result<FailureCounts, sqlx::Error> {
    // Two spellings, so that the planner can use `login_failures_ip` when there is an address.
    let near = match ip {
        Some(_) => "ip <<= network(set_masklen($2::inet, $4))",
        None => "ip IS NULL AND $2::inet IS NULL AND $4::int IS NOT NULL",
    };
    sqlx::query_as::<_, FailureCounts>(&format!(
        "WITH near AS (
             SELECT email, occurred_at FROM login_failures WHERE occurred_at > $3 AND {near}
         )
         SELECT
             count(*) FILTER (WHERE $1::text IS NOT NULL AND email = lower($1)) AS account,
             min(occurred_at) FILTER (WHERE $1::text IS NOT NULL AND email = lower($1)) AS account_oldest,
             count(*) AS address,
             min(occurred_at) AS address_oldest
         FROM near"
    ))
    .bind(email)
    .bind(ip.map(|ip| ip.to_string()))
    .bind(since)
    .bind(network_bits(ip))
    .fetch_one(db)
    .await
}

/// Clears an account's failures from one address's network (after a successful login there).
pub async fn clear(db: impl PgExecutor<'_>, email: &str, ip: Option<IpAddr>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM login_failures WHERE email = lower($1)
           AND (ip <<= network(set_masklen($2::inet, $3)) OR (ip IS NULL AND $2::inet IS NULL))",
    )
    .bind(email)
    .bind(ip.map(|ip| ip.to_string()))
    .bind(network_bits(ip))
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes failures older than `before` (the throttles never look at them again).
pub async fn prune(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM login_failures WHERE occurred_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(result.rows_affected())
}
