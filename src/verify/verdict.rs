//! The verdict on a presented key or signed request: which code it earns, decided from the
//! stored key, its tenant's status and the scopes the caller requires. Pure: no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::sync::Arc;

use super::limits::{RateStatus, Refused, Spent};
use super::Verifiable;
use crate::domain::key::KeyStatus;
use crate::domain::scope::{covers_all, Scope};
use crate::domain::tenant::TenantStatus;
use crate::signing::{Refusal, Scheme};

/// The answer to one verification.
#[derive(Debug)]
pub struct Verdict {
    pub code: VerifyCode,
    /// Signed requests: the scheme the request was signed with, when one was recognised.
    pub scheme: Option<Scheme>,
    /// The key, on `VALID` only.
    pub key: Option<Arc<Verifiable>>,
    /// Verifications left after this one, for keys with a usage limit.
    pub remaining: Option<i64>,
    /// For keys with a rate limit: its state after this call (also when it refused the call).
    pub rate: Option<RateStatus>,
}

impl Verdict {
    pub fn valid(key: Arc<Verifiable>, scheme: Option<Scheme>, spent: Spent) -> Self {
        Verdict {
            code: VerifyCode::Valid,
            scheme,
            key: Some(key),
            remaining: spent.remaining,
            rate: spent.rate,
        }
    }

    pub fn refused(code: VerifyCode, scheme: Option<Scheme>) -> Self {
        Verdict {
            code,
            scheme,
            key: None,
            remaining: None,
            rate: None,
        }
    }

    /// A refusal by a limit, with the rate limit's state.
    pub fn limited(refused: Refused, scheme: Option<Scheme>) -> Self {
        Verdict {
            rate: refused.rate,
            ..Verdict::refused(refused.code, scheme)
        }
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifyCode {
    Valid,
    Malformed,
    NotFound,
    Expired,
    Revoked,
    Disabled,
    TenantSuspended,
    InsufficientScope,
    /// Signed requests: the signature is not the one the key's secret gives for this request.
    SignatureMismatch,
    /// Signed requests: signed too long ago (or too far ahead), or a presigned URL has lapsed.
    SignatureExpired,
    /// Signed requests: this signature was already accepted once.
    Replayed,
    /// Signed requests: something that must be signed (e.g. `host`) is not.
    UnsignedHeaderRequired,
    /// Signed requests: the tenant does not accept this scheme (AWS SigV2 unless enabled).
    SchemeDisabled,
    /// Gateways: the body was not passed on and the signature does not declare its hash.
    BodyUnverifiable,
    /// The key's rate limit is used up for the current window.
    RateLimited,
    /// The key has no verifications left.
    UsageExceeded,
}

impl VerifyCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Judges a key that was found. The key's own state comes first, then its tenant's, then scopes.
pub fn judge(key: &Verifiable, tenant_status: TenantStatus, required: &[Scope], now: DateTime<Utc>) -> VerifyCode {
    match key.status(now) {
        KeyStatus::Revoked => VerifyCode::Revoked,
        KeyStatus::Expired => VerifyCode::Expired,
        KeyStatus::Disabled => VerifyCode::Disabled,
        KeyStatus::Active if tenant_status == TenantStatus::Suspended => VerifyCode::TenantSuspended,
        KeyStatus::Active if !covers_all(key.granted_scopes(), required) => VerifyCode::InsufficientScope,
        KeyStatus::Active => VerifyCode::Valid,
    }
}

/// The code for each refusal of the signing library: a new refusal does not compile until it
/// has its code.
impl From<Refusal> for VerifyCode {
    fn from(refusal: Refusal) -> VerifyCode {
        match refusal {
            Refusal::Malformed => VerifyCode::Malformed,
            Refusal::SignatureMismatch => VerifyCode::SignatureMismatch,
            Refusal::SignatureExpired => VerifyCode::SignatureExpired,
            Refusal::UnsignedHeaderRequired => VerifyCode::UnsignedHeaderRequired,
        }
    }
}
