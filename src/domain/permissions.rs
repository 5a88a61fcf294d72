//! Who may do what. One function, `authorize`, decides every management call from the caller,
//! the action and the tenant it touches; handlers never improvise checks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{Actor, ActorKind};
use super::ids::{KeyId, TenantId};
use super::user::{Membership, Role, UserId};

/// Permissions a service token can hold.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
)]
pub enum Permission {
    #[serde(rename = "keys:verify")]
    #[strum(serialize = "keys:verify")]
    KeysVerify,
    #[serde(rename = "keys:read")]
    #[strum(serialize = "keys:read")]
    KeysRead,
    #[serde(rename = "keys:write")]
    #[strum(serialize = "keys:write")]
    KeysWrite,
    #[serde(rename = "audit:read")]
    #[strum(serialize = "audit:read")]
    AuditRead,
    #[serde(rename = "tenants:admin")]
    #[strum(serialize = "tenants:admin")]
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
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
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

/// Who is calling: one of keyward's service tokens, or a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    ServiceToken(KeyId),
    User(UserId),
    /// A gateway calling `/v1/authorize` without a token, where the deployment allows it
    /// (`KEYWARD_AUTHORIZE_OPEN`): it may verify keys and nothing else.
    OpenGateway,
}

/// What the caller was granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A service token: permissions, platform-wide or in one tenant.
    Token {
        scope: TenantScope,
        permissions: Vec<Permission>,
    },
    /// A person: a platform admin may act in every tenant; others by their role in each.
    User {
        platform_admin: bool,
        memberships: Vec<Membership>,
    },
}

/// An authenticated caller of keyward's own API.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub grant: Grant,
    /// When the presented credential stops working (service tokens); nothing it mints may
    /// outlive it.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Caller {
    pub fn service(token_id: KeyId, scope: TenantScope, permissions: Vec<Permission>) -> Self {
        Caller {
            principal: Principal::ServiceToken(token_id),
            grant: Grant::Token { scope, permissions },
            expires_at: None,
        }
    }

    /// The open gateway: verifies keys of every tenant, may do nothing else.
    pub fn open_gateway() -> Self {
        Caller {
            principal: Principal::OpenGateway,
            grant: Grant::Token {
                scope: TenantScope::Platform,
                permissions: vec![Permission::KeysVerify],
            },
            expires_at: None,
        }
    }

    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::OpenGateway => Actor {
                kind: ActorKind::Service,
                id: "open-gateway".into(),
            },
            Principal::ServiceToken(id) => Actor {
                kind: ActorKind::Service,
                id: id.to_string(),
            },
            Principal::User(id) => Actor {
                kind: ActorKind::User,
                id: id.to_string(),
            },
        }
    }

    /// The one tenant this caller is confined to, if any (tenant-bound service tokens).
    pub fn bound_tenant(&self) -> Option<TenantId> {
        match &self.grant {
            Grant::Token { scope, .. } => scope.tenant_id(),
            Grant::User { .. } => None,
        }
    }

    /// Whether a key of `tenant` is visible to this caller when verifying: a tenant-bound
    /// caller sees only its own tenant's keys.
    pub fn sees_keys_of(&self, tenant: Option<TenantId>) -> bool {
        self.bound_tenant().is_none_or(|own| tenant == Some(own))
    }

    /// Whether this caller holds `permission` in `tenant`: a token by its permissions (and its
    /// tenant), a platform admin everywhere, a member by what their role carries.
    pub fn holds(&self, permission: Permission, tenant: TenantId) -> bool {
        match &self.grant {
            Grant::Token { scope, permissions } => {
                scope.tenant_id().is_none_or(|own| own == tenant) && permissions.contains(&permission)
            }
            Grant::User {
                platform_admin: true, ..
            } => true,
            Grant::User { .. } => self
                .role_in(tenant)
                .is_some_and(|role| role.permissions().contains(&permission)),
        }
    }

    /// Refuses to hand `role` in `tenant` to anyone (an invitation, a role change) when the role
    /// carries a permission this caller does not hold: nobody grants more than they hold.
    pub fn may_confer(&self, role: Role, tenant: TenantId) -> Result<(), Denied> {
        match role.permissions().iter().find(|p| !self.holds(**p, tenant)) {
            Some(missing) => Err(Denied::RoleExceedsCaller(role, missing.as_str())),
            None => Ok(()),
        }
    }

    fn role_in(&self, tenant: TenantId) -> Option<Role> {
        match &self.grant {
            Grant::User { memberships, .. } => memberships.iter().find(|m| m.tenant_id == tenant).map(|m| m.role),
            Grant::Token { .. } => None,
        }
    }

    /// Whether this caller may hand `permission` to a new service token held by `owner`:
    /// nobody grants more than they hold.
    pub fn may_grant(&self, permission: Permission, owner: TenantScope) -> bool {
        match &self.grant {
            Grant::Token { permissions, .. } => permissions.contains(&permission),
            Grant::User {
                platform_admin: true, ..
            } => true,
            Grant::User { .. } => match owner {
                TenantScope::Tenant(t) => {
                    matches!(self.role_in(t), Some(Role::Owner | Role::Admin)) && permission != Permission::TenantsAdmin
                }
                TenantScope::Platform => false,
            },
        }
    }
}

