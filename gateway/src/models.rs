//! `GET /models` (OpenAI's list shape, so the SDKs' `models.list()` works) and `GET /chat/models`
//! (tier, context length, providers and prices): the models the caller may use now.

use std::sync::Arc;

use axum::extract::State;
use platform::config::ProviderConfig;
use platform::plans::Plan;
use platform::{ApiError, ErrorResponse, Principal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{self, Action};
use crate::catalog::{Catalog, Model};
use crate::Gateway;

/// The model a chat request names, or 404 `model_not_found`.
pub fn find(catalog: &Catalog, name: &str) -> Result<Model, ApiError> {
    catalog.get(name).cloned().ok_or_else(|| {
        ApiError::not_found(format!(
            "The model {name:?} does not exist; GET /api/v1/models lists the available ones."
        ))
        .with_code("model_not_found")
        .with_param("model")
    })
}

/// Models with a configured provider, in the tiers `plan` serves (every tier without a plan:
/// the platform admin).
pub fn available<'a>(
    catalog: &'a Catalog,
    providers: &'a [ProviderConfig],
    plan: Option<&'a Plan>,
) -> impl Iterator<Item = &'a Model> + 'a {
    catalog.models.iter().filter(move |m| {
        plan.is_none_or(|p| p.serves_tier(m.model_tier()))
            && m.deployments
                .iter()
                .any(|d| configured(providers, &d.provider))
    })
}

fn configured(providers: &[ProviderConfig], name: &str) -> bool {
    providers.iter().any(|p| p.name == name)
}

/// The caller's plan for the lists: none for the platform admin.
fn plan_of(principal: &Principal) -> Option<&'static Plan> {
    principal.key().map(access::plan_of)
}

/// OpenAI's model list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<ModelObject>,
}

/// A model in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelObject {
    /// The name to put in a chat request's `model`.
    #[schema(example = "gpt-4o-mini")]
    pub id: String,
    /// Always `model`.
    #[schema(example = "model")]
    pub object: String,
    /// Always 0: the catalog does not record when a model appeared.
    pub created: i64,
    /// The provider of the model's first deployment.
    #[schema(example = "openrouter")]
    pub owned_by: String,
}

/// The models the caller may use, with what they cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatModelList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<ChatModel>,
    /// Always null: the whole list is one page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatModel {
    #[schema(example = "gpt-4o-mini")]
    pub id: String,
    /// Always `model`.
    #[schema(example = "model")]
    pub object: String,
    /// `basic`, `advanced` or `premium`; a plan serves the tiers up to its own.
    #[schema(example = "basic")]
    pub tier: String,
    /// The most tokens of prompt and completion together.
    pub context_length: u64,
    /// The configured providers serving it, in the catalog's order.
    pub providers: Vec<String>,
    pub pricing: Pricing,
}

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pricing {
    #[schema(example = 0.15)]
    pub input_usd_per_million_tokens: f64,
    #[schema(example = 0.6)]
    pub output_usd_per_million_tokens: f64,
}

/// Models in OpenAI's list shape, so the OpenAI SDKs' `models.list()` works.
#[utoipa::path(
    get,
    path = "/models",
    tag = "models",
    operation_id = "list_models",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The models the caller's plan serves, with a configured provider.", body = ModelList),
        (status = 401, description = "No valid bearer token.", body = ErrorResponse),
        (status = 403, description = "The key lacks `models:read` (`missing_permission`).", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry.", body = ErrorResponse),
    )
)]
pub async fn models(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
) -> Result<axum::Json<ModelList>, ApiError> {
    access::authorize(&principal, Action::ListModels)?;
    let catalog = gateway.catalog();
    let data = available(&catalog, &gateway.providers, plan_of(&principal))
        .map(|m| ModelObject {
            id: m.name.clone(),
            object: "model".into(),
            created: 0,
            owned_by: m
                .deployments
                .first()
                .map(|d| d.provider.clone())
                .unwrap_or_default(),
        })
        .collect();
    Ok(axum::Json(ModelList {
        object: "list".into(),
        data,
    }))
}

