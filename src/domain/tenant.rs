//! Tenants: the companies' customers, each with its own keys and audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::TenantId;
use super::validation::{check_text, ValidationErrors};

pub const MAX_NAME_LEN: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/tenants` body before validation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantDraft {
    /// `[a-z0-9-]{3,40}`, unique.
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Corp")]
    pub name: String,
}

/// `PATCH /v1/tenants/{tenant_id}` body: only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub status: Option<TenantStatus>,
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
        if self.name.is_none() && self.status.is_none() {
            errors.add("", "give at least one of name, status");
        }
        errors.finish(TenantPatch {
            name: self.name.map(|n| n.trim().to_owned()),
            status: self.status,
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
