//! Who may call what, and which plan a caller is on: the one place the gateway names permissions
//! and looks plans up.

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
        Action::Chat => "chat:write",
        Action::ListModels => "models:read",
    })
}

/// The organization's API key a chat call is made with; the platform admin is not a tenant.
pub fn tenant(principal: &Principal) -> Result<KeyPrincipal, ApiError> {
    match principal {
        Principal::ApiKey(key) => Ok(key.clone()),
        Principal::PlatformAdmin => Err(ApiError::forbidden(
            "api_key_required",
            "Chat calls are made with an API key of an organization, not the platform-admin token.",
        )),
    }
}

/// The plan the key's organization is on. A plan this build does not know is refused with a
/// 500 `unknown_plan` and logged, never served as another plan: it means the subscription and
/// this gateway disagree (a newer plan in a rolling deploy, or a corrupt record).
pub fn plan_of(key: &KeyPrincipal) -> Result<&'static Plan, ApiError> {
    platform::plans::plan(&key.plan).ok_or_else(|| {
        tracing::error!(org_id = %key.org_id, plan = %key.plan, "the organization's plan is unknown to this gateway");
        let mut error = ApiError::internal(anyhow::anyhow!("unknown plan {:?}", key.plan));
        error.code = "unknown_plan".into();
        error.message = format!(
            "The organization's plan {:?} is unknown to this gateway, so the request was refused; contact the platform operator.",
            key.plan
        );
        error
    })
}

/// 403 `model_not_in_plan` for a model of a tier above the plan's.
pub fn gate(plan: &Plan, model: &Model) -> Result<(), ApiError> {
    if plan.serves_tier(&model.tier) {
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
        KeyPrincipal {
            key_id: Uuid::nil(),
            org_id: Uuid::nil(),
            owner_user_id: None,
            team_id: None,
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            plan: plan.into(),
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
    fn an_unknown_plan_is_refused_not_served_as_free() {
        assert_eq!(plan_of(&key("pro", &[])).unwrap().id, "pro");
        let refused = plan_of(&key("platinum", &[])).unwrap_err();
        assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(refused.code, "unknown_plan");
        assert!(
            refused.message.contains("\"platinum\""),
            "{}",
            refused.message
        );
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
