//! Who may do what. One function, `authorize`, decides every management call from the caller,
//! the action and the tenant it touches; handlers never improvise checks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{KeyId, TenantId};

/// Permissions a service token can hold.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Permission {
    #[serde(rename = "keys:verify")]
    KeysVerify,
    #[serde(rename = "keys:read")]
    KeysRead,
    #[serde(rename = "keys:write")]
    KeysWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "tenants:admin")]
    TenantsAdmin,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::KeysVerify,
        Permission::KeysRead,
        Permission::KeysWrite,
        Permission::AuditRead,
        Permission::TenantsAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::KeysVerify => "keys:verify",
            Permission::KeysRead => "keys:read",
            Permission::KeysWrite => "keys:write",
            Permission::AuditRead => "audit:read",
            Permission::TenantsAdmin => "tenants:admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// Whether a credential acts for the whole platform or for one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantScope {
    Platform,
    Tenant(TenantId),
}

impl TenantScope {
    pub fn tenant_id(self) -> Option<TenantId> {
        match self {
            TenantScope::Platform => None,
            TenantScope::Tenant(id) => Some(id),
        }
    }
}

/// An authenticated caller of keyward's own API.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_id: KeyId,
    pub scope: TenantScope,
    pub permissions: Vec<Permission>,
}

impl Caller {
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    CreateTenant,
    ListTenants,
    ReadTenant,
    UpdateTenant,
    ReadKeys,
    WriteKeys,
    ManageServiceTokens,
    ReadAudit,
    VerifyKeys,
}

impl Action {
    fn permission(self) -> Permission {
        match self {
            Action::CreateTenant | Action::ListTenants | Action::UpdateTenant => {
                Permission::TenantsAdmin
            }
            Action::ManageServiceTokens => Permission::TenantsAdmin,
            Action::ReadTenant | Action::ReadKeys => Permission::KeysRead,
            Action::WriteKeys => Permission::KeysWrite,
            Action::ReadAudit => Permission::AuditRead,
            Action::VerifyKeys => Permission::KeysVerify,
        }
    }

    /// Actions that only a platform-wide caller may take, whatever tenant they name.
    fn platform_only(self) -> bool {
        matches!(
            self,
            Action::CreateTenant | Action::ListTenants | Action::UpdateTenant
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The tenant is not the caller's: answered as "not found" so nothing leaks.
    #[error("not found")]
    NotFound,
    #[error("the credential lacks the `{0}` permission")]
    MissingPermission(&'static str),
    #[error("this action needs a platform-wide credential")]
    PlatformOnly,
}

/// Decides whether `caller` may take `action` on `tenant` (`None`: platform-level, no tenant).
pub fn authorize(caller: &Caller, action: Action, tenant: Option<TenantId>) -> Result<(), Denied> {
    if let (TenantScope::Tenant(own), Some(target)) = (caller.scope, tenant) {
        if own != target {
            return Err(Denied::NotFound);
        }
    }
    let tenant_bound = matches!(caller.scope, TenantScope::Tenant(_));
    if tenant_bound
        && (action.platform_only() || (tenant.is_none() && action != Action::VerifyKeys))
    {
        return Err(Denied::PlatformOnly);
    }
    // A tenant-bound caller may always read its own tenant's record.
    if action == Action::ReadTenant && tenant_bound {
        return Ok(());
    }
    let needed = action.permission();
    let needed_alt = (action == Action::ReadTenant).then_some(Permission::TenantsAdmin);
    if caller.has(needed) || needed_alt.is_some_and(|p| caller.has(p)) {
        Ok(())
    } else {
        Err(Denied::MissingPermission(needed.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::KeyKind;

    fn caller(scope: TenantScope, permissions: &[Permission]) -> Caller {
        Caller {
            token_id: KeyId::generate(KeyKind::Service),
            scope,
            permissions: permissions.to_vec(),
        }
    }

    #[test]
    fn tenant_bound_caller_gets_not_found_for_another_tenant() {
        let a = TenantId::generate();
        let b = TenantId::generate();
        let c = caller(TenantScope::Tenant(a), &Permission::ALL);
        assert_eq!(
            authorize(&c, Action::ReadKeys, Some(b)),
            Err(Denied::NotFound)
        );
        assert_eq!(authorize(&c, Action::ReadKeys, Some(a)), Ok(()));
    }

    #[test]
    fn platform_actions_refuse_tenant_bound_callers() {
        let a = TenantId::generate();
        let c = caller(TenantScope::Tenant(a), &Permission::ALL);
        assert_eq!(
            authorize(&c, Action::CreateTenant, None),
            Err(Denied::PlatformOnly)
        );
        assert_eq!(
            authorize(&c, Action::UpdateTenant, Some(a)),
            Err(Denied::PlatformOnly)
        );
        assert_eq!(
            authorize(&c, Action::ReadAudit, None),
            Err(Denied::PlatformOnly)
        );
        assert_eq!(authorize(&c, Action::VerifyKeys, None), Ok(()));
    }

    #[test]
    fn missing_permission_is_reported_by_name() {
        let c = caller(TenantScope::Platform, &[Permission::KeysRead]);
        assert_eq!(
            authorize(&c, Action::WriteKeys, Some(TenantId::generate())),
            Err(Denied::MissingPermission("keys:write"))
        );
    }
}
