//! Use cases. Each authorizes its caller, validates its input, and runs its change and the
//! change's audit event in one transaction, so either both land or neither does.

pub mod accounts;
pub mod audit;
pub mod callers;
pub mod key_cache;
pub mod keys;
pub mod limits;
pub mod members;
pub mod sessions;
pub mod signed;
pub mod tenants;
pub mod usage;
pub mod verify;

use sqlx::PgPool;
use std::sync::Arc;

use crate::crypto::jwt::Jwt;
use crate::crypto::password::{PasswordError, Passwords};
use crate::crypto::secrets::MasterKeys;

use crate::clock::Clock;
use crate::domain::audit::Actor;
use crate::domain::permissions::{Caller, Denied};
use crate::domain::validation::ValidationErrors;
use usage::UsageRecorder;

/// What every use case needs: the database, the clock, the verify side-effect writer, and for
/// user sessions the password hasher and the access-token keys (`None`: sessions not configured).
#[derive(Clone, Debug)]
pub struct Context {
    pub pool: PgPool,
    pub clock: Clock,
    pub usage: UsageRecorder,
    pub passwords: Passwords,
    pub jwt: Option<Arc<Jwt>>,
    /// Master keys sealing signing secrets (`None`: keys cannot be issued with `signing`).
    pub master_keys: Option<Arc<MasterKeys>>,
    /// The SigV4 regions and services this deployment accepts.
    pub sigv4: Arc<crate::signing::sigv4::Accept>,
    /// Whether `/v1/authorize` answers gateways without a gateway token.
    pub authorize_open: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<Vec<std::net::IpAddr>>,
    /// Keys already looked up by hash, kept fresh through LISTEN/NOTIFY.
    pub key_cache: key_cache::KeyCache,
}

impl Context {
    pub fn with_jwt(mut self, jwt: Jwt) -> Self {
        self.jwt = Some(Arc::new(jwt));
        self
    }

    pub fn with_sigv4(mut self, accept: crate::signing::sigv4::Accept) -> Self {
        self.sigv4 = Arc::new(accept);
        self
    }

    pub fn with_master_keys(mut self, keys: MasterKeys) -> Self {
        self.master_keys = Some(Arc::new(keys));
        self
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
    #[error("{0}")]
    Conflict(String),
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
