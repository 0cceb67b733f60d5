//! The permission catalog and the built-in roles. Every endpoint names one permission; a role is
//! a set of them. Changing a role here changes it everywhere, tests included.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares an enum of names written on the wire, each with its text and description, so a
/// typo in a permission or role is a compile error rather than a silent 403.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal, $doc:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[doc = $doc] #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn description(self) -> &'static str {
                match self { $($name::$variant => $doc,)+ }
            }
        }

        // Written by hand: the derive does not see `serde(rename)` through a macro's literal.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($name::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        /// Ordered by name, as they are stored and listed.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(raw: &str) -> Result<Self, String> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("{raw:?} is not a known {}.", stringify!($name).to_lowercase())),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named! {
    /// What an API key may do. Every endpoint requires one.
    Permission {
        OrganizationsRead = "organizations:read", "Read the organization";
        OrganizationsWrite = "organizations:write", "Change or delete the organization";
        UsersRead = "users:read", "List and read users";
        UsersWrite = "users:write", "Create users";
        RolesRead = "roles:read", "List roles and permissions";
        RolesAssign = "roles:assign", "Assign and remove roles";
        TeamsRead = "teams:read", "List and read teams";
        TeamsWrite = "teams:write", "Create and change teams";
        MembersWrite = "members:write", "Add and remove team members";
        ApiKeysRead = "api_keys:read", "List and read API keys";
        ApiKeysWrite = "api_keys:write", "Create API keys, and change and revoke one's own";
        ApiKeysManage = "api_keys:manage", "Change and revoke anyone's API keys; re-enable a key or lift its expiry";
        ChatWrite = "chat:write", "Call the chat completion endpoints";
        ModelsRead = "models:read", "List the models";
        BillingRead = "billing:read", "Read subscriptions and invoices";
        BillingWrite = "billing:write", "Change subscriptions and pay invoices";
        UsageRead = "usage:read", "Read and export usage";
        MonitoringRead = "monitoring:read", "Read metrics, alerts and health";
        MonitoringWrite = "monitoring:write", "Create metrics, alert rules and health checks; acknowledge alerts";
        AuditRead = "audit:read", "Read and export audit logs";
        ComplianceWrite = "compliance:write", "Generate compliance reports";
        SsoRead = "sso:read", "Read the organization's single sign-on configuration";
        SsoWrite = "sso:write", "Configure or remove single sign-on (Enterprise)";
    }
}

named! {
    /// A built-in role: a named set of permissions, held organization-wide or in one team.
    Role {
        Owner = "owner", "Full control of the organization, including deleting it";
        Admin = "admin", "Everything but changing or deleting the organization itself";
        Developer = "developer", "Builds with the API: chat, models, own API keys, usage and monitoring";
        BillingManager = "billing_manager", "Manages subscriptions, invoices and usage";
        Auditor = "auditor", "Reads everything that matters for an audit and generates compliance reports";
        Viewer = "viewer", "Reads the organization, its teams, models, usage and monitoring";
    }
}

use Permission as P;

impl Permission {
    /// Whether a role held in one team grants this permission beyond that team: only the
    /// permissions that act on the caller's own work (calling models, reading what the
    /// organization lets every member read). Administrative ones (assigning roles, writing
    /// teams and members, keys, users, billing) stay inside the team.
    pub fn team_role_reaches_outside(self) -> bool {
        matches!(
            self,
            P::ChatWrite
                | P::ModelsRead
                | P::OrganizationsRead
                | P::UsersRead
                | P::RolesRead
                | P::TeamsRead
                | P::UsageRead
                | P::MonitoringRead
        )
    }
}

impl Role {
    /// The permissions the role grants.
    pub fn permissions(self) -> BTreeSet<Permission> {
        let granted: &[Permission] = match self {
            Role::Owner => Permission::ALL,
            Role::Admin => &[
                P::OrganizationsRead,
                P::UsersRead,
                P::UsersWrite,
                P::RolesRead,
                P::RolesAssign,
                P::TeamsRead,
                P::TeamsWrite,
                P::MembersWrite,
                P::ApiKeysRead,
                P::ApiKeysWrite,
                P::ApiKeysManage,
                P::ChatWrite,
                P::ModelsRead,
                P::BillingRead,
                P::BillingWrite,
                P::UsageRead,
                P::MonitoringRead,
                P::MonitoringWrite,
                P::AuditRead,
                P::ComplianceWrite,
                P::SsoRead,
                P::SsoWrite,
            ],
            Role::Developer => &[
                P::OrganizationsRead,
                P::UsersRead,
                P::RolesRead,
                P::TeamsRead,
                P::ApiKeysRead,
                P::ApiKeysWrite,
                P::ChatWrite,
                P::ModelsRead,
                P::UsageRead,
                P::MonitoringRead,
            ],
            Role::BillingManager => &[
                P::OrganizationsRead,
                P::UsersRead,
                P::RolesRead,
                P::BillingRead,
                P::BillingWrite,
                P::UsageRead,
            ],
            Role::Auditor => &[
                P::OrganizationsRead,
                P::UsersRead,
                P::RolesRead,
                P::TeamsRead,
                P::ApiKeysRead,
                P::BillingRead,
                P::UsageRead,
                P::MonitoringRead,
                P::AuditRead,
                P::ComplianceWrite,
                P::SsoRead,
            ],
            Role::Viewer => &[
                P::OrganizationsRead,
                P::UsersRead,
                P::RolesRead,
                P::TeamsRead,
                P::ModelsRead,
                P::UsageRead,
                P::MonitoringRead,
            ],
        };
        granted.iter().copied().collect()
    }
}

/// The permissions of roles stored by name; a name no longer known grants nothing.
pub fn permissions_of<'a>(roles: impl IntoIterator<Item = &'a str>) -> BTreeSet<Permission> {
    roles
        .into_iter()
        .filter_map(|r| r.parse::<Role>().ok())
        .flat_map(Role::permissions)
        .collect()
}

/// Permissions stored by name, as API keys hold them; unknown names are dropped.
pub fn parse_permissions<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<Permission> {
    names.into_iter().filter_map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_typos_are_refused() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(*p));
            assert_eq!(serde_json::to_value(p).ok(), Some(p.as_str().into()));
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
        }
        assert!("team:read".parse::<Permission>().is_err());
        assert!("superuser".parse::<Role>().is_err());
    }

    #[test]
    fn only_the_owner_may_change_the_organization() {
        let holders: Vec<_> = Role::ALL
            .iter()
            .filter(|r| r.permissions().contains(&P::OrganizationsWrite))
            .collect();
        assert_eq!(holders, vec![&Role::Owner]);
        assert_eq!(Role::Owner.permissions().len(), Permission::ALL.len());
        assert!(permissions_of(["nobody"]).is_empty());
    }
}
