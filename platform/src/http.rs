//! HTTP plumbing every route file uses: request ids, JSON body, query and path-id extractors
//! that answer in our error shape, fallbacks for unknown routes and methods, and a last line
//! that puts any other error response (axum's own rejections) into that shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use uuid::Uuid;

use crate::ApiError;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served: taken from `x-request-id` or generated. Every event a
/// request causes carries it as `correlation_id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client's `x-request-id` is kept when it is 1 to 128 of `A-Z a-z 0-9 . _ : -` (what UUIDs,
/// ULIDs and trace ids use); anything else is replaced by a new id, so what a client sends
/// cannot carry markup, quotes or formulas into logs, events and exports.
fn is_safe_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Middleware: assigns the request id, echoes it on the response, and serves the request inside
/// a `request` span carrying the id, the method and the route, to which authentication adds the
/// caller's organization ([`record_caller`]): every log line written while serving it (and by
/// the tasks it spawns `in_current_span`) names them.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_safe_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %route,
        org_id = tracing::field::Empty,
        caller = tracing::field::Empty,
    );
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "request served"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(Uuid::now_v7().to_string())))
    }
}

/// A JSON body; malformed or oversized bodies are refused in the OpenAI error shape.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                t.starts_with("application/json")
                    || t.split(';')
                        .next()
                        .is_some_and(|m| m.trim().ends_with("+json"))
            });
        if !json {
            return Err(ApiError::bad_request(
                "invalid_content_type",
                "Send the request body as JSON with `Content-Type: application/json`.",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large("The request body is too large.")
                } else {
                    ApiError::bad_request("invalid_body", "The request body could not be read.")
                }
            })?;
        if let Some(field) = nul_in(&bytes) {
            return Err(ApiError::invalid_param(
                &field,
                format!("{field} contains a NUL character (\\u0000), which text here cannot hold."),
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The top-level field of a JSON body holding a string with a NUL character, which PostgreSQL
/// cannot store (a 500 otherwise, found by fuzzing). Only bodies that spell `u0000` are parsed
/// for it.
fn nul_in(bytes: &[u8]) -> Option<String> {
    if !bytes.windows(5).any(|w| w == b"u0000") {
        return None;
    }
    fn has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(map) => {
                map.iter().any(|(k, v)| k.contains('\0') || has_nul(v))
            }
            _ => false,
        }
    }
    match serde_json::from_slice::<serde_json::Value>(bytes).ok()? {
        serde_json::Value::Object(map) => map
            .iter()
            .find(|(k, v)| k.contains('\0') || has_nul(v))
            .map(|(k, _)| k.replace('\0', "")),
        other if has_nul(&other) => Some("body".into()),
        _ => None,
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let (param, detail) = data_error(&e.body_text());
            let error = ApiError::bad_request(
                "invalid_body",
                format!("The request body is invalid: {detail}"),
            );
            match param {
                Some(p) => error.with_param(&p),
                None => error,
            }
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("invalid_json", "The request body is not valid JSON.")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
            "invalid_content_type",
            "Send the request body as JSON with `Content-Type: application/json`.",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large("The request body is too large.")
        }
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// The field and the reason of a body that is JSON but not the expected shape. axum writes
/// `Failed to deserialize …: <path>: <serde's message>`, the path naming the field
/// (`permissions[0]`), or no path when a field is missing (serde names it in backticks).
fn data_error(text: &str) -> (Option<String>, String) {
    let detail = text
        .split_once("target type: ")
        .map_or(text, |(_, rest)| rest)
        .to_string();
    let field = |path: &str| {
        path.split(['.', '['])
            .find(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some((path, reason)) = detail.split_once(": ") {
        if !path.is_empty() && !path.contains(' ') && path != "." {
            return (field(path), reason.to_string());
        }
    }
    let named = detail.split('`').nth(1).map(str::to_owned);
    (named, detail)
}

/// A query string; one that does not parse (a repeated field, a number that is not one) is
/// refused in the OpenAI error shape, naming the field.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    // After axum's "Failed to deserialize query string: ", the same words as a body's.
    let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
    with_field(
        ApiError::bad_request(
            "invalid_query",
            format!("The query string is invalid: {detail}"),
        ),
        detail,
    )
}

fn with_field(error: ApiError, detail: &str) -> ApiError {
    match data_error(detail).0 {
        Some(param) => error.with_param(&param),
        None => error,
    }
}

/// A resource id from the path; anything that is not a UUID cannot name a resource, so it is 404.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found("No such resource."))?;
        raw.parse()
            .map(PathId)
            .map_err(|_| ApiError::not_found(format!("No resource with id {raw:?}.")))
    }
}

pub async fn not_found_fallback() -> ApiError {
    ApiError::not_found("Unknown endpoint.").with_code("unknown_url")
}

pub async fn method_not_allowed_fallback() -> Response {
    let mut error = ApiError::bad_request(
        "method_not_allowed",
        "This endpoint does not support that method.",
    );
    error.status = StatusCode::METHOD_NOT_ALLOWED;
    error.into_response()
}

/// The most of a plain-text error body read to reword it.
const REJECTION_TEXT_LIMIT: usize = 4 * 1024;

/// Middleware, the last line of the error contract: an error response that is not JSON — one of
/// axum's own rejections (a query or path that does not parse, a body over the limit, a missing
/// layer) — is answered in the OpenAI error shape with the same status. A client error keeps
/// axum's wording, which names what was wrong; a server error's text is logged, never sent.
pub async fn error_shape(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REJECTION_TEXT_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let mut error = if status.is_server_error() {
        let mut error =
            ApiError::internal(anyhow::anyhow!("{status} without our error shape: {text}"));
        error.status = status;
        error
    } else {
        let message = if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("Bad request")
                .to_string()
        } else {
            text
        };
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "invalid_content_type",
            _ => "invalid_request",
        };
        let detail = message.split_once(": ").map_or("", |(_, d)| d);
        let mut error = with_field(ApiError::bad_request(code, message.clone()), detail);
        error.status = status;
        error
    }
    .into_response();
    // Headers the original answer carried (`allow`, `retry-after`, …) stay, but not its type or
    // length, which belonged to the old body.
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::CONTENT_LENGTH);
    for (name, value) in error.headers() {
        headers.insert(name.clone(), value.clone());
    }
    *error.headers_mut() = headers;
    error
}

