//! Failover: walk the routing plan until a deployment answers. Nothing has reached the client
//! yet, so moving on is always safe; connect errors, timeouts, 408, 429 and 5xx move on, any
//! other refusal is the client's request and ends the call.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use events::chat::Attempt;
use platform::config::ProviderConfig;
use platform::ApiError;

use super::call::Call;
use super::request::ChatRequest;
use crate::upstream::{self, Failure};

/// The deployment that answered, with its response headers read and its body still to come.
pub struct Answer {
    pub provider: ProviderConfig,
    pub upstream_model: String,
    pub response: reqwest::Response,
}

/// The first answer among the model's deployments, each attempt recorded in `call`.
pub async fn first_answer(call: &mut Call, request: &ChatRequest) -> Result<Answer, ApiError> {
    let gateway = call.gateway.clone();
    let model = call.model.clone();
    let deadline = call.deadline();
    for step in gateway.plan(&model) {
        let deployment = step.deployment;
        if step.skipped() {
            call.attempted(deployment, "circuit_open", Duration::ZERO);
            continue;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let tried = Instant::now();
        let timeout = gateway.config.upstream_timeout.min(remaining);
        let sent = upstream::send(
            &gateway.http,
            step.provider,
            &deployment.upstream_model,
            &request.body,
            request.streamed,
            timeout,
        )
        .await;
        match sent {
            Ok(response) => {
                gateway.record(deployment, true);
                call.attempted(deployment, "ok", tried.elapsed());
                return Ok(Answer {
                    provider: step.provider.clone(),
                    upstream_model: deployment.upstream_model.clone(),
                    response,
                });
            }
            Err(Failure::Retryable { outcome, .. }) => {
                gateway.record(deployment, false);
                call.attempted(deployment, &outcome, tried.elapsed());
            }
            Err(Failure::Rejected { status, message }) => {
                call.attempted(deployment, &format!("http_{status}"), tried.elapsed());
                // The provider's own words stay in our logs: they can name its accounts, our
                // upstream model ids or its internals. The client learns the status class.
                tracing::warn!(
                    provider = %step.provider.name,
                    upstream_model = %deployment.upstream_model,
                    status,
                    provider_message = %message,
                    "the provider rejected the request"
                );
                return Err(ApiError::bad_request(
                    "provider_rejected",
                    format!(
                        "The model provider rejected the request (HTTP {status}). Check the request's parameters against the model, or contact support with this request's x-request-id."
                    ),
                ));
            }
        }
    }
    Err(exhausted(&call.attempts))
}

/// The error once every deployment was tried: 429 when all were rate limited, 504 when the last
/// timed out, 503 when none could be tried, 502 otherwise.
pub fn exhausted(attempts: &[Attempt]) -> ApiError {
    let tried: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.outcome != "circuit_open")
        .collect();
    if tried.is_empty() {
        return ApiError::unavailable(
            "No provider is available for this model right now; try again shortly.",
        );
    }
    if tried.iter().all(|a| a.outcome == "http_429") {
        let mut error = ApiError::bad_request(
            "rate_limit_exceeded",
            "Every provider of this model is rate limited; retry shortly.",
        );
        error.status = StatusCode::TOO_MANY_REQUESTS;
        error.kind = "rate_limit_error";
        return error;
    }
    if tried.last().is_some_and(|a| a.outcome == "timeout") {
        return ApiError::gateway_timeout("The model provider did not answer in time.");
    }
    ApiError::bad_gateway("Every provider of this model failed; try again shortly.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempts(outcomes: &[&str]) -> Vec<Attempt> {
        outcomes
            .iter()
            .map(|outcome| Attempt {
                provider: "openrouter".into(),
                upstream_model: "m".into(),
                outcome: (*outcome).into(),
                latency_ms: 1,
            })
            .collect()
    }

    fn status_and_code(outcomes: &[&str]) -> (u16, String) {
        let error = exhausted(&attempts(outcomes));
        (error.status.as_u16(), error.code)
    }

    #[test]
    fn no_deployment_tried_is_503() {
        assert_eq!(status_and_code(&[]).0, 503);
        assert_eq!(status_and_code(&["circuit_open", "circuit_open"]).0, 503);
    }

    #[test]
    fn all_rate_limited_is_429_even_past_open_circuits() {
        let error = exhausted(&attempts(&["circuit_open", "http_429", "http_429"]));
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.kind, "rate_limit_error");
        assert_eq!(error.code, "rate_limit_exceeded");
    }

    #[test]
    fn a_last_timeout_is_504_and_anything_else_502() {
        assert_eq!(
            status_and_code(&["http_500", "timeout"]),
            (504, "upstream_timeout".into())
        );
        assert_eq!(
            status_and_code(&["timeout", "http_503"]),
            (502, "upstream_error".into())
        );
        assert_eq!(
            status_and_code(&["http_429", "connect_error"]),
            (502, "upstream_error".into())
        );
    }
}
