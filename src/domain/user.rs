//! People who use the customer portal: users, their roles in tenants, and the password policy.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ids::TenantId;
use super::validation::ValidationErrors;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_EMAIL_LEN: usize = 320;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 36)
            .then(|| Uuid::parse_str(text).ok().map(Self))
            .flatten()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub platform_admin: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub session_version: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Membership {
    pub tenant_id: TenantId,
    pub role: Role,
}

/// Emails are compared case-insensitively; they are kept as given, trimmed.
pub fn check_email(errors: &mut ValidationErrors, field: &str, email: &str) -> String {
    let email = email.trim();
    let valid = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        errors.add(field, "must be an email address");
    }
    email.to_owned()
}

pub fn check_password(errors: &mut ValidationErrors, field: &str, password: &str) {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        errors.add(field, format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    } else if password.len() > MAX_PASSWORD_BYTES {
        errors.add(field, format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_length_limits() {
        let mut errors = ValidationErrors::default();
        check_password(&mut errors, "p", "short");
        check_password(&mut errors, "p", &"x".repeat(1025));
        check_password(&mut errors, "p", "twelve chars");
        check_password(&mut errors, "p", &"x".repeat(1024));
        assert_eq!(errors.0.len(), 2);
    }

    #[test]
    fn email_shape() {
        let mut errors = ValidationErrors::default();
        assert_eq!(check_email(&mut errors, "e", " Ann@Example.com "), "Ann@Example.com");
        check_email(&mut errors, "e", "no-at-sign");
        check_email(&mut errors, "e", "a@b");
        check_email(&mut errors, "e", "a b@c.d");
        assert_eq!(errors.0.len(), 3);
    }
}
