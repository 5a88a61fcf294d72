//! Use cases. Each authorizes its caller, validates its input, and runs its change and the
//! change's audit event in one transaction, so either both land or neither does.

pub mod audit;
pub mod auth;
pub mod keys;
pub mod tenants;
pub mod usage;
pub mod verify;

use sqlx::PgPool;

use crate::clock::Clock;
use crate::domain::audit::{Actor, ActorKind};
use crate::domain::authz::{Caller, Denied};
use crate::domain::validation::ValidationErrors;
use usage::UsageRecorder;

/// What every use case needs: the database, the clock and the verify side-effect writer.
#[derive(Clone, Debug)]
pub struct Context {
    pub pool: PgPool,
    pub clock: Clock,
    pub usage: UsageRecorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn actor_of(caller: &Caller) -> Actor {
    Actor {
        kind: ActorKind::Service,
        id: caller.token_id.to_string(),
    }
}
