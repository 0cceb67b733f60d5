//! HTTP plumbing every route file uses: request ids, a JSON body extractor and a path-id
//! extractor that answer in our error shape, and fallbacks for unknown routes and methods.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ApiError;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served: taken from `x-request-id` or generated. Every event a
/// request causes carries it as `correlation_id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Middleware: assigns the request id and echoes it on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
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
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
