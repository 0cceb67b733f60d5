use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, TeamId, Timestamp, UserId};

object_name!(TeamObject = "team");

/// A group of users of one organization (Pro and Enterprise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: TeamId,
    pub object: TeamObject,
    pub org_id: OrgId,
    pub name: String,
    pub description: Option<String>,
    /// Member user ids, in id order.
    pub members: Vec<UserId>,
    pub version: i64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// `POST /teams`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateTeam {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Platform admin only.
    #[serde(default)]
    pub org_id: Option<OrgId>,
}

/// `PUT /teams/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateTeam {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /teams/{id}/members`: a user of the organization, by id or by email.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AddMember {
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub email: Option<String>,
}
