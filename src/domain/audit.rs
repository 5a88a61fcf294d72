//! Audit events and their hash chain. Each tenant (and the platform) has its own chain: an
//! event's hash covers the previous event's hash and every field of the event, so an edited or
//! removed row breaks the chain.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use utoipa::ToSchema;

use super::ids::TenantId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Service,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Service => "service",
            ActorKind::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(ActorKind::User),
            "service" => Some(ActorKind::Service),
            "system" => Some(ActorKind::System),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Outcome::Success),
            "denied" => Some(Outcome::Denied),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

/// Where a request came from, as recorded on its audit events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// An event about to be appended.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<TenantId>,
    pub actor: Actor,
    pub action: &'static str,
    pub target_kind: Option<&'static str>,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    pub meta: RequestMeta,
    pub details: serde_json::Value,
}

impl NewAuditEvent {
    /// PostgreSQL keeps microseconds; hashing the stored precision keeps the chain checkable.
    pub fn stored_time(&self) -> DateTime<Utc> {
        self.occurred_at.trunc_subsecs(6)
    }

    pub fn chain_hash(&self, prev_hash: Option<&[u8]>) -> [u8; 32] {
        #[derive(Serialize)]
        struct Hashed<'a> {
            occurred_at: String,
            tenant_id: Option<String>,
            actor_kind: &'a str,
            actor_id: &'a str,
            action: &'a str,
            target_kind: Option<&'a str>,
            target_id: Option<&'a str>,
            outcome: &'a str,
            request_id: Option<&'a str>,
            ip: Option<String>,
            user_agent: Option<&'a str>,
            details: &'a serde_json::Value,
        }
        let hashed = Hashed {
            occurred_at: self.stored_time().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            tenant_id: self.tenant_id.map(|t| t.to_string()),
            actor_kind: self.actor.kind.as_str(),
            actor_id: &self.actor.id,
            action: self.action,
            target_kind: self.target_kind,
            target_id: self.target_id.as_deref(),
            outcome: self.outcome.as_str(),
            request_id: self.meta.request_id.as_deref(),
            ip: self.meta.ip.map(|ip| ip.to_string()),
            user_agent: self.meta.user_agent.as_deref(),
            details: &self.details,
        };
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.unwrap_or(&[]));
        // Serializing a struct of strings cannot fail.
        hasher.update(serde_json::to_vec(&hashed).unwrap_or_default());
        hasher.finalize().into()
    }
}

/// A stored event, as the audit API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<TenantId>,
    pub actor_kind: ActorKind,
    pub actor_id: String,
    #[schema(example = "key.created")]
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl NewAuditEvent {
    pub fn new(
        occurred_at: DateTime<Utc>,
        actor: &Actor,
        meta: &RequestMeta,
        tenant_id: Option<TenantId>,
        action: &'static str,
        outcome: Outcome,
    ) -> Self {
        Self {
            occurred_at,
            tenant_id,
            actor: actor.clone(),
            action,
            target_kind: None,
            target_id: None,
            outcome,
            meta: meta.clone(),
            details: serde_json::json!({}),
        }
    }

    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target_kind = Some(kind);
        self.target_id = Some(id.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}
