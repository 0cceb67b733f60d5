//! `POST /organizations`, `PUT /organizations/{id}`, `DELETE /organizations/{id}`.

use api::organizations::{CreateOrganization, OrganizationObject, UpdateOrganization};
use axum::http::StatusCode;
use axum::response::Response;
use events::EventPayload;
use platform::access::Permission;
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{
    stream_id, Command, DomainError, EmailAddress, OrgName, OrgSlug, Organization,
};
use crate::billing::aggregate::{self as subscription, Subscription};
use crate::command::{load, time, Aggregate, Batch, Ctx};
use crate::users;
use crate::CommandState;

const SLUG_SCOPE: &str = "organization.slug";

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update, delete))
        .routes(routes!(set_limits))
}

/// Sets the organization's rate limits, replacing the plan's defaults (platform admin only: a
/// tenant cannot raise its own). Fields left out go back to the plan's.
#[utoipa::path(put, path = "/organizations/{id}/limits", tag = "organizations", request_body = api::limits::SetRateLimits,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::limits::RateLimits),
    ))]
async fn set_limits(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<api::limits::SetRateLimits>,
) -> Result<Response, ApiError> {
    ctx.principal.require_admin()?;
    let limits = crate::limits::parse(body)?;
    let current = live_org(&ctx, id).await?;
    ctx.check_version(current.version)?;
    let plan = crate::limits::plan_of(&ctx, id).await?;
    let mut batch = ctx.batch();
    if current.limits != limits {
        batch.push(
            &stream_id(id),
            Some(id),
            current.version,
            vec![EventPayload::OrganizationLimitsSet(limits.clone())],
        );
    }
    let projected = batch.commit().await?;
    let body = api::limits::RateLimits::new(
        api::limits::RateLimitSubject::Organization,
        id,
        id,
        plan,
        crate::limits::overrides(&limits).over(platform::ratelimit::Limits::of_plan(plan.plan())),
        crate::limits::overrides(&limits),
    );
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &format!("/api/v1/organizations/{id}/limits"),
        Some(body),
    ))
}

/// Creates the organization (platform admin) and, with `owner_email`, its owner: a user
/// holding the owner role. Every organization starts on the Free plan.
#[utoipa::path(post, path = "/organizations", tag = "organizations", request_body = CreateOrganization,
    responses(
        (status = 201, body = api::organizations::Organization),
    ))]
async fn create(ctx: Ctx, Json(body): Json<CreateOrganization>) -> Result<Response, ApiError> {
    ctx.principal.require_admin()?;
    let owner_email = parse_email(body.owner_email.as_deref())?;
    let command = Command::Create {
        name: OrgName::parse(&body.name).map_err(|m| ApiError::invalid_param("name", m))?,
        slug: OrgSlug::parse(&body.slug).map_err(|m| ApiError::invalid_param("slug", m))?,
        owner_email: owner_email.clone(),
    };
    let id = Uuid::now_v7();
    let stream = stream_id(id);
    let current = Organization::default();
    let mut payloads = current.decide(command).map_err(domain_error)?;
    let mut batch = ctx.batch();
    batch.take(SLUG_SCOPE, body.slug.clone(), &stream);
    if let Some(email) = &owner_email {
        let user_id = users::create_in(&mut batch, id, email, None)?;
        // A new organization has no owner yet, so adding one always decides the same event.
        payloads.push(EventPayload::OwnerAdded(events::access::OwnerAdded {
            user_id,
        }));
    }
    batch.push(&stream, Some(id), 0, payloads);
    // Every organization starts on the default plan.
    let free = platform::plans::DEFAULT_PLAN.plan();
    let started = Subscription::default()
        .decide((
            subscription::Command::Start { plan: free },
            ctx.state.clock.now(),
        ))
        .map_err(|e| ApiError::internal(anyhow::anyhow!("starting the subscription: {e}")))?;
    batch.push(&subscription::stream_id(id), Some(id), 0, started);
    respond(batch, current, &stream, StatusCode::CREATED).await
}

/// Changes the fields given. `If-Match` with the version read makes it conditional.
#[utoipa::path(put, path = "/organizations/{id}", tag = "organizations", request_body = UpdateOrganization,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::organizations::Organization),
    ))]
