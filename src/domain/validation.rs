//! Field-level validation errors, collected so a caller sees every problem at once.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The JSON field (or query parameter) at fault, e.g. `scopes[2]`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, thiserror::Error)]
#[error("validation failed")]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }

    /// `Ok(value)` when nothing was added, the errors otherwise.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// A required, trimmed, non-empty text of at most `max` characters.
pub fn check_text(errors: &mut ValidationErrors, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        errors.add(field, "must not be empty");
    } else if value.chars().count() > max {
        errors.add(field, format!("must be at most {max} characters"));
    } else if value.chars().any(char::is_control) {
        errors.add(field, "must not contain control characters");
    }
}

/// An optional filter value compared as text: at most `max` characters and no control
/// characters (PostgreSQL text cannot hold NUL).
pub fn check_filter(errors: &mut ValidationErrors, field: &str, value: Option<&str>, max: usize) {
    if let Some(value) = value {
        if value.chars().count() > max || value.chars().any(char::is_control) {
            errors.add(
                field,
                format!("must be at most {max} characters, without control characters"),
            );
        }
    }
}

/// Times PostgreSQL can store: years 1 to 9999.
pub fn check_time(errors: &mut ValidationErrors, field: &str, value: Option<chrono::DateTime<chrono::Utc>>) {
    use chrono::Datelike;
    if value.is_some_and(|t| !(1..=9999).contains(&t.year())) {
        errors.add(field, "must be between the years 1 and 9999");
    }
}
