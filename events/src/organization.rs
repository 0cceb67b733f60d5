//! Organization events: the tenant root.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::personal::Personal;

/// `organization.created`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrganizationCreated {
    pub name: String,
    /// Unique, URL-safe handle of the organization.
    pub slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-personal" = true))]
    pub owner_email: Option<Personal>,
}

/// `organization.updated`: only the fields that changed are present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct OrganizationUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-personal" = true))]
    pub owner_email: Option<Personal>,
}

/// `organization.deleted`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct OrganizationDeleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
