//! Shaping the answer for the client: a whole `chat.completion`, or server-sent events relayed
//! chunk by chunk, each in OpenAI's format under the public model name, with the headers that
//! name the provider and the tokens left.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use platform::ApiError;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::call::{Call, Served};
use super::dispatch::Answer;
use super::request::ChatRequest;
use crate::upstream;
use crate::wire::{self, Reply, WireFormat};

/// The answer in the shape the request asked for; the call's event is emitted when it ends.
pub async fn respond(
    call: Call,
    answer: Answer,
    request: &ChatRequest,
    tokens_left: Option<i64>,
) -> Result<Response, ApiError> {
    let mut response = if request.streamed {
        let prompt_estimate = wire::estimate_prompt_tokens(&request.body);
        stream(call, answer, request.include_usage, prompt_estimate)
    } else {
        whole(call, answer).await?
    };
    insert_remaining(&mut response, tokens_left);
    Ok(response)
}

/// Reads the whole upstream answer within the deadline and translates it.
async fn whole(call: Call, answer: Answer) -> Result<Response, ApiError> {
    let remaining = call.deadline().saturating_duration_since(Instant::now());
    let read = tokio::select! {
        read = tokio::time::timeout(remaining, answer.response.json::<Value>()) => Some(read),
        _ = call.gateway.cut_off.cancelled() => None,
    };
    let body = match read {
        Some(Ok(Ok(body))) if body.is_object() => Ok(body),
        Some(_) => Err(ApiError::bad_gateway(
            "The model provider's answer could not be read.",
        )),
        None => Err(shutting_down()),
    };
    let body = call.check(body).await?;
    let format = wire::of(&answer.provider);
    let usage = format.usage(&body).unwrap_or_default();
    let out = format.response(body, &Reply::new(&call.model.name));
    call.succeeded(Served {
        provider: &answer.provider.name,
        upstream_model: &answer.upstream_model,
        usage,
        time_to_first_token: None,
        client_disconnected: false,
        usage_estimated: false,
    })
    .await;
    let mut response = axum::Json(out).into_response();
    insert_provider(&mut response, &answer.provider.name);
    Ok(response)
}

/// Starts the event stream at once; a task relays the upstream's events into it.
fn stream(call: Call, answer: Answer, include_usage: bool, prompt_estimate: u64) -> Response {
    let provider = answer.provider.name.clone();
    let (tx, rx) = mpsc::channel::<String>(64);
    // The relay logs inside the request's span, though it outlives the handler.
    tokio::spawn(
        relay(call, answer, tx, include_usage, prompt_estimate)
            .instrument(tracing::Span::current()),
    );
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    insert_provider(&mut response, &provider);
    response
}

/// Reads the upstream stream to its end — even after the client left, so the call is billed —
/// relaying each chunk in OpenAI's format with the public model name.
async fn relay(
    call: Call,
    answer: Answer,
    tx: mpsc::Sender<String>,
    include_usage: bool,
    prompt_estimate: u64,
) {
    let format: &dyn WireFormat = wire::of(&answer.provider);
    let mut data = Box::pin(upstream::sse_data(Box::pin(answer.response.bytes_stream())));
    let reply = Reply::new(&call.model.name);
    let (mut usage, mut ttft, mut first, mut disconnected, mut failure) =
        (None, None, true, false, None);
    // What was relayed, as tokens, should the stream end before the provider reports usage.
    let mut completion_estimate = wire::TokenEstimate::default();
    let idle = call.gateway.config.stream_idle;
    loop {
        // A provider that stops sending is not waited for past the idle bound or the deadline,
        // nor past the cut-off of a process shutting down.
        let left = call.deadline().saturating_duration_since(Instant::now());
        let ended = tokio::select! {
            item = tokio::time::timeout(idle.min(left), data.next()) => match item {
                Ok(Some(item)) => Ok(item),
                Ok(None) => break,
                Err(_) => Err(Ended::Stalled),
            },
            _ = call.gateway.cut_off.cancelled() => Err(Ended::ShuttingDown),
        };
        let item = match ended {
            Ok(item) => item,
            Err(why) => {
                let progress = Progress {
                    provider: &answer.provider.name,
                    upstream_model: &answer.upstream_model,
                    disconnected,
                    ttft,
                    usage: usage.unwrap_or_else(|| {
                        wire::Usage::new(prompt_estimate, completion_estimate.tokens())
                    }),
                    usage_estimated: usage.is_none(),
                };
                ended_early(&call, why, progress, &tx).await;
                return;
            }
        };
        let payload = match item {
            Ok(payload) => payload,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if payload.trim() == "[DONE]" {
            break;
        }
        let Ok(event) = serde_json::from_str::<Value>(&payload) else {
            continue;
        };
        if let Some(reported) = format.usage(&event) {
            usage = Some(reported);
        }
        for chunk in format.chunks(event, &reply, first) {
            // The usage chunk goes only to a client that asked for it.
            if is_usage_only(&chunk) && !include_usage {
                continue;
            }
            if ttft.is_none() {
                ttft = Some(call.started.elapsed());
            }
            first = false;
            completion_estimate.add(&wire::chunk_text(&chunk));
            // A client that went away is not waited for; the upstream is still read to the end.
            if !disconnected && tx.send(sse(&chunk)).await.is_err() {
                disconnected = true;
            }
        }
    }
    if let Some(reason) = failure {
        tracing::warn!(error = %reason, "upstream stream broke");
        let error = ApiError::bad_gateway("The model provider's stream broke off.")
            .with_code("upstream_stream_error");
        // The event first (spooled: billed whatever happens next), then the stream's end.
        call.failed(&error).await;
        if !disconnected {
            let _ = tx.send(sse(&error_body(&error))).await;
        }
        return;
    }
    let usage = usage.unwrap_or_default();
    // The call's event is spooled before the client sees the stream end, so an answer that
    // completed is never unbilled, even if this process is killed the next instant.
    call.succeeded(Served {
        provider: &answer.provider.name,
        upstream_model: &answer.upstream_model,
        usage,
        time_to_first_token: ttft,
        client_disconnected: disconnected,
        usage_estimated: false,
    })
    .await;
    if include_usage && !disconnected {
        if let Some(chunk) = format.usage_chunk(usage, &reply) {
            let _ = tx.send(sse(&chunk)).await;
        }
    }
    if !disconnected {
        let _ = tx.send("data: [DONE]\n\n".to_string()).await;
    }
}

/// Why a stream was ended before the provider ended it.
#[derive(Debug, Clone, Copy)]
enum Ended {
    /// The provider went quiet for longer than the idle bound, or the deadline passed.
    Stalled,
    /// The process is shutting down and stopped waiting for its calls.
    ShuttingDown,
}

/// How far a stream got when it was ended.
struct Progress<'a> {
    provider: &'a str,
    upstream_model: &'a str,
    disconnected: bool,
    ttft: Option<std::time::Duration>,
    /// The provider's last report, or the gateway's estimate when it sent none (an
    /// OpenAI-format provider reports usage only at the end; Gemini as it goes).
    usage: wire::Usage,
    usage_estimated: bool,
}

