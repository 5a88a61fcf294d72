//! The request bodies that create and change keys and service tokens, before validation, and
//! the rules that turn them into specs.

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::domain::permissions::Permission;
use crate::domain::scope::{parse_scopes, Scope, MAX_SCOPES_PER_KEY};
use crate::domain::validation::{check_text, ValidationErrors};

fn check_rate_limit(errors: &mut ValidationErrors, rate_limit: Option<&RateLimit>) {
    if let Some(rate) = rate_limit {
        if !(1..=MAX_RATE_LIMIT).contains(&rate.limit) {
            errors.add("rate_limit.limit", format!("must be between 1 and {MAX_RATE_LIMIT}"));
        }
        if !(1..=MAX_RATE_WINDOW_SECONDS).contains(&rate.window_seconds) {
            errors.add(
                "rate_limit.window_seconds",
                format!("must be between 1 and {MAX_RATE_WINDOW_SECONDS}"),
            );
        }
    }
}

/// `POST /v1/tenants/{tenant_id}/keys` body, before validation.
#[derive(Debug)]
pub struct KeyDraft {
    pub name: String,
    pub environment: Environment,
    pub scopes: Vec<String>,
    /// A JSON object of at most 4 KiB, returned by verify.
    pub metadata: Option<serde_json::Value>,
    /// The tenant's own reference for the end user who holds the key.
    pub owner_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Alternative to `expires_at`: lifetime in seconds from now.
    pub ttl_seconds: Option<i64>,
    pub enabled: bool,
    /// Also issue a signing secret, for signed requests (`POST /v1/verify/request`).
    pub signing: bool,
    /// How many successful verifications the key allows; absent means unlimited.
    pub remaining: Option<i64>,
    pub rate_limit: Option<RateLimit>,
}

/// Validated settings of a new customer key.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    pub environment: Environment,
    pub scopes: Vec<Scope>,
    pub metadata: serde_json::Value,
    pub owner_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub signing: bool,
    pub remaining: Option<i64>,
    pub rate_limit: Option<RateLimit>,
}

impl KeyDraft {
    pub fn validate(self, now: DateTime<Utc>) -> Result<KeySpec, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        check_text(&mut errors, "name", &self.name, MAX_NAME_LEN);
        let scopes = parse_scopes(&mut errors, "scopes", &self.scopes, MAX_SCOPES_PER_KEY);
        let metadata = self.metadata.unwrap_or_else(|| serde_json::json!({}));
        check_metadata(&mut errors, &metadata);
        if let Some(owner) = &self.owner_id {
            check_text(&mut errors, "owner_id", owner, MAX_OWNER_ID_LEN);
        }
        if self.remaining.is_some_and(|n| n < 1) {
            errors.add("remaining", "must be at least 1 (leave it out for unlimited)");
        }
        check_rate_limit(&mut errors, self.rate_limit.as_ref());
        let expires_at = check_expiry(&mut errors, now, self.expires_at, self.ttl_seconds);
        errors.finish(KeySpec {
            name: self.name.trim().to_owned(),
            environment: self.environment,
            scopes,
            metadata,
            owner_id: self.owner_id,
            expires_at,
            enabled: self.enabled,
            signing: self.signing,
            remaining: self.remaining,
            rate_limit: self.rate_limit,
        })
    }
}

/// PostgreSQL text and jsonb cannot hold U+0000.
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn check_metadata(errors: &mut ValidationErrors, metadata: &serde_json::Value) {
    if !metadata.is_object() {
        errors.add("metadata", "must be a JSON object");
    } else if has_nul(metadata) {
        errors.add("metadata", "must not contain the NUL character (\\u0000)");
    } else if metadata.to_string().len() > MAX_METADATA_BYTES {
        errors.add(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
        );
    }
}

fn check_expiry(
    errors: &mut ValidationErrors,
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    ttl_seconds: Option<i64>,
) -> Option<DateTime<Utc>> {
    match (expires_at, ttl_seconds) {
        (Some(_), Some(_)) => {
            errors.add("ttl_seconds", "give either expires_at or ttl_seconds, not both");
            None
        }
        (Some(at), None) if at <= now => {
            errors.add("expires_at", "must be in the future");
            None
        }
        (Some(at), None) if at > now + Duration::seconds(MAX_TTL_SECONDS) => {
            errors.add("expires_at", "must be within ten years");
            None
        }
        (Some(at), None) => Some(at),
        (None, Some(ttl)) if !(1..=MAX_TTL_SECONDS).contains(&ttl) => {
            errors.add("ttl_seconds", format!("must be between 1 and {MAX_TTL_SECONDS}"));
            None
        }
        (None, Some(ttl)) => Some(now + Duration::seconds(ttl)),
        (None, None) => None,
    }
}