async fn update(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<UpdateOrganization>,
) -> Result<Response, ApiError> {
    let name = body
        .name
        .as_deref()
        .map(OrgName::parse)
        .transpose()
        .map_err(|m| ApiError::invalid_param("name", m))?;
    let slug = body
        .slug
        .as_deref()
        .map(OrgSlug::parse)
        .transpose()
        .map_err(|m| ApiError::invalid_param("slug", m))?;
    let owner_email = parse_email(body.owner_email.as_deref())?;
    let current = load_visible(&ctx, id, Permission::OrganizationsWrite).await?;
    let stream = stream_id(id);
    let command = Command::Update {
        expected_version: ctx.if_match()?,
        name,
        slug: slug.clone(),
        owner_email,
    };
    let payloads = current.decide(command).map_err(domain_error)?;
    let mut batch = ctx.batch();
    if !payloads.is_empty() {
        if let Some(new_slug) = slug.as_ref().filter(|s| s.as_str() != current.slug) {
            batch.take(SLUG_SCOPE, new_slug.as_str().to_string(), &stream);
            batch.release(SLUG_SCOPE, current.slug.clone(), &stream);
        }
    }
    batch.push(&stream, Some(id), current.version, payloads);
    respond(batch, current, &stream, StatusCode::OK).await
}

/// Deletes the organization (owner or platform admin).
#[utoipa::path(delete, path = "/organizations/{id}", tag = "organizations", params(crate::IdParam, crate::IfMatch),
    responses((status = 204, description = "Deleted")))]
async fn delete(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let current = load_visible(&ctx, id, Permission::OrganizationsWrite).await?;
    let stream = stream_id(id);
    let command = Command::Delete {
        expected_version: ctx.if_match()?,
    };
    let payloads = current.decide(command).map_err(domain_error)?;
    let mut batch = ctx.batch();
    batch.release(SLUG_SCOPE, current.slug.clone(), &stream);
    batch.push(&stream, Some(id), current.version, payloads);
    respond(batch, current, &stream, StatusCode::NO_CONTENT).await
}

/// Commits the batch and answers with the organization as the batch leaves it.
async fn respond(
    batch: Batch<'_>,
    current: Organization,
    stream: &str,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let org = batch
        .events()
        .iter()
        .filter(|e| e.stream_id == *stream)
        .fold(current, Aggregate::apply);
    let projected = batch.commit().await?;
    let mut response = accepted_or(
        status,
        projected,
        &format!("/api/v1/organizations/{}", org.id),
        Some(resource(&org)),
    );
    if let Ok(etag) = format!("\"{}\"", org.version).parse() {
        response
            .headers_mut()
            .insert(axum::http::header::ETAG, etag);
    }
    Ok(response)
}

/// Loads a live organization the caller may act on with `permission`; anything else is 404.
pub async fn load_visible(
    ctx: &Ctx,
    id: Uuid,
    permission: Permission,
) -> Result<Organization, ApiError> {
    if !ctx.principal.sees(id) {
        return Err(not_found(id));
    }
    ctx.principal.require(permission)?;
    let loaded = load::<Organization>(&ctx.state, &stream_id(id)).await?;
    if !loaded.state.exists() {
        return Err(not_found(id));
    }
    Ok(loaded.state)
}

/// The live organization a request acts in (after `org_scope`); 404 when it is gone.
pub async fn live_org(ctx: &Ctx, id: Uuid) -> Result<Organization, ApiError> {
    let loaded = load::<Organization>(&ctx.state, &stream_id(id)).await?;
    if !loaded.state.exists() || !ctx.principal.sees(id) {
        return Err(not_found(id));
    }
    Ok(loaded.state)
}

/// The organization as `GET /organizations/{id}` answers.
pub fn resource(org: &Organization) -> api::organizations::Organization {
    api::organizations::Organization {
        id: org.id.into(),
        object: OrganizationObject::Value,
        name: org.name.clone(),
        slug: org.slug.clone(),
        owner_email: org.owner_email.clone(),
        version: org.version,
        created_at: time(org.created_at),
        updated_at: time(org.updated_at),
    }
}

fn parse_email(raw: Option<&str>) -> Result<Option<EmailAddress>, ApiError> {
    raw.map(EmailAddress::parse)
        .transpose()
        .map_err(|m| ApiError::invalid_param("owner_email", m))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("No organization with id {id}."))
}

pub fn domain_error(error: DomainError) -> ApiError {
    match error {
        DomainError::AlreadyExists => ApiError::conflict("already_exists", "The organization already exists."),
        DomainError::NotFound => ApiError::not_found("No such organization."),
        DomainError::VersionConflict { expected, actual } => ApiError::conflict(
            "version_conflict",
            format!("The organization is at version {actual}, not {expected}; read it again and retry."),
        ),
        DomainError::LastOwner => ApiError::conflict(
            "last_owner",
            "An organization keeps at least one owner: assign the owner role to someone else first.",
        ),
    }
}
