//! `PUT /organizations/{id}/sso`, `DELETE /organizations/{id}/sso`.

use std::collections::BTreeSet;

use api::sso::{ConfigureSso, RoleMapping, SsoConfig, SsoConfigObject};
use axum::http::StatusCode;
use axum::response::Response;
use events::sso::{SsoConfigured, SsoRoleMapping};
use platform::access::{Permission, Role};
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{stream_id, Command, DomainError, SsoSetting};
use super::{client_claim, CLIENT_SCOPE};
use crate::billing::aggregate::{self as subscription, Subscription};
use crate::command::{load, time, Aggregate, Ctx};
use crate::organizations::routes::live_org;
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new().routes(routes!(configure, remove))
}

/// Configures the organization's OpenID Connect single sign-on (Enterprise), replacing any
/// configuration before it. Mapping a group to a role takes every permission of that role.
#[utoipa::path(put, path = "/organizations/{id}/sso", tag = "organizations", request_body = ConfigureSso,
    params(crate::IdParam),
    responses((status = 200, body = SsoConfig)))]
async fn configure(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<ConfigureSso>,
) -> Result<Response, ApiError> {
    let org_id = allowed(&ctx, id).await?;
    let config = parse(&ctx, body)?;
    may_map(&ctx, &config)?;
    let stream = stream_id(org_id);
    let current = load::<SsoSetting>(&ctx.state, &stream).await?;
    let claim = client_claim(&config.issuer, &config.client_id);
    let before = current
        .state
        .config
        .as_ref()
        .map(|c| client_claim(&c.issuer, &c.client_id));
    if before.as_deref() != Some(claim.as_str()) {
        let holder = ctx.state.journal.claim_holder(CLIENT_SCOPE, &claim).await?;
        if holder.is_some_and(|h| h != stream.as_str()) {
            return Err(taken());
        }
    }
    let payloads = current
        .state
        .decide(Command::Configure(config))
        .map_err(domain_error)?;
    let mut batch = ctx.batch();
    if !payloads.is_empty() && before.as_deref() != Some(claim.as_str()) {
        batch.take(CLIENT_SCOPE, claim, &stream);
        if let Some(before) = before {
            batch.release(CLIENT_SCOPE, before, &stream);
        }
    }
    batch.push(&stream, Some(org_id), current.version, payloads);
    let after = batch.events().iter().fold(current.state, Aggregate::apply);
    let projected = match batch.commit().await {
        Err(e) if e.code == "already_exists" => return Err(taken()),
        other => other?,
    };
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &location(org_id),
        resource(org_id, &after),
    ))
}

/// Removes single sign-on: its people can no longer sign in (their users and API keys stay).
#[utoipa::path(delete, path = "/organizations/{id}/sso", tag = "organizations", params(crate::IdParam),
    responses((status = 204, description = "Removed")))]
async fn remove(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let org_id = allowed(&ctx, id).await?;
    let stream = stream_id(org_id);
    let current = load::<SsoSetting>(&ctx.state, &stream).await?;
    let before = current
        .state
        .config
        .as_ref()
        .map(|c| client_claim(&c.issuer, &c.client_id));
    let payloads = current
        .state
        .decide(Command::Remove)
        .map_err(domain_error)?;
    let mut batch = ctx.batch();
    if let Some(before) = before {
        batch.release(CLIENT_SCOPE, before, &stream);
    }
    batch.push(&stream, Some(org_id), current.version, payloads);
    let projected = batch.commit().await?;
    Ok(accepted_or(
        StatusCode::NO_CONTENT,
        projected,
        &location(org_id),
        None::<()>,
    ))
}

/// The organization the caller may configure: its own (404 otherwise), with `sso:write`, on a
/// plan with single sign-on — the plan in force in the journal, for the platform admin too,
/// since authentication refuses the sign-ins of any other plan.
async fn allowed(ctx: &Ctx, id: Uuid) -> Result<Uuid, ApiError> {
    let org_id = ctx.principal.org_scope(Some(id))?;
    live_org(ctx, org_id).await?;
    ctx.principal.require(Permission::SsoWrite)?;
    let plan = load::<Subscription>(&ctx.state, &subscription::stream_id(org_id))
        .await?
        .state;
    let name = plan.effective_plan(ctx.state.clock.now()).to_string();
    let current = platform::plans::plan(&name).unwrap_or(platform::plans::DEFAULT_PLAN.plan());
    if !current.features.contains(&"sso") {
        return Err(ApiError::forbidden(
            "plan_feature_required",
            format!(
                "Single sign-on needs the sso feature, which the {} plan does not include; upgrade the subscription to Enterprise to use it.",
                current.name
            ),
        ));
    }
    Ok(org_id)
}

