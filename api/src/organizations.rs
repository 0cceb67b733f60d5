use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, Timestamp};

object_name!(OrganizationObject = "organization");

/// A tenant: everything else belongs to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    pub id: OrgId,
    pub object: OrganizationObject,
    pub name: String,
    pub slug: String,
    pub owner_email: Option<String>,
    /// Also the `ETag`; send it back in `If-Match` to make a change conditional.
    pub version: i64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// `POST /organizations` (platform admin).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateOrganization {
    /// 1 to 200 characters.
    pub name: String,
    /// 2 to 63 of `a-z`, `0-9` and `-`; unique.
    pub slug: String,
    /// Creates the owner: a user holding the owner role.
    #[serde(default)]
    pub owner_email: Option<String>,
}

/// `PUT /organizations/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateOrganization {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub owner_email: Option<String>,
}