impl Role {
    /// The permissions each role carries in its tenant: the one table that says what inviting
    /// someone with a role, or moving them to it, hands over.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Owner => &[KeysVerify, KeysRead, KeysWrite, AuditRead, TenantsAdmin],
            Role::Admin => &[KeysVerify, KeysRead, KeysWrite, AuditRead],
            Role::Developer => &[KeysRead, KeysWrite],
            Role::Auditor => &[KeysRead, AuditRead],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    CreateTenant,
    ListTenants,
    ReadTenant,
    /// Change the tenant's name or status (the platform's call).
    UpdateTenant,
    /// Change the tenant's own `settings` (its owners and admins may).
    ConfigureTenant,
    ReadKeys,
    WriteKeys,
    ManageServiceTokens,
    ReadAudit,
    /// Read verification counts (the usage API): whoever may read the keys.
    ReadUsage,
    VerifyKeys,
    ReadMembers,
    ManageMembers,
}

impl Action {
    fn permission(self) -> Permission {
        match self {
            Action::CreateTenant | Action::ListTenants | Action::UpdateTenant => Permission::TenantsAdmin,
            Action::ManageServiceTokens | Action::ReadMembers | Action::ManageMembers => Permission::TenantsAdmin,
            Action::ConfigureTenant => Permission::TenantsAdmin,
            Action::ReadTenant | Action::ReadKeys | Action::ReadUsage => Permission::KeysRead,
            Action::WriteKeys => Permission::KeysWrite,
            Action::ReadAudit => Permission::AuditRead,
            Action::VerifyKeys => Permission::KeysVerify,
        }
    }

    /// Actions that only a platform-wide caller may take, whatever tenant they name.
    fn platform_only(self) -> bool {
        matches!(self, Action::CreateTenant | Action::ListTenants | Action::UpdateTenant)
    }

