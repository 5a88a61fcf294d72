//! SQL, one module per table. Every query of tenant data takes the tenant and filters on it;
//! values always travel as bound parameters.

pub mod audit;
pub mod checkpoints;
pub mod invites;
pub mod keys;
pub mod login_failures;
pub mod memberships;
pub mod refresh_tokens;
pub mod sinks;
pub mod tenants;
pub mod usage;
pub mod users;

use crate::domain::user::Role;

/// A text column that held a value the code does not know (only possible after manual edits).
pub(crate) fn bad_column(column: &'static str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected value {value:?} in column {column}").into())
}

/// A role column's value (see `bad_column`).
pub(crate) fn role_column(column: &'static str, value: &str) -> Result<Role, sqlx::Error> {
    Role::parse(value).ok_or_else(|| bad_column(column, value))
}

/// The name of the constraint a unique violation tripped, if that is what `error` is.
pub fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}