/// `PATCH .../keys/{key_id}` body, before validation: only the fields given change; `null` clears optional ones.
#[derive(Debug, Default)]
pub struct KeyPatchDraft {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub metadata: Option<serde_json::Value>,
    pub owner_id: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub enabled: Option<bool>,
    /// Verifications left; `null` makes the key unlimited.
    pub remaining: Option<Option<i64>>,
    /// `null` removes the rate limit.
    pub rate_limit: Option<Option<RateLimit>>,
}

#[derive(Debug, Default, Clone)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<Scope>>,
    pub metadata: Option<serde_json::Value>,
    pub owner_id: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub enabled: Option<bool>,
    pub remaining: Option<Option<i64>>,
    pub rate_limit: Option<Option<RateLimit>>,
}

impl KeyPatchDraft {
    pub fn validate(self, now: DateTime<Utc>) -> Result<KeyPatch, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(name) = &self.name {
            check_text(&mut errors, "name", name, MAX_NAME_LEN);
        }
        let scopes = self
            .scopes
            .as_ref()
            .map(|s| parse_scopes(&mut errors, "scopes", s, MAX_SCOPES_PER_KEY));
        if let Some(metadata) = &self.metadata {
            check_metadata(&mut errors, metadata);
        }
        if let Some(Some(owner)) = &self.owner_id {
            check_text(&mut errors, "owner_id", owner, MAX_OWNER_ID_LEN);
        }
        let expires_at = match self.expires_at {
            Some(Some(at)) => Some(check_expiry(&mut errors, now, Some(at), None)),
            other => other,
        };
        if self.remaining.flatten().is_some_and(|n| n < 0) {
            errors.add("remaining", "must not be negative");
        }
        check_rate_limit(&mut errors, self.rate_limit.flatten().as_ref());
        let nothing = self.name.is_none()
            && scopes.is_none()
            && self.metadata.is_none()
            && self.owner_id.is_none()
            && expires_at.is_none()
            && self.enabled.is_none()
            && self.remaining.is_none()
            && self.rate_limit.is_none();
        if nothing {
            errors.add("", "give at least one field to change");
        }
        errors.finish(KeyPatch {
            name: self.name.map(|n| n.trim().to_owned()),
            scopes,
            metadata: self.metadata,
            owner_id: self.owner_id,
            expires_at,
            enabled: self.enabled,
            remaining: self.remaining,
            rate_limit: self.rate_limit,
        })
    }
}

/// `POST .../rotate` body, before validation.
#[derive(Debug, Default)]
pub struct RotateDraft {
    /// How long the old key keeps working; default 86400, 0 ends it at once.
    pub grace_period_seconds: Option<i64>,
    /// Whether the new key gets a signing secret; by default, whether the old key had one.
    pub signing: Option<bool>,
}

impl RotateDraft {
    pub fn grace_seconds(&self) -> Result<i64, ValidationErrors> {
        let grace = self.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
        if (0..=MAX_GRACE_SECONDS).contains(&grace) {
            Ok(grace)
        } else {
            Err(ValidationErrors::single(
                "grace_period_seconds",
                format!("must be between 0 and {MAX_GRACE_SECONDS}"),
            ))
        }
    }
}

/// `POST .../revoke` body, before validation.
#[derive(Debug, Default)]
pub struct RevokeDraft {
    pub reason: Option<String>,
}

impl RevokeDraft {
    pub fn reason(self) -> Result<Option<String>, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(reason) = &self.reason {
            check_text(&mut errors, "reason", reason, MAX_REASON_LEN);
        }
        errors.finish(self.reason.map(|r| r.trim().to_owned()))
    }
}

/// `POST /v1/service-tokens` and `POST /v1/tenants/{tenant_id}/service-tokens` body, before validation.
#[derive(Debug)]
pub struct ServiceTokenDraft {
    pub name: String,
    pub permissions: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ServiceTokenSpec {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ServiceTokenDraft {
    pub fn validate(self, now: DateTime<Utc>) -> Result<ServiceTokenSpec, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        check_text(&mut errors, "name", &self.name, MAX_NAME_LEN);
        let mut permissions = Vec::new();
        for (i, text) in self.permissions.iter().enumerate() {
            match Permission::parse(text) {
                Some(p) if !permissions.contains(&p) => permissions.push(p),
                Some(_) => {}
                None => errors.add(
                    format!("permissions[{i}]"),
                    "one of keys:verify, keys:read, keys:write, audit:read, tenants:admin",
                ),
            }
        }
        if self.permissions.is_empty() {
            errors.add("permissions", "give at least one permission");
        }
        let expires_at = check_expiry(&mut errors, now, self.expires_at, self.ttl_seconds);
        errors.finish(ServiceTokenSpec {
            name: self.name.trim().to_owned(),
            permissions,
            expires_at,
        })
    }
}

/// Query of `GET .../keys` and `GET .../service-tokens`.
#[derive(Debug, Default)]
pub struct KeyListQuery {
    pub status: Option<KeyStatus>,
    pub environment: Option<Environment>,
    pub owner_id: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 100, default 50.
    pub limit: Option<i64>,
}
