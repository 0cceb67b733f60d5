use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, Permission, Role};

object_name!(PermissionObject = "permission");
object_name!(RoleObject = "role");

/// One permission and what it allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PermissionInfo {
    pub object: PermissionObject,
    pub name: Permission,
    pub description: String,
}

impl From<Permission> for PermissionInfo {
    fn from(p: Permission) -> Self {
        Self {
            object: PermissionObject::Value,
            name: p,
            description: p.description().into(),
        }
    }
}

/// A built-in role and the permissions it grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RoleInfo {
    pub object: RoleObject,
    pub name: Role,
    pub description: String,
    pub permissions: Vec<Permission>,
}

impl From<Role> for RoleInfo {
    fn from(r: Role) -> Self {
        Self {
            object: RoleObject::Value,
            name: r,
            description: r.description().into(),
            permissions: r.permissions().into_iter().collect(),
        }
    }
}