/// Ends a stream early: the client gets an error event, and the call is billed for what it used.
async fn ended_early(call: &Call, why: Ended, progress: Progress<'_>, tx: &mpsc::Sender<String>) {
    let error = match why {
        Ended::Stalled => {
            tracing::warn!(
                provider = progress.provider,
                "upstream stream stalled; ended it"
            );
            ApiError::gateway_timeout("The model provider stopped sending; the stream was ended.")
        }
        Ended::ShuttingDown => {
            tracing::warn!(
                provider = progress.provider,
                "server shutting down; ended a stream"
            );
            shutting_down()
        }
    };
    call.succeeded(Served {
        provider: progress.provider,
        upstream_model: progress.upstream_model,
        usage: progress.usage,
        time_to_first_token: progress.ttft,
        client_disconnected: progress.disconnected,
        usage_estimated: progress.usage_estimated,
    })
    .await;
    if !progress.disconnected {
        let _ = tx.send(sse(&error_body(&error))).await;
    }
}

/// A call ended because its process is shutting down: retry it, it will reach another process.
fn shutting_down() -> ApiError {
    ApiError::unavailable("The server is shutting down; the call was ended. Retry it.")
        .with_code("server_shutting_down")
}

fn error_body(error: &ApiError) -> Value {
    json!({"error": {"message": error.message, "type": error.kind, "code": error.code, "param": null}})
}

fn sse(chunk: &Value) -> String {
    format!("data: {chunk}\n\n")
}

/// A chunk with no choices: the one that carries a stream's usage.
fn is_usage_only(chunk: &Value) -> bool {
    chunk["choices"].as_array().is_some_and(|c| c.is_empty())
}

/// `x-aihub-provider`: the provider that served.
fn insert_provider(response: &mut Response, provider: &str) {
    if let Ok(value) = HeaderValue::from_str(provider) {
        response.headers_mut().insert("x-aihub-provider", value);
    }
}

/// `x-aihub-tokens-remaining`: the month's allowance left once this call's reservation is held
/// (the call usually settles below its reservation), as this process knows it: with leases,
/// other processes' use since this process last synced with the ledger (at most one flush
/// interval ago while the organization is busy) is not in it. Absent for unlimited plans.
fn insert_remaining(response: &mut Response, remaining: Option<i64>) {
    if let Some(value) = remaining.and_then(|r| HeaderValue::from_str(&r.max(0).to_string()).ok()) {
        response
            .headers_mut()
            .insert("x-aihub-tokens-remaining", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_chunk_without_choices_is_the_usage_chunk() {
        assert!(is_usage_only(
            &json!({"choices": [], "usage": {"total_tokens": 3}})
        ));
        assert!(!is_usage_only(&json!({"choices": [{"delta": {}}]})));
        assert!(!is_usage_only(&json!({"usage": {"total_tokens": 3}})));
    }

    #[test]
    fn the_remaining_tokens_header_is_never_negative_and_absent_when_unlimited() {
        let header = |remaining: Option<i64>| {
            let mut response = Response::new(Body::empty());
            insert_remaining(&mut response, remaining);
            response
                .headers()
                .get("x-aihub-tokens-remaining")
                .map(|v| v.to_str().unwrap_or_default().to_string())
        };
        assert_eq!(header(Some(42)).as_deref(), Some("42"));
        assert_eq!(header(Some(-5)).as_deref(), Some("0"));
        assert_eq!(header(None), None);
    }
}
