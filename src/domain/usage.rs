//! Verification counts, as the usage API reports them: per key, per owner and in total, by code,
//! over minutes, hours or days. Pure: the rows come from `repo::usage`.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::ids::KeyId;
use super::validation::{check_filter, check_time, ValidationErrors};

/// The width of the buckets of a report.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Granularity {
    Minute,
    #[default]
    Hour,
    Day,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn width(self) -> TimeDelta {
        match self {
            Granularity::Minute => TimeDelta::minutes(1),
            Granularity::Hour => TimeDelta::hours(1),
            Granularity::Day => TimeDelta::days(1),
        }
    }

    /// The range a report covers when the caller names no start: the last hour of minutes, the
    /// last day of hours, the last 30 days.
    fn default_span(self) -> TimeDelta {
        match self {
            Granularity::Minute => TimeDelta::hours(1),
            Granularity::Hour => TimeDelta::days(1),
            Granularity::Day => TimeDelta::days(30),
        }
    }
}

/// Buckets one report may span: a week of minutes, a year of hours, 27 years of days.
pub const MAX_BUCKETS: i64 = 7 * 24 * 60;

/// The usage query as the caller sent it.
#[derive(Debug, Default)]
pub struct UsageDraft {
    pub key_id: Option<String>,
    pub owner_id: Option<String>,
    pub granularity: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A checked usage query: `[since, until)`, both on bucket boundaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    pub key_id: Option<KeyId>,
    pub owner_id: Option<String>,
    pub granularity: Granularity,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl UsageDraft {
    /// Checks the query; `until` defaults to the end of the current bucket and `since` to the
    /// granularity's default span before it. Both are rounded out to bucket boundaries.
    pub fn validate(self, now: DateTime<Utc>) -> Result<UsageQuery, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let granularity = match self.granularity.as_deref() {
            None => Granularity::default(),
            Some(text) => text.parse().unwrap_or_else(|_| {
                errors.add("granularity", "must be one of minute, hour, day");
                Granularity::default()
            }),
        };
        check_filter(&mut errors, "owner_id", self.owner_id.as_deref(), 255);
        check_filter(&mut errors, "key_id", self.key_id.as_deref(), 64);
        check_time(&mut errors, "since", self.since);
        check_time(&mut errors, "until", self.until);
        let width = granularity.width();
        let floor = |at: DateTime<Utc>| at.duration_trunc(width).unwrap_or(at);
        let until = self.until.unwrap_or(now);
        let until = if floor(until) == until {
            until
        } else {
            floor(until) + width
        };
        let since = floor(self.since.unwrap_or(until - granularity.default_span()));
        if since >= until {
            errors.add("since", "must be before until");
        } else if (until - since).num_seconds() / width.num_seconds() > MAX_BUCKETS {
            errors.add(
                "since",
                format!(
                    "at most {MAX_BUCKETS} buckets of a {} in one report",
                    granularity.as_str()
                ),
            );
        }
        let query = UsageQuery {
            key_id: self.key_id.map(KeyId::from_trusted),
            owner_id: self.owner_id,
            granularity,
            since,
            until,
        };
        errors.finish(query)
    }
}

/// Verifications of one key (or of tokens that matched none) with one code in one bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageRow {
    pub start: DateTime<Utc>,
    /// `null`: tokens that matched no key of the tenant.
    pub key_id: Option<String>,
    pub owner_id: Option<String>,
    /// A verify code, e.g. `VALID` or `RATE_LIMITED`.
    pub code: String,
    pub count: i64,
}

/// Counts by code, and their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Totals {
    pub total: i64,
    pub by_code: BTreeMap<String, i64>,
}

