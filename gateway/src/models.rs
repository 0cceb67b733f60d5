//! `GET /models` (OpenAI's list shape, so the SDKs' `models.list()` works) and `GET /chat/models`
//! (tier, context length, providers and prices): the models the caller may use now.

use std::sync::Arc;

use axum::extract::State;
use platform::config::ProviderConfig;
use platform::plans::Plan;
use platform::{ApiError, Principal};
use serde_json::{json, Value};

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
        plan.is_none_or(|p| p.serves_tier(&m.tier))
            && m.deployments
                .iter()
                .any(|d| configured(providers, &d.provider))
    })
}

fn configured(providers: &[ProviderConfig], name: &str) -> bool {
    providers.iter().any(|p| p.name == name)
}

/// The caller's plan for the lists: none for the platform admin.
fn plan_of(principal: &Principal) -> Result<Option<&'static Plan>, ApiError> {
    principal.key().map(access::plan_of).transpose()
}

pub async fn models(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
) -> Result<axum::Json<Value>, ApiError> {
    access::authorize(&principal, Action::ListModels)?;
    let catalog = gateway.catalog();
    let data: Vec<Value> = available(&catalog, &gateway.providers, plan_of(&principal)?)
        .map(|m| json!({"id": m.name, "object": "model", "created": 0, "owned_by": m.deployments[0].provider}))
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data})))
}

pub async fn chat_models(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
) -> Result<axum::Json<Value>, ApiError> {
    access::authorize(&principal, Action::ListModels)?;
    let catalog = gateway.catalog();
    let data: Vec<Value> = available(&catalog, &gateway.providers, plan_of(&principal)?)
        .map(|m| {
            let providers: Vec<&str> = m
                .deployments
                .iter()
                .filter(|d| configured(&gateway.providers, &d.provider))
                .map(|d| d.provider.as_str())
                .collect();
            json!({
                "id": m.name,
                "object": "model",
                "tier": m.tier,
                "context_length": m.context_length,
                "providers": providers,
                "pricing": {
                    "input_usd_per_million_tokens": m.input_micros_per_mtok as f64 / 1e6,
                    "output_usd_per_million_tokens": m.output_micros_per_mtok as f64 / 1e6,
                },
            })
        })
        .collect();
    Ok(axum::Json(
        json!({"object": "list", "data": data, "next_cursor": null}),
    ))
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
    fn the_admin_has_no_plan_and_an_unknown_plan_is_refused() {
        assert_eq!(plan_of(&Principal::PlatformAdmin).unwrap(), None);
        let key = |plan: &str| {
            Principal::ApiKey(platform::auth::KeyPrincipal {
                key_id: uuid::Uuid::nil(),
                org_id: uuid::Uuid::nil(),
                owner_user_id: None,
                team_id: None,
                permissions: Default::default(),
                plan: plan.into(),
            })
        };
        assert_eq!(
            plan_of(&key("developer")).unwrap().map(|p| p.id),
            Some("developer")
        );
        assert_eq!(plan_of(&key("platinum")).unwrap_err().code, "unknown_plan");
    }
}
