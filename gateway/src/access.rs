//! Who may call what, and which plan a caller is on: the one place the gateway names permissions
//! and looks plans up.

use platform::access::Permission;
use platform::auth::KeyPrincipal;
use platform::plans::Plan;
use platform::{ApiError, Principal};

use crate::catalog::Model;

/// What a request does, each needing its own permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Chat,
    ListModels,
}

/// 403 `missing_permission` unless the caller holds the action's permission.
pub fn authorize(principal: &Principal, action: Action) -> Result<(), ApiError> {
    principal.require(match action {
        Action::Chat => Permission::ChatWrite,
        Action::ListModels => Permission::ModelsRead,
    })
}

/// The organization's API key a chat call is made with; the platform admin is not a tenant.
pub fn tenant(principal: &Principal) -> Result<KeyPrincipal, ApiError> {
    match principal {
        Principal::ApiKey(key) if key.sso.is_some() => Err(ApiError::forbidden(
            "api_key_required",
            "Chat calls are made with an API key; a single sign-on token manages the organization. Create a key with POST /api-keys.",
        )),
        Principal::ApiKey(key) => Ok(key.clone()),
        Principal::PlatformAdmin => Err(ApiError::forbidden(
            "api_key_required",
            "Chat calls are made with an API key of an organization, not the platform-admin token.",
        )),
    }
}

/// The plan the key's organization is on. The key carries a `PlanId`, so there is no unknown
/// plan to fall back from here (authentication logs a stored name it cannot read).
pub fn plan_of(key: &KeyPrincipal) -> &'static Plan {
    key.plan.plan()
}

/// 403 `model_not_in_plan` for a model of a tier above the plan's.
pub fn gate(plan: &Plan, model: &Model) -> Result<(), ApiError> {
    if plan.serves_tier(model.model_tier()) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "model_not_in_plan",
        format!(
            "{} is a {} model; the {} plan serves {} models. Upgrade the subscription to use it.",
            model.name, model.tier, plan.name, plan.model_tier
        ),
    )
    .with_param("model"))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use uuid::Uuid;

    use super::*;
    use crate::catalog::builtin;

    fn key(plan: &str, permissions: &[&str]) -> KeyPrincipal {
        use std::str::FromStr;
        KeyPrincipal {
            key_id: Uuid::nil(),
            org_id: Uuid::nil(),
            owner_user_id: None,
            team_id: None,
            permissions: permissions
                .iter()
                .map(|p| Permission::from_str(p).unwrap())
                .collect(),
            team_permissions: Default::default(),
            plan: plan.parse().unwrap(),
            limits: platform::ratelimit::KeyLimits::of_plan(plan.parse().unwrap()),
            sso: None,
        }
    }

    #[test]
    fn chat_needs_an_organizations_key_with_chat_write() {
        let admin = Principal::PlatformAdmin;
        assert_eq!(tenant(&admin).unwrap_err().code, "api_key_required");
        assert!(authorize(&admin, Action::Chat).is_ok());

        let reader = Principal::ApiKey(key("free", &["models:read"]));
        assert!(tenant(&reader).is_ok());
        let refused = authorize(&reader, Action::Chat).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.param.as_deref(), Some("chat:write"));
        assert!(authorize(&reader, Action::ListModels).is_ok());

        let chatter = Principal::ApiKey(key("free", &["chat:write"]));
        assert!(authorize(&chatter, Action::Chat).is_ok());
        assert!(authorize(&chatter, Action::ListModels).is_err());
    }

    #[test]
    fn the_keys_plan_is_the_plan_served() {
        assert_eq!(plan_of(&key("pro", &[])).id, platform::plans::PlanId::Pro);
    }

    #[test]
    fn a_model_above_the_plans_tier_is_refused_naming_the_plan() {
        let models = builtin();
        let named = |name: &str| models.iter().find(|m| m.name == name).unwrap().clone();
        let free = platform::plans::plan("free").unwrap();
        let pro = platform::plans::plan("pro").unwrap();
        assert!(gate(free, &named("gpt-4o-mini")).is_ok());
        let refused = gate(free, &named("claude-3-5-sonnet")).unwrap_err();
        assert_eq!(refused.code, "model_not_in_plan");
        assert!(refused.message.contains("Free"), "{}", refused.message);
        assert!(gate(pro, &named("claude-3-5-sonnet")).is_ok());
    }
}
