use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, Role, Timestamp};

object_name!(SsoConfigObject = "sso_configuration");

/// One group of the identity provider and the organization-wide role its members get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleMapping {
    /// A value of the groups claim, compared exactly.
    pub group: String,
    /// Any built-in role but `owner`.
    pub role: Role,
}

/// An organization's single sign-on (Enterprise): people of its OpenID Connect provider call
/// the API with the provider's ID or access token as bearer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SsoConfig {
    pub object: SsoConfigObject,
    pub org_id: OrgId,
    /// The provider's issuer URL, exactly as its tokens' `iss` spells it.
    pub issuer: String,
    /// The client id registered at the provider; tokens must name it in `aud`.
    pub client_id: String,
    /// Email domains whose people may sign in (lower case).
    pub allowed_domains: Vec<String>,
    /// The claim holding the person's groups.
    pub groups_claim: String,
    pub role_mappings: Vec<RoleMapping>,
    /// The role of a person none of whose groups is mapped; null refuses them.
    pub default_role: Option<Role>,
    pub version: i64,
    pub updated_at: Option<Timestamp>,
}

/// `PUT /organizations/{id}/sso`: the whole configuration, replacing any before it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ConfigureSso {
    /// https (http only to a loopback address, when the operator allows it).
    pub issuer: String,
    pub client_id: String,
    /// At least one; a person's email must end in one of them.
    pub allowed_domains: Vec<String>,
    /// Default `groups`.
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub role_mappings: Vec<RoleMapping>,
    #[serde(default)]
    pub default_role: Option<Role>,
}
