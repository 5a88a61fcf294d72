//! A tenant's members and the invitations that bring people in.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::user::{Role, UserId};

/// A member of a tenant: a user's membership with the parts of their account the members API
/// shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// Whether the user has set a password yet.
    pub active: bool,
}

/// A pending invitation as inviters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The actor (`user` or service token id) who sent it.
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
}

/// Why an invitation stopped being acceptable before anyone accepted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum VoidReason {
    /// An inviter cancelled it.
    Cancelled,
    /// A newer invitation to the same person in the same tenant replaced it.
    Replaced,
    /// The person's role changed, or they were removed, after it was sent.
    MemberChanged,
    /// Too many failed attempts to accept it.
    TooManyFailures,
}

impl VoidReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