impl Totals {
    fn add(&mut self, code: &str, count: i64) {
        self.total += count;
        *self.by_code.entry(code.to_owned()).or_insert(0) += count;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyUsage {
    pub key_id: String,
    pub owner_id: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct OwnerUsage {
    pub owner_id: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// `GET /v1/tenants/{tenant_id}/usage`: the buckets, and totals per key, per owner and overall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageReport {
    pub granularity: Granularity,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Every non-empty bucket, oldest first.
    pub series: Vec<UsageRow>,
    /// Per key, by key id.
    pub keys: Vec<KeyUsage>,
    /// Per owner (keys without an owner are in `keys` only), by owner id.
    pub owners: Vec<OwnerUsage>,
    /// Tokens that matched no key of the tenant.
    pub unmatched: Totals,
    pub total: Totals,
}

impl UsageReport {
    pub fn from_rows(query: &UsageQuery, series: Vec<UsageRow>) -> Self {
        let mut keys: BTreeMap<&str, (Option<&str>, Totals)> = BTreeMap::new();
        let mut owners: BTreeMap<&str, Totals> = BTreeMap::new();
        let (mut unmatched, mut total) = (Totals::default(), Totals::default());
        for row in &series {
            total.add(&row.code, row.count);
            match &row.key_id {
                Some(key) => {
                    let entry = keys
                        .entry(key)
                        .or_insert_with(|| (row.owner_id.as_deref(), Totals::default()));
                    entry.1.add(&row.code, row.count);
                }
                None => unmatched.add(&row.code, row.count),
            }
            if let Some(owner) = &row.owner_id {
                owners.entry(owner).or_default().add(&row.code, row.count);
            }
        }
        let keys = keys
            .into_iter()
            .map(|(key_id, (owner_id, totals))| KeyUsage {
                key_id: key_id.to_owned(),
                owner_id: owner_id.map(str::to_owned),
                totals,
            })
            .collect();
        let owners = owners
            .into_iter()
            .map(|(owner_id, totals)| OwnerUsage {
                owner_id: owner_id.to_owned(),
                totals,
            })
            .collect();
        UsageReport {
            granularity: query.granularity,
            since: query.since,
            until: query.until,
            series,
            keys,
            owners,
            unmatched,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_query_without_times_covers_the_last_day_of_hours_up_to_the_current_one() {
        let query = UsageDraft::default().validate(at("2026-12-03T10:15:00Z")).unwrap();

        assert_eq!(query.granularity, Granularity::Hour);
        assert_eq!(query.since, at("2026-12-02T11:00:00Z"));
        assert_eq!(query.until, at("2026-12-03T11:00:00Z"));
    }

    #[test]
    fn times_are_rounded_out_to_whole_buckets() {
        let draft = UsageDraft {
            granularity: Some("day".into()),
            since: Some(at("2026-12-01T10:00:00Z")),
            until: Some(at("2026-12-02T10:00:00Z")),
            ..UsageDraft::default()
        };

        let query = draft.validate(at("2026-12-03T00:00:00Z")).unwrap();

        assert_eq!(
            (query.since, query.until),
            (at("2026-12-01T00:00:00Z"), at("2026-12-03T00:00:00Z"))
        );
    }

    #[test]
    fn an_unknown_granularity_is_refused() {
        let draft = UsageDraft {
            granularity: Some("week".into()),
            ..UsageDraft::default()
        };

        let errors = draft.validate(Utc::now()).unwrap_err();

        assert_eq!(errors.0[0].field, "granularity");
    }

    #[test]
    fn more_than_a_week_of_minutes_is_refused() {
        let draft = UsageDraft {
            granularity: Some("minute".into()),
            since: Some(at("2026-11-01T00:00:00Z")),
            until: Some(at("2026-11-09T00:00:00Z")),
            ..UsageDraft::default()
        };

        assert!(draft.validate(Utc::now()).is_err());
    }

    #[test]
    fn a_start_after_the_end_is_refused() {
        let draft = UsageDraft {
            since: Some(at("2026-11-02T00:00:00Z")),
            until: Some(at("2026-11-01T00:00:00Z")),
            ..UsageDraft::default()
        };

        assert_eq!(draft.validate(Utc::now()).unwrap_err().0[0].field, "since");
    }

    #[test]
    fn totals_add_up_per_key_per_owner_and_for_unmatched_tokens() {
        let query = UsageDraft::default().validate(at("2026-12-03T10:00:00Z")).unwrap();
        let row = |key: Option<&str>, owner: Option<&str>, code: &str, count| UsageRow {
            start: at("2026-12-03T09:00:00Z"),
            key_id: key.map(str::to_owned),
            owner_id: owner.map(str::to_owned),
            code: code.into(),
            count,
        };

        let report = UsageReport::from_rows(
            &query,
            vec![
                row(Some("key_a"), Some("cus_1"), "VALID", 5),
                row(Some("key_a"), Some("cus_1"), "RATE_LIMITED", 2),
                row(Some("key_b"), Some("cus_1"), "VALID", 1),
                row(None, None, "NOT_FOUND", 7),
            ],
        );

        assert_eq!(report.keys[0].key_id, "key_a");
        assert_eq!(report.keys[0].totals.total, 7);
        assert_eq!(report.owners[0].totals.by_code["VALID"], 6);
        assert_eq!(report.unmatched.by_code["NOT_FOUND"], 7);
        assert_eq!(report.total.total, 15);
    }
}
