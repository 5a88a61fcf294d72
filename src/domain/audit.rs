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
        let tenant_id = self.tenant_id.map(|t| t.to_string());
        let ip = self.meta.ip.map(|ip| ip.to_string());
        ChainFields {
            occurred_at: canonical_time(&self.occurred_at),
            tenant_id: tenant_id.as_deref(),
            actor_kind: self.actor.kind.as_str(),
            actor_id: &self.actor.id,
            action: self.action.as_str(),
            target_kind: self.target_kind,
            target_id: self.target_id.as_deref(),
            outcome: self.outcome.as_str(),
            request_id: self.meta.request_id.as_deref(),
            ip: ip.as_deref(),
            user_agent: self.meta.user_agent.as_deref(),
            details: &self.details,
        }
        .hash(prev_hash)
    }
}

/// What an event's hash covers, in this order: the canonical encoding is these fields as one
/// compact JSON object (keys in this order, `details` with its keys sorted, strings as UTF-8
/// with JSON's escapes), and the hash is SHA-256 of the previous event's hash (32 bytes; none
/// for a chain's first event) followed by that JSON. `docs/audit.md` shows it in Python.
#[derive(Serialize)]
struct ChainFields<'a> {
    /// RFC 3339 in UTC with microseconds: `2026-12-03T10:00:00.123456Z`.
    occurred_at: String,
    tenant_id: Option<&'a str>,
    actor_kind: &'a str,
    actor_id: &'a str,
    action: &'a str,
    target_kind: Option<&'a str>,
    target_id: Option<&'a str>,
    outcome: &'a str,
    request_id: Option<&'a str>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    details: &'a serde_json::Value,
}

impl ChainFields<'_> {
    fn hash(&self, prev_hash: Option<&[u8]>) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.unwrap_or(&[]));
        // Serializing strings and a JSON value cannot fail.
        hasher.update(serde_json::to_vec(self).unwrap_or_default());
        hasher.finalize().into()
    }
}

/// A stored event, as the audit API returns it (and an export holds it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    /// Always with six fractional digits, as the chain's canonical encoding has it.
    #[serde(serialize_with = "micros")]
    #[schema(value_type = String, format = DateTime, example = "2026-12-03T10:00:00.123456Z")]
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
    /// The hash of the event before this one in its chain (hex); `null` for a chain's first.
    pub prev_hash: Option<String>,
    /// SHA-256 of `prev_hash` and this event's canonical encoding (hex; see `docs/audit.md`).
    pub hash: String,
}

/// `occurred_at` as the canonical encoding has it.
fn canonical_time(at: &DateTime<Utc>) -> String {
    at.trunc_subsecs(6).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn micros<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&canonical_time(at))
}

impl AuditEvent {
    /// The hash this event's fields and `prev_hash` give: equal to `hash` unless the row was
    /// altered (or `prev_hash` is not hex).
    pub fn recomputed_hash(&self) -> Option<String> {
        let prev_hash = match &self.prev_hash {
            Some(hex_hash) => Some(hex::decode(hex_hash).ok()?),
            None => None,
        };
        let tenant_id = self.tenant_id.map(|t| t.to_string());
        let fields = ChainFields {
            occurred_at: canonical_time(&self.occurred_at),
            tenant_id: tenant_id.as_deref(),
            actor_kind: self.actor_kind.as_str(),
            actor_id: &self.actor_id,
            action: &self.action,
            target_kind: self.target_kind.as_deref(),
            target_id: self.target_id.as_deref(),
            outcome: self.outcome.as_str(),
            request_id: self.request_id.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            details: &self.details,
        };
        Some(hex::encode(fields.hash(prev_hash.as_deref())))
    }
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

/// A signed head of one audit chain, as stored and listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    pub id: i64,
    /// `null` on the platform chain.
    pub tenant_id: Option<TenantId>,
    /// The newest event of the chain when it was signed.
    pub event_id: i64,
    /// How many events the chain held up to and with `event_id`.
    pub event_count: i64,
    /// That event's `hash` (hex).
    pub hash: String,
    #[serde(serialize_with = "micros")]
    #[schema(value_type = String, format = DateTime)]
    pub signed_at: DateTime<Utc>,
    /// The audit key that signed it (see `/v1/audit/public-key`).
    pub key_id: String,
    /// Ed25519 signature of [`Checkpoint::message`] (hex).
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: UTF-8 text, one field a line, no trailing newline:
    /// `keyward-audit-checkpoint-v1`, the tenant id (or `platform`), the event id, the event
    /// count, the hash (hex) and `signed_at` (RFC 3339, microseconds, `Z`).
    pub fn message(
        tenant_id: Option<TenantId>,
        event_id: i64,
        event_count: i64,
        hash_hex: &str,
        signed_at: DateTime<Utc>,
    ) -> String {
        let chain = tenant_id.map_or_else(|| "platform".to_owned(), |t| t.to_string());
        format!(
            "keyward-audit-checkpoint-v1\n{chain}\n{event_id}\n{event_count}\n{hash_hex}\n{}",
            canonical_time(&signed_at)
        )
    }

    /// This checkpoint's own message.
    pub fn signed_message(&self) -> String {
        Self::message(
            self.tenant_id,
            self.event_id,
            self.event_count,
            &self.hash,
            self.signed_at,
        )
    }
}

/// A public key that has signed checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct AuditPublicKey {
    pub key_id: String,
    #[schema(example = "ed25519")]
    pub algorithm: &'static str,
    /// SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// The raw 32-byte key (hex).
    pub public_key: String,
}
