use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, Role, TeamId, Timestamp, UserId};

object_name!(UserObject = "user");

/// A person of an organization and the roles they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub object: UserObject,
    pub org_id: OrgId,
    pub email: String,
    pub name: Option<String>,
    /// The owner role first, then by role and team.
    pub roles: Vec<RoleAssignment>,
    pub version: i64,
    pub created_at: Option<Timestamp>,
}

/// A role held in the whole organization (`team_id` null) or in one team.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct RoleAssignment {
    pub role: Role,
    pub team_id: Option<TeamId>,
}

/// `POST /users`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateUser {
    /// Unique in the organization.
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Platform admin only.
    #[serde(default)]
    pub org_id: Option<OrgId>,
}

/// `POST /users/{id}/roles`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct AssignRole {
    pub role: Role,
    /// Held in this team only; absent for the whole organization.
    #[serde(default)]
    pub team_id: Option<TeamId>,
}
