//! API keys and service tokens: what they hold and grant, and their lifecycle states. The
//! request bodies that create and change them, and the rules on those, are in `draft`.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{KeyId, KeyKind, TenantId};

use super::audit::Actor;
use super::permissions::{Permission, TenantScope};
use super::scope::Scope;
use super::token::{NewToken, TokenPrefix};

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_OWNER_ID_LEN: usize = 256;
pub const MAX_METADATA_BYTES: usize = 4096;
pub const MAX_TTL_SECONDS: i64 = 10 * 366 * 24 * 3600;
pub const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
pub const MAX_GRACE_SECONDS: i64 = 90 * 24 * 3600;
pub const MAX_REASON_LEN: usize = 500;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    pub fn token_prefix(self) -> TokenPrefix {
        match self {
            Environment::Live => TokenPrefix::Live,
            Environment::Test => TokenPrefix::Test,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
    Disabled,
}

/// A stored key (customer key or service token) without its hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub id: KeyId,
    /// `None` only for platform-wide service tokens.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub environment: Environment,
    pub prefix: String,
    pub start: String,
    /// What the key grants; also what kind of key it is.
    pub grants: Grants,
    pub metadata: serde_json::Value,
    pub owner_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub enabled: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<KeyId>,
    /// The first key of this key's rotation chain: a key and its successors share one
    /// `remaining` counter and one rate-limit window, named by this id.
    pub limit_family: KeyId,
    /// The encrypted signing secret of a key that signs requests.
    pub signing_secret: Option<Sealed>,
    /// Verifications left (`None`: unlimited).
    pub remaining: Option<i64>,
    pub rate_limit: Option<RateLimit>,
}

/// A signing secret as stored, sealed by `crypto::secrets::MasterKeys`: the master key version
/// and `nonce || ciphertext+tag`. Opaque here: only the master keys open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub version: i32,
    pub blob: Vec<u8>,
}

/// What a key grants, which also says what it is: a customer key grants its holder scopes in
/// the tenant's own API; a service token grants keyward permissions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Grants {
    Scopes(Vec<Scope>),
    Permissions(Vec<Permission>),
}

impl Grants {
    pub fn kind(&self) -> KeyKind {
        match self {
            Grants::Scopes(_) => KeyKind::Customer,
            Grants::Permissions(_) => KeyKind::Service,
        }
    }

    /// The names, as stored and shown.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Grants::Scopes(scopes) => scopes.iter().map(Scope::as_str).collect(),
            Grants::Permissions(permissions) => permissions.iter().map(|p| p.as_str()).collect(),
        }
    }

    /// Reads stored names back for a key of `kind`, with the names that are no scope (or
    /// permission) today, which the key does not grant. Older versions accepted scopes with an
    /// empty segment (`billing:`); such a key keeps working with the rest of its scopes, and
    /// the caller reports what was left out, so that nothing is dropped silently.
    pub fn parse(kind: KeyKind, names: &[String]) -> (Grants, Vec<&str>) {
        let mut refused = Vec::new();
        let grants = match kind {
            KeyKind::Customer => {
                let mut scopes = Vec::with_capacity(names.len());
                for name in names {
                    match Scope::parse(name) {
                        Some(scope) => scopes.push(scope),
                        None => refused.push(name.as_str()),
                    }
                }
                Grants::Scopes(scopes)
            }
            KeyKind::Service => {
                let mut permissions = Vec::with_capacity(names.len());
                for name in names {
                    match Permission::parse(name) {
                        Some(permission) => permissions.push(permission),
                        None => refused.push(name.as_str()),
                    }
                }
                Grants::Permissions(permissions)
            }
        };
        (grants, refused)
    }
}

pub const MAX_RATE_LIMIT: i32 = 1_000_000;
pub const MAX_RATE_WINDOW_SECONDS: i32 = 86_400;

/// At most `limit` successful verifications per `window_seconds` (fixed windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[schema(example = 100)]
    pub limit: i32,
    #[schema(example = 60)]
    pub window_seconds: i32,
}

impl KeyStatus {
    /// A key's status at `now` from what decides it: revoked wins over expired, which wins over
    /// disabled.
    pub fn at(now: DateTime<Utc>, revoked: bool, expires_at: Option<DateTime<Utc>>, enabled: bool) -> KeyStatus {
        if revoked {
            KeyStatus::Revoked
        } else if expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else if !enabled {
            KeyStatus::Disabled
        } else {
            KeyStatus::Active
        }
    }
}

impl Key {
    /// Revoked wins over expired, which wins over disabled.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        KeyStatus::at(now, self.revoked_at.is_some(), self.expires_at, self.enabled)
    }

    pub fn kind(&self) -> KeyKind {
        self.grants.kind()
    }

    /// The scopes a customer key grants (none for a service token).
    pub fn granted_scopes(&self) -> &[Scope] {
        match &self.grants {
            Grants::Scopes(scopes) => scopes,
            Grants::Permissions(_) => &[],
        }
    }

    /// The permissions a service token holds (none for a customer key).
    pub fn permissions(&self) -> &[Permission] {
        match &self.grants {
            Grants::Permissions(permissions) => permissions,
            Grants::Scopes(_) => &[],
        }
    }

    /// The expiry a rotated-away key gets: now + grace, never later than it already had.
    pub fn expiry_after_rotation(&self, now: DateTime<Utc>, grace_seconds: i64) -> DateTime<Utc> {
        let end_of_grace = now + Duration::seconds(grace_seconds);
        match self.expires_at {
            Some(current) if current < end_of_grace => current,
            _ => end_of_grace,
        }
    }
}

