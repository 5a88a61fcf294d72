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
