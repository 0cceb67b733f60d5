//! The OpenAPI 3.1 document of the whole HTTP API, generated from the route and resource types
//! (utoipa), served at `GET /openapi.json` and committed as `docs/openapi.json`; a test fails
//! when the two differ.

use std::sync::OnceLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::OpenApi as _;

/// Where the API routes are nested.
pub const BASE: &str = "/api/v1";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "AI Hub API",
        description = "One OpenAI-compatible endpoint in front of many model providers, with organizations, teams, roles, API keys, subscriptions, invoices and usage. Every request but the probes carries `Authorization: Bearer <API key or admin token>`. Errors use OpenAI's shape: `{\"error\": {\"message\", \"type\", \"code\", \"param\"}}`. Lists take `limit` and `cursor` and answer `{\"object\": \"list\", \"data\", \"next_cursor\"}`. A write answers 201/200 once its read model has it, or 202 with `Location` if that takes longer than the bound; `Prefer: respond-async` asks for 202 at once.",
        license(name = "Apache-2.0"),
    ),
    paths(crate::app::healthz, crate::app::readyz, crate::app::metrics_text, openapi_json),
    components(schemas(platform::ErrorResponse)),
    tags(
        (name = "chat", description = "OpenAI-compatible chat completions"),
        (name = "models", description = "The models a key may use"),
        (name = "organizations"), (name = "users"), (name = "teams"), (name = "access", description = "Permissions and roles"),
        (name = "api_keys", description = "API keys"), (name = "billing", description = "Plans, subscriptions and invoices"),
        (name = "usage", description = "Tokens and cost"),
        (name = "monitoring", description = "Metrics, their time series, and health"), (name = "audit", description = "The audit trail: every event, its tamper-evident chain, exports and past state"), (name = "operations", description = "Probes, metrics and this document"),
    )
)]
struct Root;

/// This document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
#[allow(dead_code)]
async fn openapi_json() {}

/// The document, built once.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The document as committed in `docs/openapi.json`, serialized once.
pub fn pretty() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = document().to_pretty_json().unwrap_or_default();
        text.push('\n');
        text
    })
}

/// The routes the `aihub` crate itself adds under `/api/v1`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(crate::health::health),
    components(schemas(crate::health::Health, crate::health::Component, crate::health::Status))
)]
struct MonitoringApi;

fn build() -> OpenApi {
    let mut api = OpenApi::new(
        utoipa::openapi::Info::default(),
        utoipa::openapi::Paths::new(),
    );
    api.merge(command_api::router().split_for_parts().1);
    api.merge(read_api::router().split_for_parts().1);
    api.merge(gateway::openapi());
    api.merge(MonitoringApi::openapi());
    let mut api = nest(api);
    api.merge(Root::openapi());
    let root = Root::openapi();
    api.info = root.info;
    api.tags = root.tags;
    conventions(&mut api);
    api
}

/// The route crates' paths are relative to where they are nested.
fn nest(mut api: OpenApi) -> OpenApi {
    let paths = std::mem::take(&mut api.paths.paths);
    for (path, item) in paths {
        api.paths.paths.insert(format!("{BASE}{path}"), item);
    }
    api
}

/// What every operation under `/api/v1` shares: the bearer scheme, and the errors any of them
/// can answer in the OpenAI shape.
fn conventions(api: &mut OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key (`aihub-sk-…`) or, for the platform admin, AIHUB_ADMIN_TOKEN.",
                ))
                .build(),
        ),
    );
    for (path, item) in api.paths.paths.iter_mut() {
        if !path.starts_with(BASE) {
            continue;
        }
        let operations = [
            (&mut item.get, "get"),
            (&mut item.post, "post"),
            (&mut item.put, "put"),
            (&mut item.delete, "delete"),
            (&mut item.patch, "patch"),
        ];
        for (operation, method) in operations {
            if let Some(operation) = operation.as_mut() {
                operation.operation_id = Some(operation_id(method, path));
                let writes = method != "get";
                if writes && !path.starts_with(&format!("{BASE}/chat/")) {
                    accepted(operation);
                }
                shared(operation, writes);
            }
        }
    }
}

/// `post /api/v1/users/{id}/roles` → `post_users_id_roles`: unique, as clients need.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .trim_start_matches(BASE)
        .split(['/', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches(['{', '}']).to_string())
        .collect();
    format!("{method}_{}", words.join("_"))
}

/// Every write answers 202 with `Location` when its read model has not caught up in time (or
/// the client sent `Prefer: respond-async`), with the same body as its 200/201.
fn accepted(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    let done = ["201", "200", "204"]
        .iter()
        .find_map(|s| responses.get(*s).cloned());
    if let Some(RefOr::T(mut response)) = done {
        response.description =
            "Accepted: the change is stored and readable shortly at `Location`".into();
        responses
            .entry("202".to_string())
            .or_insert(RefOr::T(response));
    }
}

fn shared(operation: &mut Operation, writes: bool) {
    // An operation that declares its own (an empty requirement: a signed webhook) keeps it.
    if operation.security.is_none() {
        operation.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
    let mut errors = vec![
        ("400", "Invalid input: `param` names the field"),
        ("401", "Missing, unknown, disabled, expired or revoked key"),
        (
            "403",
            "The key lacks the permission, or the plan the feature",
        ),
        ("404", "No such resource in the caller's organization"),
        ("429", "Too many requests or the token quota is spent"),
        (
            "503",
            "A dependency is unavailable; retry after `retry-after`",
        ),
    ];
    if writes {
        errors.push(("409", "A version or uniqueness conflict"));
        errors.push(("413", "The body is too large"));
    }
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error(description));
    }
    operation
        .responses
        .responses
        .entry("default".to_string())
        .or_insert_with(|| error("Any other error, in the same shape"));
}

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorResponse")))
                    .build(),
            )
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_openapi_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let generated = pretty();
        if std::env::var_os("AIHUB_BLESS_OPENAPI").is_some() {
            std::fs::write(&path, generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from what the code generates; run `aihub openapi > docs/openapi.json` (or AIHUB_BLESS_OPENAPI=1 cargo test -p aihub) and review the diff"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_errors_and_the_bearer_scheme() {
        let doc: serde_json::Value = serde_json::from_str(pretty()).expect("json");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for path in [
            "/api/v1/organizations",
            "/api/v1/organizations/{id}",
            "/api/v1/users/{id}/roles/{role}",
            "/api/v1/api-keys/{id}/permissions",
            "/api/v1/billing/usage/export",
            "/api/v1/chat/completions",
            "/api/v1/models",
            "/healthz",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        let create = &paths["/api/v1/organizations"]["post"];
        assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
        assert_eq!(
            create["responses"]["409"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorResponse"
        );
        assert!(doc["components"]["schemas"]["Organization"].is_object());
        assert!(doc["components"]["schemas"]["Permission"]["enum"]
            .as_array()
            .is_some_and(|e| e.iter().any(|p| p == "chat:write")));
    }
}
