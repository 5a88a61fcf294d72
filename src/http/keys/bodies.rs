//! The request bodies and query of the key and service-token routes, as clients send them, each
//! turned into the domain's unvalidated input (`domain::key::KeyDraft` and friends), which the
//! service validates after authorizing the caller. Schema names are the domain's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::domain::key::{
    Environment, KeyDraft, KeyListQuery, KeyPatchDraft, KeyStatus, RateLimit, RevokeDraft, RotateDraft,
    ServiceTokenDraft,
};

/// Distinguishes "field absent" from "field set to null" in PATCH bodies.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn default_environment() -> Environment {
    Environment::Live
}

fn default_true() -> bool {
    true
}

/// `POST /v1/tenants/{tenant_id}/keys` body before validation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyDraft)]
pub struct CreateKeyBody {
    #[schema(example = "checkout backend")]
    pub name: String,
    #[serde(default = "default_environment")]
    pub environment: Environment,
    #[serde(default)]
    #[schema(example = json!(["billing:read"]))]
    pub scopes: Vec<String>,
    /// A JSON object of at most 4 KiB, returned by verify.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
    /// The tenant's own reference for the end user who holds the key.
    pub owner_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Alternative to `expires_at`: lifetime in seconds from now.
    pub ttl_seconds: Option<i64>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Also issue a signing secret, for signed requests (`POST /v1/verify/request`).
    #[serde(default)]
    pub signing: bool,
    /// How many successful verifications the key allows; absent means unlimited.
    pub remaining: Option<i64>,
    pub rate_limit: Option<RateLimit>,
}

impl From<CreateKeyBody> for KeyDraft {
    fn from(body: CreateKeyBody) -> Self {
        KeyDraft {
            name: body.name,
            environment: body.environment,
            scopes: body.scopes,
            metadata: body.metadata,
            owner_id: body.owner_id,
            expires_at: body.expires_at,
            ttl_seconds: body.ttl_seconds,
            enabled: body.enabled,
            signing: body.signing,
            remaining: body.remaining,
            rate_limit: body.rate_limit,
        }
    }
}

/// `PATCH .../keys/{key_id}` body: only the fields given change; `null` clears optional ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyPatchDraft)]
pub struct PatchKeyBody {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub enabled: Option<bool>,
    /// Verifications left; `null` makes the key unlimited.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub remaining: Option<Option<i64>>,
    /// `null` removes the rate limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Option<RateLimit>>,
}

impl From<PatchKeyBody> for KeyPatchDraft {
    fn from(body: PatchKeyBody) -> Self {
        KeyPatchDraft {
            name: body.name,
            scopes: body.scopes,
            metadata: body.metadata,
            owner_id: body.owner_id,
            expires_at: body.expires_at,
            enabled: body.enabled,
            remaining: body.remaining,
            rate_limit: body.rate_limit,
        }
    }
}

/// `POST .../rotate` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RotateDraft)]
pub struct RotateBody {
    /// How long the old key keeps working; default 86400, 0 ends it at once.
    pub grace_period_seconds: Option<i64>,
    /// Whether the new key gets a signing secret; by default, whether the old key had one.
    pub signing: Option<bool>,
}

impl From<RotateBody> for RotateDraft {
    fn from(body: RotateBody) -> Self {
        RotateDraft {
            grace_period_seconds: body.grace_period_seconds,
            signing: body.signing,
        }
    }
}

/// `POST .../revoke` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RevokeDraft)]
pub struct RevokeBody {
    pub reason: Option<String>,
}

impl From<RevokeBody> for RevokeDraft {
    fn from(body: RevokeBody) -> Self {
        RevokeDraft { reason: body.reason }
    }
}

/// `POST /v1/service-tokens` and `POST /v1/tenants/{tenant_id}/service-tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ServiceTokenDraft)]
pub struct CreateServiceTokenBody {
    #[schema(example = "api gateway")]
    pub name: String,
    #[schema(example = json!(["keys:verify"]))]
    pub permissions: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ttl_seconds: Option<i64>,
}

impl From<CreateServiceTokenBody> for ServiceTokenDraft {
    fn from(body: CreateServiceTokenBody) -> Self {
        ServiceTokenDraft {
            name: body.name,
            permissions: body.permissions,
            expires_at: body.expires_at,
            ttl_seconds: body.ttl_seconds,
        }
    }
}

/// Query of `GET .../keys` and `GET .../service-tokens`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyListParams {
    pub status: Option<KeyStatus>,
    pub environment: Option<Environment>,
    pub owner_id: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 100, default 50.
    pub limit: Option<i64>,
}

impl From<KeyListParams> for KeyListQuery {
    fn from(body: KeyListParams) -> Self {
        KeyListQuery {
            status: body.status,
            environment: body.environment,
            owner_id: body.owner_id,
            cursor: body.cursor,
            limit: body.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tells_null_from_absent() {
        let patch: PatchKeyBody = serde_json::from_value(serde_json::json!({"owner_id": null})).unwrap();
        assert_eq!(patch.owner_id, Some(None));
        let patch: PatchKeyBody = serde_json::from_value(serde_json::json!({"name": "x"})).unwrap();
        assert_eq!(patch.owner_id, None);
    }
}