    /// What each role may do inside its own tenant.
    fn allowed_for(self, role: Role) -> bool {
        use Action::*;
        match role {
            Role::Owner => matches!(
                self,
                ReadTenant
                    | ConfigureTenant
                    | ReadKeys
                    | ReadUsage
                    | WriteKeys
                    | ManageServiceTokens
                    | ReadAudit
                    | ReadMembers
                    | ManageMembers
            ),
            Role::Admin => matches!(
                self,
                ReadTenant
                    | ConfigureTenant
                    | ReadKeys
                    | ReadUsage
                    | WriteKeys
                    | ManageServiceTokens
                    | ReadAudit
                    | ReadMembers
            ),
            Role::Developer => matches!(self, ReadTenant | ReadKeys | ReadUsage | WriteKeys),
            Role::Auditor => matches!(self, ReadTenant | ReadKeys | ReadUsage | ReadAudit),
        }
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
    #[error("your role in this tenant does not allow this")]
    RoleLacks,
    #[error("the `{role}` role carries the `{permission}` permission, which this credential does not hold", role = .0.as_str(), permission = .1)]
    RoleExceedsCaller(Role, &'static str),
}

/// Decides whether `caller` may take `action` on `tenant` (`None`: platform-level, no tenant).
pub fn authorize(caller: &Caller, action: Action, tenant: Option<TenantId>) -> Result<(), Denied> {
    match &caller.grant {
        Grant::Token { scope, permissions } => authorize_token(*scope, permissions, action, tenant),
        Grant::User {
            platform_admin: true, ..
        } => Ok(()),
        Grant::User { .. } => match tenant {
            None => Err(Denied::PlatformOnly),
            Some(t) => {
                let role = caller.role_in(t).ok_or(Denied::NotFound)?;
                if action.platform_only() || !action.allowed_for(role) {
                    Err(Denied::RoleLacks)
                } else {
                    Ok(())
                }
            }
        },
    }
}

fn authorize_token(
    scope: TenantScope,
    permissions: &[Permission],
    action: Action,
    tenant: Option<TenantId>,
) -> Result<(), Denied> {
    if let (TenantScope::Tenant(own), Some(target)) = (scope, tenant) {
        if own != target {
            return Err(Denied::NotFound);
        }
    }
    let tenant_bound = matches!(scope, TenantScope::Tenant(_));
    if tenant_bound && (action.platform_only() || (tenant.is_none() && action != Action::VerifyKeys)) {
        return Err(Denied::PlatformOnly);
    }
    // A tenant-bound token may always read its own tenant's record.
    if action == Action::ReadTenant && tenant_bound {
        return Ok(());
    }
    let needed = action.permission();
    let needed_alt = (action == Action::ReadTenant).then_some(Permission::TenantsAdmin);
    if permissions.contains(&needed) || needed_alt.is_some_and(|p| permissions.contains(&p)) {
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
        Caller::service(KeyId::generate(KeyKind::Service), scope, permissions.to_vec())
    }

    fn member(tenant: TenantId, role: Role) -> Caller {
        Caller {
            principal: Principal::User(UserId::generate()),
            grant: Grant::User {
                platform_admin: false,
                memberships: vec![Membership {
                    tenant_id: tenant,
                    role,
                }],
            },
            expires_at: None,
        }
    }

    #[test]
    fn members_act_by_role_in_their_own_tenant_only() {
        let a = TenantId::generate();
        let b = TenantId::generate();
        assert_eq!(
            authorize(&member(a, Role::Developer), Action::WriteKeys, Some(a)),
            Ok(())
        );
        assert_eq!(
            authorize(&member(a, Role::Auditor), Action::WriteKeys, Some(a)),
            Err(Denied::RoleLacks)
        );
        assert_eq!(authorize(&member(a, Role::Auditor), Action::ReadAudit, Some(a)), Ok(()));
        assert_eq!(
            authorize(&member(a, Role::Admin), Action::ManageMembers, Some(a)),
            Err(Denied::RoleLacks)
        );
        assert_eq!(
            authorize(&member(a, Role::Owner), Action::ManageMembers, Some(a)),
            Ok(())
        );
        assert_eq!(
            authorize(&member(a, Role::Owner), Action::ReadKeys, Some(b)),
            Err(Denied::NotFound)
        );
        assert_eq!(
            authorize(&member(a, Role::Owner), Action::ListTenants, None),
            Err(Denied::PlatformOnly)
        );
    }

    #[test]
    fn tenant_bound_caller_gets_not_found_for_another_tenant() {
        let a = TenantId::generate();
        let b = TenantId::generate();
        let c = caller(TenantScope::Tenant(a), &Permission::ALL);
        assert_eq!(authorize(&c, Action::ReadKeys, Some(b)), Err(Denied::NotFound));
        assert_eq!(authorize(&c, Action::ReadKeys, Some(a)), Ok(()));
    }

    #[test]
    fn platform_actions_refuse_tenant_bound_callers() {
        let a = TenantId::generate();
        let c = caller(TenantScope::Tenant(a), &Permission::ALL);
        assert_eq!(authorize(&c, Action::CreateTenant, None), Err(Denied::PlatformOnly));
        assert_eq!(authorize(&c, Action::UpdateTenant, Some(a)), Err(Denied::PlatformOnly));
        assert_eq!(authorize(&c, Action::ReadAudit, None), Err(Denied::PlatformOnly));
        assert_eq!(authorize(&c, Action::VerifyKeys, None), Ok(()));
    }

    #[test]
    fn a_role_is_conferred_only_by_a_caller_holding_all_it_carries() {
        let a = TenantId::generate();
        let admin_only = caller(TenantScope::Tenant(a), &[Permission::TenantsAdmin]);
        assert_eq!(
            admin_only.may_confer(Role::Owner, a),
            Err(Denied::RoleExceedsCaller(Role::Owner, "keys:verify"))
        );
        assert_eq!(member(a, Role::Owner).may_confer(Role::Owner, a), Ok(()));
        assert_eq!(member(a, Role::Admin).may_confer(Role::Developer, a), Ok(()));
        assert!(member(a, Role::Admin).may_confer(Role::Owner, a).is_err());
        assert!(caller(TenantScope::Platform, &Permission::ALL)
            .may_confer(Role::Owner, a)
            .is_ok());
        assert!(caller(TenantScope::Tenant(TenantId::generate()), &Permission::ALL)
            .may_confer(Role::Auditor, a)
            .is_err());
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
