//! What verification keeps of a key: exactly what judging it, spending its limits and answering
//! for it need, compact enough that a million fit in a few hundred MiB, and shared (behind an
//! `Arc`) by the cache and every verification that hits it, so that a hit copies nothing.
//! Rarely set parts (limits, owner and metadata) sit behind a pointer of their own, and equal
//! grants are one allocation for all the keys that hold them.

use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::key::Sealed;
use crate::domain::tenant::TenantSettings;

use crate::domain::ids::{KeyId, KeyKind, TenantId};
use crate::domain::key::{Environment, Grants, Key, KeyStatus, RateLimit};
use crate::domain::permissions::Permission;
use crate::domain::scope::Scope;
use crate::domain::tenant::TenantStatus;

/// A key as verification knows it, with its tenant's status when it was read.
#[derive(Debug, PartialEq)]
pub struct Verifiable {
    id: KeyId,
    tenant_id: Option<TenantId>,
    grants: Arc<Grants>,
    expires_at: Option<DateTime<Utc>>,
    environment: Environment,
    revoked: bool,
    enabled: bool,
    /// `None`: a platform service token, which has no tenant.
    tenant_status: Option<TenantStatus>,
    limits: Option<Box<KeyLimits>>,
    shown: Option<Box<Shown>>,
}

/// A customer key found by id for a signed request: the key, its sealed signing secret (none:
/// the key does not sign) and its tenant's settings.
#[derive(Debug)]
pub struct Signer {
    pub key: Arc<Verifiable>,
    pub secret: Option<Sealed>,
    pub settings: TenantSettings,
}

/// A limited key's limits: the family they are counted for, and which apply.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyLimits {
    /// The first key of the rotation chain: a key and its successors share its counters.
    pub family: KeyId,
    /// The key has a `remaining` budget (kept in the database, spent through slices).
    pub usage_limited: bool,
    pub rate_limit: Option<RateLimit>,
}

/// What a verification answers about a key besides its id, scopes and expiry.
#[derive(Debug, PartialEq)]
struct Shown {
    owner_id: Option<Box<str>>,
    /// `None`: the empty object.
    metadata: Option<serde_json::Value>,
}

