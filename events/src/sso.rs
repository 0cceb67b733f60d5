//! Single sign-on: an organization's OpenID Connect identity provider and how the groups it
//! reports become roles. No secret is kept: OIDC tokens are verified with the provider's public
//! keys, so a client id is all the configuration names.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One group of the identity provider and the organization-wide role its members get.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct SsoRoleMapping {
    /// A value of the groups claim, compared exactly.
    pub group: String,
    /// A built-in role other than `owner`.
    pub role: String,
}

/// `organization.sso_configured`: the whole configuration as it now stands (stream `sso:<org>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SsoConfigured {
    /// The issuer URL, exactly as the tokens' `iss` claim spells it.
    pub issuer: String,
    /// The client id registered at the provider: tokens must name it in `aud`.
    pub client_id: String,
    /// Lower-case email domains whose people may sign in.
    pub allowed_domains: Vec<String>,
    /// The claim holding the person's groups (`groups` by default).
    pub groups_claim: String,
    pub role_mappings: Vec<SsoRoleMapping>,
    /// The role of a person none of whose groups is mapped; none refuses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
}

/// `organization.sso_removed`: people of the provider can no longer sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct SsoRemoved {}
