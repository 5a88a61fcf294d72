//! `verification_counts`: outcomes added in batches by the usage writer, read by the usage API,
//! pruned past their retention.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::domain::ids::{KeyId, TenantId};
use crate::domain::usage::{UsageQuery, UsageRow};

/// One counter: verifications of a tenant's key (`None`: of tokens that matched none) with one
/// code in one minute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Count {
    pub tenant: Option<TenantId>,
    pub key: Option<KeyId>,
    pub code: &'static str,
    pub minute: DateTime<Utc>,
}

/// What a counter adds: how many verifications, and when the newest was (kept for successful
/// verifications of a key only: it is the key's last use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub last_at: Option<DateTime<Utc>>,
}

impl Tally {
    pub fn one(last_at: Option<DateTime<Utc>>) -> Self {
        Tally { count: 1, last_at }
    }

    pub fn add(&mut self, other: Tally) {
        self.count += other.count;
        self.last_at = self.last_at.max(other.last_at);
    }
}

/// Adds every count in one statement.
pub async fn add(db: &PgPool, counts: &[(Count, Tally)]) -> Result<(), sqlx::Error> {
    let tenants: Vec<Option<uuid::Uuid>> = counts.iter().map(|(c, _)| c.tenant.map(|t| t.0)).collect();
    let keys: Vec<Option<&str>> = counts.iter().map(|(c, _)| c.key.as_ref().map(KeyId::as_str)).collect();
    let codes: Vec<&str> = counts.iter().map(|(c, _)| c.code).collect();
    let minutes: Vec<DateTime<Utc>> = counts.iter().map(|(c, _)| c.minute).collect();
    let numbers: Vec<i64> = counts.iter().map(|(_, t)| t.count).collect();
    let last: Vec<Option<DateTime<Utc>>> = counts.iter().map(|(_, t)| t.last_at).collect();
    sqlx::query(
        "INSERT INTO verification_counts (tenant_id, key_id, code, minute, count, last_at)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[],
                              $6::timestamptz[])
         ON CONFLICT (tenant_id, minute, key_id, code)
         DO UPDATE SET count = verification_counts.count + EXCLUDED.count,
                       last_at = GREATEST(verification_counts.last_at, EXCLUDED.last_at)",
    )
    .bind(tenants)
    .bind(keys)
    .bind(codes)
    .bind(minutes)
    .bind(numbers)
    .bind(last)
    .execute(db)
    .await?;
    Ok(())
}

/// The tenant's counts in the query's range, summed per bucket, key and code, oldest first;
/// each key with its current owner.
pub async fn rows(db: impl PgExecutor<'_>, tenant: TenantId, query: &UsageQuery) -> Result<Vec<UsageRow>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        start: DateTime<Utc>,
        key_id: Option<String>,
        owner_id: Option<String>,
        code: String,
        count: i64,
    }
    let rows = sqlx::query_as::<_, Row>(
        "SELECT date_trunc($2, c.minute, 'UTC') AS start, c.key_id, k.owner_id, c.code,
                sum(c.count)::bigint AS count
         FROM verification_counts c LEFT JOIN api_keys k ON k.id = c.key_id
         WHERE c.tenant_id = $1 AND c.minute >= $3 AND c.minute < $4
           AND ($5::text IS NULL OR c.key_id = $5)
           AND ($6::text IS NULL OR k.owner_id = $6)
         GROUP BY 1, 2, 3, 4
         ORDER BY 1, 2 NULLS LAST, 4",
    )
    .bind(tenant.0)
    .bind(query.granularity.as_str())
    .bind(query.since)
    .bind(query.until)
    .bind(query.key_id.as_ref().map(KeyId::as_str))
    .bind(query.owner_id.as_deref())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| UsageRow {
            start: row.start,
            key_id: row.key_id,
            owner_id: row.owner_id,
            code: row.code,
            count: row.count,
        })
        .collect())
}

/// Forgets counts of minutes before `before`; the last use they held moves to
/// `api_keys.last_used_at` in the same statement, so that a key's last use outlives them.
pub async fn prune(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let deleted: i64 = sqlx::query_scalar(
        "WITH gone AS (
             DELETE FROM verification_counts WHERE minute < $1 RETURNING key_id, code, last_at
         ), newest AS (
             SELECT key_id, max(last_at) AS at FROM gone
             WHERE code = 'VALID' AND key_id IS NOT NULL AND last_at IS NOT NULL GROUP BY key_id
         ), folded AS (
             UPDATE api_keys k SET last_used_at = n.at FROM newest n
             WHERE k.id = n.key_id AND (k.last_used_at IS NULL OR k.last_used_at < n.at)
             RETURNING 1
         )
         SELECT count(*) FROM gone",
    )
    .bind(before)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}