/// What a new key is made from: a validated spec, or the key a rotation succeeds.
#[derive(Debug, Clone)]
pub struct KeyTemplate {
    pub name: String,
    pub environment: Environment,
    pub grants: Grants,
    pub metadata: serde_json::Value,
    pub owner_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub rotated_from: Option<KeyId>,
    /// The family of the key this one succeeds (`None`: a new family).
    pub limit_family: Option<KeyId>,
    pub remaining: Option<i64>,
    pub rate_limit: Option<RateLimit>,
}

impl KeyTemplate {
    /// The one way a key row comes to be: a fresh id, `token`'s prefix and start, never used,
    /// never revoked, no signing secret yet.
    pub fn issue(self, owner: TenantScope, token: &NewToken, created_by: &Actor, now: DateTime<Utc>) -> Key {
        let id = KeyId::generate(self.grants.kind());
        Key {
            limit_family: self.limit_family.unwrap_or_else(|| id.clone()),
            id,
            tenant_id: owner.tenant_id(),
            name: self.name,
            environment: self.environment,
            prefix: token.prefix().as_str().to_owned(),
            start: token.start(),
            grants: self.grants,
            metadata: self.metadata,
            owner_id: self.owner_id,
            created_at: now,
            created_by: Some(created_by.id.clone()),
            expires_at: self.expires_at,
            revoked_at: None,
            revoked_reason: None,
            enabled: self.enabled,
            last_used_at: None,
            rotated_from: self.rotated_from,
            signing_secret: None,
            remaining: self.remaining,
            rate_limit: self.rate_limit,
        }
    }
}

#[cfg(test)]
mod grants_tests {
    use super::*;

    #[test]
    fn stored_scopes_read_back_as_the_grants_of_a_customer_key() {
        let names = vec!["billing:read".to_owned(), "orders:*".to_owned()];

        let (grants, refused) = Grants::parse(KeyKind::Customer, &names);

        assert_eq!(refused, Vec::<&str>::new());
        assert_eq!(grants.kind(), KeyKind::Customer);
        assert_eq!(grants.names(), ["billing:read", "orders:*"]);
    }

    #[test]
    fn stored_permissions_read_back_as_the_grants_of_a_service_token() {
        let names = vec!["keys:verify".to_owned()];

        assert_eq!(
            Grants::parse(KeyKind::Service, &names),
            (Grants::Permissions(vec![Permission::KeysVerify]), vec![])
        );
    }

    #[test]
    fn a_stored_name_that_is_no_grant_is_not_granted_and_is_named() {
        let names = vec!["keys:verify".to_owned(), "keys:everything".to_owned()];
        let legacy = vec!["billing:".to_owned(), "billing:read".to_owned()];

        assert_eq!(
            Grants::parse(KeyKind::Service, &names),
            (
                Grants::Permissions(vec![Permission::KeysVerify]),
                vec!["keys:everything"]
            )
        );
        assert_eq!(
            Grants::parse(KeyKind::Customer, &legacy),
            (
                Grants::Scopes(vec![Scope::parse("billing:read").unwrap()]),
                vec!["billing:"]
            )
        );
    }
}

mod draft;
pub use draft::*;

#[cfg(test)]
impl Key {
    /// An active customer key of `tenant_id` with no scopes and no limits, for unit tests.
    pub(crate) fn example(tenant_id: Option<TenantId>) -> Key {
        let id = KeyId::generate(KeyKind::Customer);
        Key {
            limit_family: id.clone(),
            id,
            tenant_id,
            name: "k".into(),
            environment: Environment::Live,
            prefix: "sk_live_".into(),
            start: "abcd".into(),
            grants: Grants::Scopes(vec![]),
            metadata: serde_json::json!({}),
            owner_id: None,
            created_at: Utc::now(),
            created_by: None,
            expires_at: None,
            revoked_at: None,
            revoked_reason: None,
            enabled: true,
            last_used_at: None,
            rotated_from: None,
            signing_secret: None,
            remaining: None,
            rate_limit: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(expires_at: Option<DateTime<Utc>>, revoked: bool, enabled: bool) -> Key {
        Key {
            expires_at,
            revoked_at: revoked.then(Utc::now),
            enabled,
            ..Key::example(Some(TenantId::generate()))
        }
    }

    #[test]
    fn status_prefers_revoked_then_expired_then_disabled() {
        let now = Utc::now();
        let past = Some(now - Duration::seconds(1));
        assert_eq!(key(past, true, false).status(now), KeyStatus::Revoked);
        assert_eq!(key(past, false, false).status(now), KeyStatus::Expired);
        assert_eq!(key(None, false, false).status(now), KeyStatus::Disabled);
        assert_eq!(key(None, false, true).status(now), KeyStatus::Active);
        assert_eq!(key(Some(now), false, true).status(now), KeyStatus::Expired);
    }

    #[test]
    fn rotation_never_extends_an_earlier_expiry() {
        let now = Utc::now();
        let soon = now + Duration::seconds(60);
        assert_eq!(key(Some(soon), false, true).expiry_after_rotation(now, 3600), soon);
        assert_eq!(
            key(None, false, true).expiry_after_rotation(now, 3600),
            now + Duration::seconds(3600)
        );
        assert_eq!(key(None, false, true).expiry_after_rotation(now, 0), now);
    }

    #[test]
    fn draft_reports_every_bad_field() {
        let draft = KeyDraft {
            name: String::new(),
            environment: Environment::Live,
            scopes: vec!["ok".into(), "Not OK".into()],
            metadata: Some(serde_json::json!([1])),
            owner_id: None,
            expires_at: None,
            ttl_seconds: Some(0),
            enabled: true,
            signing: false,
            remaining: None,
            rate_limit: None,
        };
        let errors = draft.validate(Utc::now()).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "scopes[1]", "metadata", "ttl_seconds"]);
    }
}