/// The models the caller may use, with tier, context length, providers and prices.
#[utoipa::path(
    get,
    path = "/chat/models",
    tag = "models",
    operation_id = "list_chat_models",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The models the caller's plan serves, with a configured provider.", body = ChatModelList),
        (status = 401, description = "No valid bearer token.", body = ErrorResponse),
        (status = 403, description = "The key lacks `models:read` (`missing_permission`).", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry.", body = ErrorResponse),
    )
)]
pub async fn chat_models(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
) -> Result<axum::Json<ChatModelList>, ApiError> {
    access::authorize(&principal, Action::ListModels)?;
    let catalog = gateway.catalog();
    let data = available(&catalog, &gateway.providers, plan_of(&principal))
        .map(|m| ChatModel {
            id: m.name.clone(),
            object: "model".into(),
            tier: m.tier.clone(),
            context_length: m.context_length,
            providers: m
                .deployments
                .iter()
                .filter(|d| configured(&gateway.providers, &d.provider))
                .map(|d| d.provider.clone())
                .collect(),
            pricing: Pricing {
                input_usd_per_million_tokens: m.input_micros_per_mtok as f64 / 1e6,
                output_usd_per_million_tokens: m.output_micros_per_mtok as f64 / 1e6,
            },
        })
        .collect();
    Ok(axum::Json(ChatModelList {
        object: "list".into(),
        data,
        next_cursor: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::builtin;

    fn providers(names: &[&str]) -> Vec<ProviderConfig> {
        names
            .iter()
            .map(|name| ProviderConfig {
                name: (*name).into(),
                base_url: format!("http://{name}"),
                api_key: "k".into(),
            })
            .collect()
    }

    fn names<'a>(models: impl Iterator<Item = &'a Model>) -> Vec<&'a str> {
        models.map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn an_unknown_model_is_404_naming_the_param() {
        let catalog = Catalog { models: builtin() };
        assert_eq!(find(&catalog, "gpt-4o").unwrap().name, "gpt-4o");
        let missing = find(&catalog, "gpt-5-imaginary").unwrap_err();
        assert_eq!(missing.status.as_u16(), 404);
        assert_eq!(missing.code, "model_not_found");
        assert_eq!(missing.param.as_deref(), Some("model"));
    }

    #[test]
    fn only_models_of_the_plans_tiers_with_a_configured_provider_are_available() {
        let catalog = Catalog { models: builtin() };
        let free = platform::plans::plan("free");
        let pro = platform::plans::plan("pro");
        let gemini = providers(&["gemini"]);
        assert_eq!(
            names(available(&catalog, &gemini, None)),
            ["gemini-1.5-pro", "gemini-1.5-flash"]
        );
        assert_eq!(
            names(available(&catalog, &gemini, free)),
            ["gemini-1.5-flash"]
        );
        let openrouter = providers(&["openrouter"]);
        assert_eq!(
            names(available(&catalog, &openrouter, free)),
            ["gpt-4o-mini", "llama-3-70b", "gemini-1.5-flash"]
        );
        assert_eq!(
            available(&catalog, &openrouter, pro).count(),
            builtin().len()
        );
        assert_eq!(available(&catalog, &[], None).count(), 0);
    }

    #[test]
    fn the_admin_has_no_plan_and_a_key_its_organizations() {
        assert_eq!(plan_of(&Principal::PlatformAdmin), None);
        let key = |plan| {
            Principal::ApiKey(platform::auth::KeyPrincipal {
                key_id: uuid::Uuid::nil(),
                org_id: uuid::Uuid::nil(),
                owner_user_id: None,
                team_id: None,
                permissions: Default::default(),
                team_permissions: Default::default(),
                plan,
                limits: platform::ratelimit::KeyLimits::of_plan(plan),
                sso: None,
            })
        };
        assert_eq!(
            plan_of(&key(platform::plans::PlanId::Developer)).map(|p| p.id),
            Some(platform::plans::PlanId::Developer)
        );
    }
}
