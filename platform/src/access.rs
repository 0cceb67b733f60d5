//! The permission catalog and the built-in roles. Every endpoint names one permission; a role is
//! a set of them. Changing a role here changes it everywhere, tests included.

use std::collections::BTreeSet;

/// Every permission an API key can hold, with what it allows.
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("organizations:read", "Read the organization"),
    ("organizations:write", "Change or delete the organization"),
    ("users:read", "List and read users"),
    ("users:write", "Create users"),
    ("roles:read", "List roles and permissions"),
    ("roles:assign", "Assign and remove roles"),
    ("teams:read", "List and read teams"),
    ("teams:write", "Create and change teams"),
    ("members:write", "Add and remove team members"),
    ("api_keys:read", "List and read API keys"),
    ("api_keys:write", "Create, change and revoke API keys"),
    ("chat:write", "Call the chat completion endpoints"),
    ("models:read", "List the models"),
    ("billing:read", "Read subscriptions and invoices"),
    ("billing:write", "Change subscriptions and pay invoices"),
    ("usage:read", "Read and export usage"),
    ("monitoring:read", "Read metrics, alerts and health"),
    (
        "monitoring:write",
        "Create metrics, alert rules and health checks; acknowledge alerts",
    ),
    ("audit:read", "Read and export audit logs"),
    ("compliance:write", "Generate compliance reports"),
];

pub const OWNER: &str = "owner";

/// The built-in roles: name, description, permissions (`*` = every permission).
pub const ROLES: &[(&str, &str, &[&str])] = &[
    (
        OWNER,
        "Full control of the organization, including deleting it",
        &["*"],
    ),
    (
        "admin",
        "Everything but changing or deleting the organization itself",
        &[
            "organizations:read",
            "users:read",
            "users:write",
            "roles:read",
            "roles:assign",
            "teams:read",
            "teams:write",
            "members:write",
            "api_keys:read",
            "api_keys:write",
            "chat:write",
            "models:read",
            "billing:read",
            "billing:write",
            "usage:read",
            "monitoring:read",
            "monitoring:write",
            "audit:read",
            "compliance:write",
        ],
    ),
    (
        "developer",
        "Builds with the API: chat, models, own API keys, usage and monitoring",
        &[
            "organizations:read",
            "users:read",
            "roles:read",
            "teams:read",
            "api_keys:read",
            "api_keys:write",
            "chat:write",
            "models:read",
            "usage:read",
            "monitoring:read",
        ],
    ),
    (
        "billing_manager",
        "Manages subscriptions, invoices and usage",
        &[
            "organizations:read",
            "users:read",
            "roles:read",
            "billing:read",
            "billing:write",
            "usage:read",
        ],
    ),
    (
        "auditor",
        "Reads everything that matters for an audit and generates compliance reports",
        &[
            "organizations:read",
            "users:read",
            "roles:read",
            "teams:read",
            "api_keys:read",
            "billing:read",
            "usage:read",
            "monitoring:read",
            "audit:read",
            "compliance:write",
        ],
    ),
    (
        "viewer",
        "Reads the organization, its teams, models, usage and monitoring",
        &[
            "organizations:read",
            "users:read",
            "roles:read",
            "teams:read",
            "models:read",
            "usage:read",
            "monitoring:read",
        ],
    ),
];

pub fn is_permission(name: &str) -> bool {
    PERMISSIONS.iter().any(|(p, _)| *p == name)
}

pub fn is_role(name: &str) -> bool {
    ROLES.iter().any(|(r, _, _)| *r == name)
}

/// The permissions of a role; empty for an unknown role.
pub fn role_permissions(role: &str) -> BTreeSet<&'static str> {
    match ROLES.iter().find(|(r, _, _)| *r == role) {
        Some((_, _, ["*"])) => PERMISSIONS.iter().map(|(p, _)| *p).collect(),
        Some((_, _, permissions)) => permissions.iter().copied().collect(),
        None => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_names_only_known_permissions() {
        for (role, _, permissions) in ROLES {
            for p in permissions.iter().filter(|p| **p != "*") {
                assert!(is_permission(p), "{role} names unknown permission {p}");
            }
        }
    }

    #[test]
    fn only_the_owner_may_change_the_organization() {
        let holders: Vec<_> = ROLES
            .iter()
            .filter(|(r, _, _)| role_permissions(r).contains("organizations:write"))
            .map(|(r, _, _)| *r)
            .collect();
        assert_eq!(holders, vec![OWNER]);
        assert_eq!(role_permissions(OWNER).len(), PERMISSIONS.len());
        assert!(role_permissions("nobody").is_empty());
    }
}