impl Verifiable {
    /// Keeps what verification needs of `key`, its grants shared through `grants`.
    pub fn of(key: &Key, tenant_status: Option<TenantStatus>, grants: &GrantSets) -> Self {
        let limits = (key.remaining.is_some() || key.rate_limit.is_some()).then(|| {
            Box::new(KeyLimits {
                family: key.limit_family.clone(),
                usage_limited: key.remaining.is_some(),
                rate_limit: key.rate_limit,
            })
        });
        let metadata = match &key.metadata {
            serde_json::Value::Object(map) if map.is_empty() => None,
            metadata => Some(metadata.clone()),
        };
        let shown = (key.owner_id.is_some() || metadata.is_some()).then(|| {
            Box::new(Shown {
                owner_id: key.owner_id.as_deref().map(Box::from),
                metadata,
            })
        });
        Verifiable {
            id: key.id.clone(),
            tenant_id: key.tenant_id,
            grants: grants.share(&key.grants),
            expires_at: key.expires_at,
            environment: key.environment,
            revoked: key.revoked_at.is_some(),
            enabled: key.enabled,
            tenant_status,
            limits,
            shown,
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn tenant_id(&self) -> Option<TenantId> {
        self.tenant_id
    }

    pub fn kind(&self) -> KeyKind {
        self.grants.kind()
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The scopes a customer key grants (none for a service token).
    pub fn granted_scopes(&self) -> &[Scope] {
        match &*self.grants {
            Grants::Scopes(scopes) => scopes,
            Grants::Permissions(_) => &[],
        }
    }

    /// The permissions a service token holds (none for a customer key).
    pub fn permissions(&self) -> &[Permission] {
        match &*self.grants {
            Grants::Permissions(permissions) => permissions,
            Grants::Scopes(_) => &[],
        }
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// Its tenant's status when the key was read; `None` for a platform service token.
    pub fn tenant_status(&self) -> Option<TenantStatus> {
        self.tenant_status
    }

    pub fn limits(&self) -> Option<&KeyLimits> {
        self.limits.as_deref()
    }

    pub fn owner_id(&self) -> Option<&str> {
        self.shown.as_ref().and_then(|shown| shown.owner_id.as_deref())
    }

    /// The key's metadata (the empty object when it has none).
    pub fn metadata(&self) -> serde_json::Value {
        self.shown
            .as_ref()
            .and_then(|shown| shown.metadata.clone())
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()))
    }

    /// As `Key::status`: revoked wins over expired, which wins over disabled.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        KeyStatus::at(now, self.revoked, self.expires_at, self.enabled)
    }
}

/// Distinct grant sets seen, so that keys holding equal grants share one allocation. Bounded:
/// at [`MAX_GRANT_SETS`] the sets no key holds any more are forgotten (at most once a second),
/// and while it stays full a new set is kept by its key alone.
#[derive(Debug, Default)]
pub struct GrantSets {
    sets: Mutex<(HashSet<Arc<Grants>>, Option<Instant>)>,
}

const MAX_GRANT_SETS: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl GrantSets {
    fn share(&self, grants: &Grants) -> Arc<Grants> {
        let Ok(mut guard) = self.sets.lock() else {
            return Arc::new(grants.clone());
        };
        let (sets, pruned) = &mut *guard;
        if let Some(shared) = sets.get(grants) {
            return shared.clone();
        }
        if sets.len() >= MAX_GRANT_SETS && pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            sets.retain(|set| Arc::strong_count(set) > 1);
            *pruned = Some(Instant::now());
        }
        let shared = Arc::new(grants.clone());
        if sets.len() < MAX_GRANT_SETS {
            sets.insert(shared.clone());
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_equal_grants_share_them() {
        let sets = GrantSets::default();
        let (a, b) = (Key::example(None), Key::example(None));

        let (a, b) = (Verifiable::of(&a, None, &sets), Verifiable::of(&b, None, &sets));

        assert!(Arc::ptr_eq(&a.grants, &b.grants));
    }

    #[test]
    fn a_key_without_limits_owner_or_metadata_keeps_no_extra_allocation() {
        let key = Key::example(Some(TenantId::generate()));
        assert!(key.remaining.is_none() && key.rate_limit.is_none() && key.owner_id.is_none());

        let kept = Verifiable::of(&key, Some(TenantStatus::Active), &GrantSets::default());

        assert!(kept.limits.is_none() && kept.shown.is_none());
        assert_eq!(kept.metadata(), serde_json::json!({}));
        assert!(
            std::mem::size_of::<Verifiable>() <= 96,
            "{}",
            std::mem::size_of::<Verifiable>()
        );
    }

    #[test]
    fn a_key_keeps_its_limits_owner_and_metadata() {
        let mut key = Key::example(Some(TenantId::generate()));
        key.remaining = Some(5);
        key.owner_id = Some("user_1".into());
        key.metadata = serde_json::json!({"plan": "pro"});

        let kept = Verifiable::of(&key, Some(TenantStatus::Active), &GrantSets::default());

        assert_eq!(
            kept.limits().map(|l| (l.usage_limited, l.rate_limit)),
            Some((true, None))
        );
        assert_eq!(kept.owner_id(), Some("user_1"));
        assert_eq!(kept.metadata(), serde_json::json!({"plan": "pro"}));
    }

    #[test]
    fn status_follows_the_key() {
        let now = Utc::now();
        let mut key = Key::example(None);
        key.expires_at = Some(now);
        let sets = GrantSets::default();
        assert_eq!(Verifiable::of(&key, None, &sets).status(now), KeyStatus::Expired);
        key.revoked_at = Some(now);
        assert_eq!(Verifiable::of(&key, None, &sets).status(now), KeyStatus::Revoked);
    }
}