fn parse(ctx: &Ctx, body: ConfigureSso) -> Result<SsoConfigured, ApiError> {
    if body.issuer.len() > 2000 || body.issuer.trim() != body.issuer {
        return Err(ApiError::invalid_param(
            "issuer",
            "issuer must be a URL of at most 2000 characters, without surrounding spaces.",
        ));
    }
    platform::sso::issuer_url(&body.issuer, ctx.state.sso_allow_loopback_http)
        .map_err(|m| ApiError::invalid_param("issuer", m))?;
    let client_id = token_text("client_id", &body.client_id, 255)?;
    let mut domains = BTreeSet::new();
    for raw in &body.allowed_domains {
        domains.insert(domain(raw)?);
    }
    if domains.is_empty() || domains.len() > 50 {
        return Err(ApiError::invalid_param(
            "allowed_domains",
            "allowed_domains must name 1 to 50 email domains.",
        ));
    }
    let groups_claim = match body.groups_claim.as_deref() {
        None => "groups".to_string(),
        Some(raw) => token_text("groups_claim", raw, 100)?,
    };
    if body.role_mappings.len() > 100 {
        return Err(ApiError::invalid_param(
            "role_mappings",
            "role_mappings has at most 100 entries.",
        ));
    }
    let mut mappings = BTreeSet::new();
    for mapping in &body.role_mappings {
        let group = token_text("role_mappings", &mapping.group, 200)?;
        mappings.insert(SsoRoleMapping {
            group,
            role: mappable(mapping.role, "role_mappings")?
                .as_str()
                .to_string(),
        });
    }
    let default_role = body
        .default_role
        .map(|r| mappable(r, "default_role"))
        .transpose()?;
    if mappings.is_empty() && default_role.is_none() {
        return Err(ApiError::invalid_param(
            "role_mappings",
            "Give role_mappings or a default_role: without either nobody could sign in.",
        ));
    }
    Ok(SsoConfigured {
        issuer: body.issuer,
        client_id,
        allowed_domains: domains.into_iter().collect(),
        groups_claim,
        role_mappings: mappings.into_iter().collect(),
        default_role: default_role.map(|r| r.as_str().to_string()),
    })
}

/// Owners are made by owners only, never by an identity provider's groups.
fn mappable(role: Role, param: &str) -> Result<Role, ApiError> {
    if role == Role::Owner {
        return Err(ApiError::invalid_param(
            param,
            "The owner role cannot be given by single sign-on; an owner gives it.",
        ));
    }
    Ok(role)
}

/// Nobody hands on, through their provider's groups, more than they hold.
fn may_map(ctx: &Ctx, config: &SsoConfigured) -> Result<(), ApiError> {
    let held = ctx.principal.permissions_in(None);
    let roles = config
        .role_mappings
        .iter()
        .map(|m| m.role.as_str())
        .chain(config.default_role.as_deref());
    for role in roles.filter_map(|r| r.parse::<Role>().ok()) {
        let beyond: Vec<&str> = role
            .permissions()
            .into_iter()
            .filter(|p| !held.contains(p))
            .map(Permission::as_str)
            .collect();
        if !beyond.is_empty() {
            return Err(ApiError::forbidden(
                "role_exceeds_caller",
                format!(
                    "The role {role} holds permissions you do not: {}. Nobody gives a role with more than they hold.",
                    beyond.join(", ")
                ),
            )
            .with_param("role_mappings"));
        }
    }
    Ok(())
}

/// A client id, a claim name or a group: 1 to `max` characters, no control characters, no
/// surrounding spaces (they are compared exactly with what tokens carry).
fn token_text(param: &str, raw: &str, max: usize) -> Result<String, ApiError> {
    if raw.is_empty()
        || raw.chars().count() > max
        || raw.trim() != raw
        || raw.chars().any(char::is_control)
    {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} must be 1 to {max} characters, without control characters or surrounding spaces."),
        ));
    }
    Ok(raw.to_string())
}

/// An email domain, lower-cased: labels of letters, digits and hyphens, at least two of them.
fn domain(raw: &str) -> Result<String, ApiError> {
    let domain = raw.trim().to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let valid = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(ApiError::invalid_param(
            "allowed_domains",
            format!("{raw:?} is not an email domain such as example.com."),
        ));
    }
    Ok(domain)
}

fn taken() -> ApiError {
    ApiError::conflict(
        "sso_client_taken",
        "Another organization signs in with this issuer and client id; register a client of your own at the provider.",
    )
    .with_param("client_id")
}

fn location(org_id: Uuid) -> String {
    format!("/api/v1/organizations/{org_id}/sso")
}

fn domain_error(error: DomainError) -> ApiError {
    match error {
        DomainError::NotConfigured => {
            ApiError::not_found("This organization has no single sign-on configuration.")
        }
    }
}

/// The configuration as `GET /organizations/{id}/sso` answers; none once removed.
pub fn resource(org_id: Uuid, setting: &SsoSetting) -> Option<SsoConfig> {
    let config = setting.config.as_ref()?;
    Some(SsoConfig {
        object: SsoConfigObject::Value,
        org_id: org_id.into(),
        issuer: config.issuer.clone(),
        client_id: config.client_id.clone(),
        allowed_domains: config.allowed_domains.clone(),
        groups_claim: config.groups_claim.clone(),
        role_mappings: config
            .role_mappings
            .iter()
            .filter_map(|m| {
                m.role.parse().ok().map(|role| RoleMapping {
                    group: m.group.clone(),
                    role,
                })
            })
            .collect(),
        default_role: config.default_role.as_deref().and_then(|r| r.parse().ok()),
        version: setting.version,
        updated_at: time(setting.updated_at),
    })
}
