//! Use cases. Each authorizes its caller, validates its input, and runs its change and the
//! change's audit event in one transaction, so either both land or neither does.

pub mod accounts;
pub mod archive;
pub mod audit;
pub mod callers;
pub mod keys;
pub mod members;
pub mod sessions;
pub mod tenants;
pub mod usage;

use sqlx::PgPool;
use std::sync::Arc;

use crate::crypto::jwt::Jwt;
use crate::crypto::password::{PasswordError, Passwords};
use crate::crypto::secrets::MasterKeys;

use crate::clock::Clock;
use crate::domain::audit::Actor;
use crate::domain::ids::KeyId;
use crate::domain::permissions::{Caller, Denied};
use crate::domain::validation::ValidationErrors;

/// What every use case needs (see [`ContextParts`]), shared: cloning it (axum does, more than
/// once per request) is one reference count, not one per part.
#[derive(Clone, Debug)]
pub struct Context(Arc<ContextParts>);

impl std::ops::Deref for Context {
    type Target = ContextParts;

    fn deref(&self) -> &ContextParts {
        &self.0
    }
}

impl From<ContextParts> for Context {
    fn from(parts: ContextParts) -> Self {
        Context(Arc::new(parts))
    }
}

/// What every use case needs: the database, the clock, the verify engine, and for user sessions
/// the password hasher and the access-token keys (`None`: sessions not configured). Built by
/// `App::build` from the configuration.
#[derive(Clone, Debug)]
pub struct ContextParts {
    pub pool: PgPool,
    pub clock: Clock,
    /// The verify engine: its cache, usage writer and settings, and the change protocol.
    pub verify: crate::verify::Engine,
    pub passwords: Passwords,
    pub jwt: Option<Arc<Jwt>>,
    /// Master keys sealing signing secrets (`None`: keys cannot be issued with `signing`).
    pub master_keys: Option<Arc<MasterKeys>>,
    /// The key signing audit checkpoints (`None`: none are signed).
    pub audit_key: Option<Arc<crate::crypto::audit_key::AuditKey>>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<crate::config::TrustedProxies>,
    /// The audit keys stored in the database, as `/v1/audit/public-key` serves them.
    pub stored_audit_keys: Arc<audit::StoredAuditKeys>,
    /// What `GET /metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Context {
    /// The parts, to build a context that differs in some of them.
    pub fn into_parts(self) -> ContextParts {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }

    pub fn with_jwt(self, jwt: Jwt) -> Self {
        ContextParts {
            jwt: Some(Arc::new(jwt)),
            ..self.into_parts()
        }
        .into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    #[error("missing or invalid credentials")]
    Unauthenticated,
    /// Not authenticated, for a reason the caller is told (e.g. a reused refresh token).
    #[error("{0}")]
    NotAuthenticated(&'static str),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The tenant is suspended: resume it first.
    #[error("{0}")]
    TenantSuspended(&'static str),
    /// The person is already a member of the tenant.
    #[error("{0}")]
    AlreadyMember(&'static str),
    /// A tenant keeps at least one owner.
    #[error("{0}")]
    LastOwner(&'static str),
    /// Something with this unique name exists already.
    #[error("{0}")]
    AlreadyExists(&'static str),
    /// The key is revoked (for good).
    #[error("{0}")]
    KeyRevoked(&'static str),
    /// The key has expired (for good; expiry is final like revocation).
    #[error("{0}")]
    KeyExpired(&'static str),
    /// The key was rotated: what is asked belongs to its successor.
    #[error("{0}")]
    KeyRotated(String),
    /// Another change to the same thing won the race: read again and retry.
    #[error("{0}")]
    ConcurrentChange(&'static str),
    /// A stored secret does not decrypt with the configured master keys.
    #[error("the signing secret of {0} does not decrypt with the configured master keys")]
    SecretUndecryptable(KeyId),
    #[error("the email or password is wrong")]
    InvalidLogin,
    #[error("too many failed attempts; retry in {0} seconds")]
    Throttled(u64),
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("password checks are at capacity; retry in a second")]
    Busy,
    #[error("password hashing failed")]
    Password(PasswordError),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<PasswordError> for Error {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => Error::Busy,
            other => Error::Password(other),
        }
    }
}

pub fn actor_of(caller: &Caller) -> Actor {
    caller.actor()
}
