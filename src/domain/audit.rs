//! Audit events and their hash chain. Each tenant (and the platform) has its own chain: an
//! event's hash covers the previous event's hash and every field of the event, so an edited or
//! removed row breaks the chain.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use utoipa::ToSchema;

use super::ids::TenantId;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ActorKind {
    User,
    Service,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
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

/// What an audit event records. The names are what the trail stores, shows and filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
pub enum AuditAction {
    #[strum(serialize = "key.created")]
    KeyCreated,
    #[strum(serialize = "key.updated")]
    KeyUpdated,
    #[strum(serialize = "key.rotated")]
    KeyRotated,
    #[strum(serialize = "key.revoked")]
    KeyRevoked,
    #[strum(serialize = "key.verify_failed")]
    KeyVerifyFailed,
    #[strum(serialize = "service_token.created")]
    ServiceTokenCreated,
    #[strum(serialize = "service_token.updated")]
    ServiceTokenUpdated,
    #[strum(serialize = "service_token.rotated")]
    ServiceTokenRotated,
    #[strum(serialize = "service_token.revoked")]
    ServiceTokenRevoked,
    #[strum(serialize = "member.invited")]
    MemberInvited,
    #[strum(serialize = "member.updated")]
    MemberUpdated,
    #[strum(serialize = "member.removed")]
    MemberRemoved,
    #[strum(serialize = "member.invitation_cancelled")]
    MemberInvitationCancelled,
    #[strum(serialize = "session.logout")]
    SessionLogout,
    #[strum(serialize = "session.refresh_reused")]
    SessionRefreshReused,
    #[strum(serialize = "tenant.created")]
    TenantCreated,
    #[strum(serialize = "tenant.updated")]
    TenantUpdated,
    #[strum(serialize = "user.created")]
    UserCreated,
    #[strum(serialize = "user.disabled")]
    UserDisabled,
    #[strum(serialize = "user.enabled")]
    UserEnabled,
    #[strum(serialize = "user.invite_accept_failed")]
    UserInviteAcceptFailed,
    #[strum(serialize = "user.invite_accepted")]
    UserInviteAccepted,
    #[strum(serialize = "user.login")]
    UserLogin,
    #[strum(serialize = "user.login_failed")]
    UserLoginFailed,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// An event about to be appended.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<TenantId>,
    pub actor: Actor,
    pub action: AuditAction,
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
            action: self.action.as_str(),
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
        action: AuditAction,
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

#[cfg(test)]
mod action_tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_action_is_named_subject_dot_verb_once() {
        let names: Vec<&str> = AuditAction::iter().map(AuditAction::as_str).collect();
        for name in &names {
            let (subject, verb) = name.split_once('.').unwrap();
            assert!(!subject.is_empty() && !verb.is_empty(), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{name}"
            );
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }
}
