//! The HTTP contract: one type per resource and per request body. The write side answers with
//! these types, the read side builds them from its rows, and the OpenAPI document is generated
//! from them, so the three cannot disagree.

pub mod access;
pub mod alerting;
pub mod api_keys;
pub mod audit;
pub mod billing;
pub mod compliance;
pub mod gdpr;
pub mod limits;
pub mod monitoring;
pub mod organizations;
pub mod sso;
pub mod teams;
pub mod usage;
pub mod users;

pub use events::{ApiKeyId, InvoiceId, OrgId, TeamId, Timestamp, UserId};
pub use platform::access::{Permission, Role};
pub use platform::pagination::List;
pub use platform::plans::{ModelTier, PlanId};
pub use platform::ErrorResponse;

/// `"organization"`, `"team"` …: the `object` field every resource carries, as OpenAI's do.
macro_rules! object_name {
    ($name:ident = $value:literal) => {
        #[doc = concat!("Always `", $value, "`.")]
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            #[default]
            #[serde(rename = $value)]
            Value,
        }

        // Written by hand: the derive does not see `serde(rename)` through a macro's literal.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$value]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use object_name;

/// The organization to act in: a key's own by default; the platform admin names one.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgQuery {
    /// The organization (platform admin only; a key acts in its own).
    pub org_id: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 1000 (default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}