impl ApiError {
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = code.into();
        self
    }
}

/// A write that was accepted: `201`/`200`/`204` once readable, `202` with `Location` if the read
/// models have not caught up within the bound.
pub fn accepted_or(
    status: StatusCode,
    projected: bool,
    location: &str,
    body: Option<impl serde::Serialize>,
) -> Response {
    let status = if projected {
        status
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = match body {
        Some(body) if status != StatusCode::NO_CONTENT => {
            (status, axum::Json(body)).into_response()
        }
        _ => status.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, value);
    }
    response
}

/// `Prefer: respond-async` asks for 202 at once, without waiting for the read models.
pub fn prefers_async(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// The peer address of the request, when the server was started with connect info.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip().to_string()),
        ))
    }
}

/// Largest body read and thrown away to answer an oversized request with a readable 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Middleware: a request whose `Content-Length` exceeds `max` gets 413 before any handler runs.
/// The body is read and discarded first (up to 64 MiB), because closing the connection while the
/// client is still sending makes most clients report a reset instead of our answer.
pub async fn limit_body(max: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > max => {
            if length <= DRAIN_LIMIT {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT).await;
            }
            ApiError::payload_too_large(format!(
                "The request body is {length} bytes; the limit is {max}."
            ))
            .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Adds the authenticated caller to the current request's span: its organization, and which
/// key (or the platform admin) it is.
pub fn record_caller(org_id: Option<Uuid>, caller: &str) {
    let span = tracing::Span::current();
    if let Some(org_id) = org_id {
        span.record("org_id", tracing::field::display(org_id));
    }
    span.record("caller", caller);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use serde_json::Value;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<u32>,
        org_id: Option<Uuid>,
    }

    fn app() -> Router {
        Router::new()
            .route("/ours", get(|Query(_): Query<Page>| async { "ok" }))
            .route(
                "/axums/{id}",
                get(
                    |axum::extract::Path(_): axum::extract::Path<Uuid>,
                     axum::extract::Query(_): axum::extract::Query<Page>| async {
                        "ok"
                    },
                ),
            )
            .route(
                "/broken",
                get(|| async {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "SELECT secret FROM table",
                    )
                }),
            )
            .layer(axum::middleware::from_fn(error_shape))
    }

    async fn call(uri: &str) -> (StatusCode, Value) {
        let response = app()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{uri}"
        );
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_query_that_does_not_parse_is_400_naming_the_field() {
        let (status, body) = call("/ours?org_id=null&org_id=null").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_query");
        assert_eq!(body["error"]["param"], "org_id");
        let (status, body) = call("/ours?limit=-1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn axums_own_rejections_are_put_in_the_openai_shape() {
        let (status, body) = call(&format!("/axums/{}?limit=x", Uuid::nil())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["param"], "limit");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("query string"));
        let (status, body) = call("/axums/not-a-uuid").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_request");
    }

    #[test]
    fn a_body_error_names_its_field() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        let (param, detail) = data_error(&format!(
            "{prefix}role: unknown variant `superuser`, expected one of `owner`, `admin` at line 1 column 20"
        ));
        assert_eq!(param.as_deref(), Some("role"));
        assert!(
            detail.starts_with("unknown variant `superuser`"),
            "{detail}"
        );
        let (param, _) = data_error(&format!("{prefix}permissions[0]: unknown variant `x`"));
        assert_eq!(param.as_deref(), Some("permissions"));
        let (param, _) = data_error(&format!("{prefix}missing field `name` at line 1 column 2"));
        assert_eq!(param.as_deref(), Some("name"));
    }

    #[tokio::test]
    async fn a_server_error_without_our_shape_hides_its_text() {
        let (status, body) = call("/broken").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["type"], "server_error");
        assert!(!body.to_string().contains("SELECT"), "{body}");
    }
}
