//! `POST /organizations`, `PUT /organizations/{id}`, `DELETE /organizations/{id}`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use platform::http::{accepted_or, ClientIp, Json, PathId, RequestId};
use platform::{ApiError, Principal};
use serde::Deserialize;
use uuid::Uuid;

use super::aggregate::{
    self, stream_id, Command, DomainError, EmailAddress, OrgName, OrgSlug, Organization,
};
use crate::commit::{commit, Stream};
use crate::journal::Claim;
use crate::CommandState;

/// The projection whose read model serves `GET /organizations/{id}`.
const PROJECTION: &str = "tenancy";
const SLUG_SCOPE: &str = "organization.slug";

pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/organizations", post(create))
        .route("/organizations/{id}", put(update).delete(delete))
}

#[derive(Debug, Deserialize)]
struct CreateOrganization {
    name: String,
    slug: String,
    #[serde(default)]
    owner_email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UpdateOrganization {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    owner_email: Option<String>,
}

async fn create(
    State(state): State<CommandState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<CreateOrganization>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    let command = Command::Create {
        name: OrgName::parse(&body.name).map_err(|m| ApiError::invalid_param("name", m))?,
        slug: OrgSlug::parse(&body.slug).map_err(|m| ApiError::invalid_param("slug", m))?,
        owner_email: parse_email(body.owner_email.as_deref())?,
    };
    let id = Uuid::now_v7();
    let current = Organization::default();
    let slug = body.slug.clone();
    let claims = vec![(
        Claim::Take {
            scope: SLUG_SCOPE,
            value: slug,
        },
        stream_id(id),
    )];
    execute(
        &state,
        &principal,
        ip,
        &request_id,
        &headers,
        id,
        current,
        command,
        claims,
        StatusCode::CREATED,
    )
    .await
}

async fn update(
    State(state): State<CommandState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    PathId(id): PathId,
    headers: HeaderMap,
    Json(body): Json<UpdateOrganization>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
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
    let expected_version = if_match(&headers)?;
    let current = load(&state, id).await?;
    let mut claims = Vec::new();
    if let Some(new_slug) = slug.as_ref().filter(|s| s.as_str() != current.slug) {
        claims.push((
            Claim::Take {
                scope: SLUG_SCOPE,
                value: new_slug.as_str().to_string(),
            },
            stream_id(id),
        ));
        claims.push((
            Claim::Release {
                scope: SLUG_SCOPE,
                value: current.slug.clone(),
            },
            stream_id(id),
        ));
    }
    let command = Command::Update {
        expected_version,
        name,
        slug,
        owner_email,
    };
    execute(
        &state,
        &principal,
        ip,
        &request_id,
        &headers,
        id,
        current,
        command,
        claims,
        StatusCode::OK,
    )
    .await
}

async fn delete(
    State(state): State<CommandState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    let expected_version = if_match(&headers)?;
    let current = load(&state, id).await?;
    let claims = vec![(
        Claim::Release {
            scope: SLUG_SCOPE,
            value: current.slug.clone(),
        },
        stream_id(id),
    )];
    let command = Command::Delete { expected_version };
    execute(
        &state,
        &principal,
        ip,
        &request_id,
        &headers,
        id,
        current,
        command,
        claims,
        StatusCode::NO_CONTENT,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    state: &CommandState,
    principal: &Principal,
    ip: Option<String>,
    request_id: &str,
    headers: &HeaderMap,
    id: Uuid,
    current: Organization,
    command: Command,
    claims: Vec<(Claim, String)>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let payloads = aggregate::decide(&current, command).map_err(domain_error)?;
    let actor = principal.actor(ip);
    let stream = Stream {
        id: stream_id(id),
        org_id: Some(id),
        version: current.version,
        actor: &actor,
        correlation_id: request_id,
    };
    let events = stream.envelopes(payloads);
    let claims = if events.is_empty() {
        Vec::new()
    } else {
        claims
    };
    let projected = commit(state, headers, &events, &claims, PROJECTION).await?;
    let after = events.iter().fold(current, aggregate::apply);
    let mut response = accepted_or(
        status,
        projected,
        &format!("/api/v1/organizations/{id}"),
        Some(representation(&after)),
    );
    if let Ok(etag) = format!("\"{}\"", after.version).parse() {
        response
            .headers_mut()
            .insert(axum::http::header::ETAG, etag);
    }
    Ok(response)
}

async fn load(state: &CommandState, id: Uuid) -> Result<Organization, ApiError> {
    let history = state.journal.load(&stream_id(id)).await?;
    let organization = history
        .iter()
        .fold(Organization::default(), aggregate::apply);
    if !organization.exists() {
        return Err(not_found(id));
    }
    Ok(organization)
}

/// The same shape `GET /organizations/{id}` answers with.
pub fn representation(org: &Organization) -> serde_json::Value {
    serde_json::json!({
        "id": org.id,
        "object": "organization",
        "name": org.name,
        "slug": org.slug,
        "owner_email": org.owner_email,
        "version": org.version,
        "created_at": org.created_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "updated_at": org.updated_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    })
}

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    match principal {
        Principal::PlatformAdmin => Ok(()),
    }
}

fn parse_email(raw: Option<&str>) -> Result<Option<EmailAddress>, ApiError> {
    raw.map(EmailAddress::parse)
        .transpose()
        .map_err(|m| ApiError::invalid_param("owner_email", m))
}

/// `If-Match: "3"` (or `3`) makes the write conditional on the version read.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_if_match",
                "If-Match must be the ETag a GET returned, like \"3\".",
            )
            .with_param("If-Match")
        })
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("No organization with id {id}."))
}

fn domain_error(error: DomainError) -> ApiError {
    match error {
        DomainError::AlreadyExists => {
            ApiError::conflict("already_exists", "The organization already exists.")
        }
        DomainError::NotFound => ApiError::not_found("No such organization."),
        DomainError::VersionConflict { expected, actual } => ApiError::conflict(
            "version_conflict",
            format!(
                "The organization is at version {actual}, not {expected}; read it again and retry."
            ),
        ),
    }
}
