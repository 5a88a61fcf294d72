//! Tenants: the companies' customers, each with its own keys and audit trail.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::TenantId;
use super::validation::{check_text, ValidationErrors};

pub const MAX_NAME_LEN: usize = 200;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub settings: TenantSettings,
    pub created_at: DateTime<Utc>,
}

/// The widest `signature_max_skew_seconds` a tenant may set. The replay store keeps every
/// accepted signature until this window has closed, whatever the tenant's current setting, so
/// widening the setting later cannot make a spent signature acceptable again.
pub const MAX_SKEW_SECONDS: i64 = 900;

/// How a tenant's signed requests are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct TenantSettings {
    /// Accept AWS Signature Version 2 (HMAC-SHA1, legacy S3 clients). Off by default.
    pub sigv2_enabled: bool,
    /// Accept each signature only once within its validity window. On by default.
    pub replay_protection: bool,
    /// How far a signed request's timestamp may be from keyward's clock, in seconds.
    pub signature_max_skew_seconds: i64,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            sigv2_enabled: false,
            replay_protection: true,
            signature_max_skew_seconds: 300,
        }
    }
}

impl TenantSettings {
    /// The accepted clock skew, held to [`MAX_SKEW_SECONDS`] also for a value stored before the
    /// cap existed.
    pub fn max_skew(&self) -> Duration {
        Duration::seconds(self.signature_max_skew_seconds.clamp(1, MAX_SKEW_SECONDS))
    }

    /// How long an accepted signature must be remembered: for the widest window any setting
    /// allows, not the current one, which may be widened at any time.
    pub fn replay_retention() -> Duration {
        Duration::seconds(MAX_SKEW_SECONDS)
    }
}

/// The settings to change; absent fields keep their value.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSettingsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigv2_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_protection: Option<bool>,
    /// 1 to 900.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_max_skew_seconds: Option<i64>,
}

/// `POST /v1/tenants` body before validation.
#[derive(Debug)]
pub struct TenantDraft {
    /// `[a-z0-9-]{3,40}`, unique.
    pub slug: String,
    pub name: String,
}

/// `PATCH /v1/tenants/{tenant_id}` body: only the fields given change.
#[derive(Debug, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub status: Option<TenantStatus>,
    pub settings: Option<TenantSettingsPatch>,
}

pub fn is_valid_slug(slug: &str) -> bool {
    (3..=40).contains(&slug.len()) && slug.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

impl TenantDraft {
    pub fn validate(self, now: DateTime<Utc>) -> Result<Tenant, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if !is_valid_slug(&self.slug) {
            errors.add("slug", "must be 3 to 40 characters of a-z, 0-9 and '-'");
        }
        check_text(&mut errors, "name", &self.name, MAX_NAME_LEN);
        errors.finish(Tenant {
            id: TenantId::generate(),
            slug: self.slug,
            name: self.name.trim().to_owned(),
            status: TenantStatus::Active,
            settings: TenantSettings::default(),
            created_at: now,
        })
    }
}

impl TenantPatch {
    pub fn validate(self) -> Result<TenantPatch, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(name) = &self.name {
            check_text(&mut errors, "name", name, MAX_NAME_LEN);
        }
        if let Some(skew) = self.settings.as_ref().and_then(|s| s.signature_max_skew_seconds) {
            if !(1..=MAX_SKEW_SECONDS).contains(&skew) {
                errors.add(
                    "settings.signature_max_skew_seconds",
                    format!("must be between 1 and {MAX_SKEW_SECONDS}"),
                );
            }
        }
        if self.name.is_none() && self.status.is_none() && self.settings.is_none() {
            errors.add("", "give at least one of name, status, settings");
        }
        errors.finish(TenantPatch {
            name: self.name.map(|n| n.trim().to_owned()),
            status: self.status,
            settings: self.settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        assert!(is_valid_slug("acme"));
        assert!(is_valid_slug("a-1"));
        assert!(!is_valid_slug("ab"));
        assert!(!is_valid_slug("Acme"));
        assert!(!is_valid_slug("acme_corp"));
        assert!(!is_valid_slug(&"a".repeat(41)));
    }
}
