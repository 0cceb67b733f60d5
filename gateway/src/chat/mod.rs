//! `POST /chat/completions` and `POST /chat/stream`: authorize, check the request, gate the model
//! by plan, hold the tokens, find a deployment that answers, shape the answer. Each step is a
//! module of its own; the handler only puts them in order.

pub mod call;
pub mod dispatch;
pub mod request;
pub mod respond;
pub mod schema;

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use platform::http::{ClientIp, Json, RequestId};
use platform::ratelimit::RateSlot;
use platform::{ApiError, Principal};
use serde_json::Value;

use crate::access::{self, Action};
use crate::Gateway;
use call::Call;
use platform::ErrorResponse;
use request::ChatRequest;
use schema::{ChatCompletion, ChatCompletionRequest, ServerSentEvent};

/// An OpenAI-compatible chat completion: a whole answer, or server-sent events when the body
/// says `"stream": true`.
#[utoipa::path(
    post,
    path = "/chat/completions",
    tag = "chat",
    operation_id = "create_chat_completion",
    security(("bearer" = [])),
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The answer: a `chat.completion` object, or with `\"stream\": true` server-sent events, each `data:` a `ChatCompletionChunk`, ending `data: [DONE]`. A stream that breaks off after it started ends with a `data:` event holding an `ErrorResponse`.",
            headers(
                ("x-aihub-provider" = String, description = "The provider that served the call."),
                ("x-aihub-tokens-remaining" = i64, description = "The organization's monthly allowance left once this call's tokens are held; absent for unlimited plans."),
            ),
            content(
                (ChatCompletion = "application/json"),
                (ServerSentEvent = "text/event-stream", example = json!(STREAM_EXAMPLE)),
            )
        ),
        (status = 400, description = "Malformed JSON, or a field that breaks a rule (`param` names it); or the provider refused the request (`provider_rejected`).", body = ErrorResponse),
        (status = 401, description = "No valid bearer token.", body = ErrorResponse),
        (status = 403, description = "The platform-admin token (`api_key_required`), a key without `chat:write` (`missing_permission`), or a model above the plan's tier (`model_not_in_plan`).", body = ErrorResponse),
        (status = 404, description = "No such model (`model_not_found`).", body = ErrorResponse),
        (status = 413, description = "The body is over the size limit.", body = ErrorResponse),
        (status = 429, description = "The monthly token quota is used up (`insufficient_quota`), or every provider of the model is rate limited (`rate_limit_exceeded`).", body = ErrorResponse),
        (status = 502, description = "Every provider failed, or the answer could not be read (`upstream_error`).", body = ErrorResponse),
        (status = 503, description = "No provider of the model can be tried right now, or the database is unavailable; retry.", body = ErrorResponse),
        (status = 504, description = "The provider did not answer in time (`upstream_timeout`).", body = ErrorResponse),
    )
)]
pub async fn completions(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    slot: Option<Extension<RateSlot>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let slot = slot.map(|Extension(slot)| slot);
    chat(gateway, principal, request_id, ip, slot, body, false).await
}

/// The same call, always answered as server-sent events, whatever the body's `stream` says.
#[utoipa::path(
    post,
    path = "/chat/stream",
    tag = "chat",
    operation_id = "stream_chat_completion",
    security(("bearer" = [])),
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "Server-sent events, each `data:` a `ChatCompletionChunk`, ending `data: [DONE]`; with `stream_options.include_usage` the last chunk before it carries `usage`. A stream that breaks off ends with a `data:` event holding an `ErrorResponse`.",
            headers(
                ("x-aihub-provider" = String, description = "The provider that served the call."),
                ("x-aihub-tokens-remaining" = i64, description = "The organization's monthly allowance left once this call's tokens are held; absent for unlimited plans."),
            ),
            content((ServerSentEvent = "text/event-stream", example = json!(STREAM_EXAMPLE)))
        ),
        (status = 400, description = "Malformed JSON, or a field that breaks a rule (`param` names it); or the provider refused the request (`provider_rejected`).", body = ErrorResponse),
        (status = 401, description = "No valid bearer token.", body = ErrorResponse),
        (status = 403, description = "The platform-admin token (`api_key_required`), a key without `chat:write` (`missing_permission`), or a model above the plan's tier (`model_not_in_plan`).", body = ErrorResponse),
        (status = 404, description = "No such model (`model_not_found`).", body = ErrorResponse),
        (status = 413, description = "The body is over the size limit.", body = ErrorResponse),
        (status = 429, description = "The monthly token quota is used up (`insufficient_quota`), or every provider of the model is rate limited (`rate_limit_exceeded`).", body = ErrorResponse),
        (status = 502, description = "Every provider failed (`upstream_error`).", body = ErrorResponse),
        (status = 503, description = "No provider of the model can be tried right now, or the database is unavailable; retry.", body = ErrorResponse),
        (status = 504, description = "The provider did not answer in time (`upstream_timeout`).", body = ErrorResponse),
    )
)]
pub async fn stream(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    slot: Option<Extension<RateSlot>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let slot = slot.map(|Extension(slot)| slot);
    chat(gateway, principal, request_id, ip, slot, body, true).await
}

/// A call the platform makes on an organization's behalf (a synthetic health check): the same
/// path as a client's call — plan gate, rate limits, quota, routing, failover, the one event that
/// bills it — without an HTTP request around it.
pub async fn on_behalf(
    gateway: Arc<Gateway>,
    principal: Principal,
    request_id: String,
    body: Value,
) -> Result<Response, ApiError> {
    chat(gateway, principal, request_id, None, None, body, false).await
}

/// What a stream looks like, for the document.
const STREAM_EXAMPLE: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);

/// Refusals before the call is made (403, 400, 404, 500) end in no event; from the quota on, every
/// outcome is the call's one event.
async fn chat(
    gateway: Arc<Gateway>,
    principal: Principal,
    request_id: String,
    ip: Option<String>,
    slot: Option<RateSlot>,
    body: Value,
    force_stream: bool,
) -> Result<Response, ApiError> {
    let key = access::tenant(&principal)?;
    access::authorize(&principal, Action::Chat)?;
    let mut request = ChatRequest::parse(body, force_stream)?;
    let model = crate::models::find(&gateway.catalog(), &request.model)?;
    let plan = access::plan_of(&key);
    access::gate(plan, &model)?;

    gateway.check_not_overloaded()?;
    // Rate limits refuse before the call is made, so they end in no event: a flood of refused
    // calls must not become a flood of the journal (a metric counts them).
    let stream_slot = match request.streamed {
        true => Some(gateway.streams.open(&key)?),
        false => None,
    };
    let rate = match &gateway.rate {
        Some(rate) => {
            let tokens =
                crate::limits::tokens_wanted(request.prompt_bound(), request.wanted_completion());
            let ticket = rate
                .admit(
                    &key.limits,
                    key.org_id,
                    key.key_id,
                    0,
                    tokens,
                    slot.as_ref(),
                )
                .await?;
            Some((rate.clone(), ticket))
        }
        None => None,
    };
    let actor = principal.actor(ip);
    let mut call = Call::new(gateway, key, actor, request_id, model, request.streamed);
    call.hold_limits(rate, stream_slot);
    let reserved = call.reserve(plan, &mut request).await;
    let tokens_left = call.check(reserved).await?;
    let answer = dispatch::first_answer(&mut call, &request).await;
    let answer = call.check(answer).await?;
    respond::respond(call, answer, &request, tokens_left).await
}
