//! `POST /chat/completions`, `POST /chat/stream`, `GET /chat/models`, `GET /models`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use events::chat::{Attempt, ChatCall, ChatCompletionFailed, ChatCompletionSucceeded};
use events::{Actor, EventPayload};
use futures::StreamExt;
use platform::auth::KeyPrincipal;
use platform::http::{ClientIp, Json, RequestId};
use platform::{ApiError, Principal};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::catalog::{Catalog, Model};
use super::quota;
use super::upstream::{self, Failure};
use super::wire::{self, Reply, Usage, WireFormat};
use super::Gateway;

/// The most choices one request may ask for.
const MAX_N: u64 = 4;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/chat/completions", post(completions))
        .route("/chat/stream", post(stream))
        .route("/chat/models", get(chat_models))
        .route("/models", get(models))
        .with_state(gateway)
}

async fn completions(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    chat(gateway, principal, request_id, ip, body, false).await
}

async fn stream(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    chat(gateway, principal, request_id, ip, body, true).await
}

fn caller(principal: &Principal) -> Result<KeyPrincipal, ApiError> {
    match principal {
        Principal::ApiKey(key) => Ok(key.clone()),
        Principal::PlatformAdmin => Err(ApiError::forbidden(
            "api_key_required",
            "Chat calls are made with an API key of an organization, not the platform-admin token.",
        )),
    }
}

fn validate(body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "The request body must be a JSON object.",
        ));
    }
    if !body["model"].is_string() {
        return Err(ApiError::invalid_param(
            "model",
            "model is required: the name of a model from GET /api/v1/models.",
        ));
    }
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_param(
                "messages",
                "messages must be a non-empty array of {role, content}.",
            )
        })?;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if ![
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ]
        .contains(&role)
        {
            return Err(ApiError::invalid_param(
                "messages",
                format!("messages[{i}].role {role:?} is not a valid role."),
            ));
        }
    }
    if let Some(n) = body.get("n").filter(|n| !n.is_null()) {
        if !n.as_u64().is_some_and(|n| (1..=MAX_N).contains(&n)) {
            return Err(ApiError::invalid_param(
                "n",
                format!("n must be an integer from 1 to {MAX_N}."),
            ));
        }
    }
    if let Some(stream) = body.get("stream").filter(|s| !s.is_null()) {
        if !stream.is_boolean() {
            return Err(ApiError::invalid_param(
                "stream",
                "stream must be true or false.",
            ));
        }
    }
    Ok(())
}

/// Everything the call's event needs, gathered as the call goes.
struct CallRecord {
    gateway: Arc<Gateway>,
    key: KeyPrincipal,
    actor: Actor,
    request_id: String,
    model: Model,
    streamed: bool,
    attempts: Vec<Attempt>,
    started: Instant,
    /// The tokens held for this call, settled when it ends.
    reservation: Option<quota::Reservation>,
}

impl CallRecord {
    fn call(&self) -> ChatCall {
        ChatCall {
            request_id: self.request_id.clone(),
            api_key_id: Some(self.key.key_id),
            team_id: self.key.team_id,
            user_id: self.key.owner_user_id,
            model: self.model.name.clone(),
            streamed: self.streamed,
            attempts: self.attempts.clone(),
            latency_ms: self.started.elapsed().as_millis() as u64,
        }
    }

    /// Replaces the call's token reservation by what it used.
    async fn settle(&self, used: u64) {
        if let Some(reservation) = &self.reservation {
            if let Err(e) = self.gateway.quota.settle(reservation, used as i64).await {
                tracing::error!(error = %e, "settling a quota reservation failed; the sweep will release it");
            }
        }
    }

    async fn failed(&self, error: &ApiError) {
        self.settle(0).await;
        let payload = EventPayload::ChatCompletionFailed(ChatCompletionFailed {
            call: self.call(),
            status: error.status.as_u16(),
            error_code: error.code.clone(),
        });
        self.gateway
            .emit(
                payload,
                self.key.org_id,
                self.actor.clone(),
                &self.request_id,
            )
            .await;
    }

    async fn succeeded(
        &self,
        provider: &str,
        upstream_model: &str,
        usage: Usage,
        ttft: Option<Duration>,
        disconnected: bool,
    ) {
        self.settle(usage.total_tokens).await;
        let payload = EventPayload::ChatCompletionSucceeded(ChatCompletionSucceeded {
            call: self.call(),
            provider: provider.to_string(),
            upstream_model: upstream_model.to_string(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            cost_micros: self
                .model
                .cost_micros(usage.prompt_tokens, usage.completion_tokens),
            time_to_first_token_ms: ttft.map(|t| t.as_millis() as u64),
            client_disconnected: disconnected,
        });
        self.gateway
            .emit(
                payload,
                self.key.org_id,
                self.actor.clone(),
                &self.request_id,
            )
            .await;
    }
}

async fn chat(
    gateway: Arc<Gateway>,
    principal: Principal,
    request_id: String,
    ip: Option<String>,
    mut body: Value,
    force_stream: bool,
) -> Result<Response, ApiError> {
    let key = caller(&principal)?;
    principal.require("chat:write")?;
    validate(&body)?;
    let name = body["model"].as_str().unwrap_or_default();
    let model = gateway.catalog().get(name).cloned().ok_or_else(|| {
        ApiError::not_found(format!(
            "The model {name:?} does not exist; GET /api/v1/models lists the available ones."
        ))
        .with_code("model_not_found")
        .with_param("model")
    })?;
    let plan = platform::plans::plan(&key.plan).unwrap_or(&platform::plans::PLANS[0]);
    if !plan.serves_tier(&model.tier) {
        return Err(ApiError::forbidden(
            "model_not_in_plan",
            format!(
                "{} is a {} model; the {} plan serves {} models. Upgrade the subscription to use it.",
                model.name, model.tier, plan.name, plan.model_tier
            ),
        )
        .with_param("model"));
    }
    let streamed = force_stream || body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let mut record = CallRecord {
        gateway: gateway.clone(),
        key,
        actor: principal.actor(ip),
        request_id,
        model,
        streamed,
        attempts: Vec::new(),
        started: Instant::now(),
        reservation: None,
    };
    // Hold the call's tokens against the monthly quota; its completion budget goes upstream as
    // max_tokens, so it cannot use more than it holds.
    let wanted = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|f| body[*f].as_i64())
        .filter(|n| *n > 0);
    let reservation = match gateway
        .quota
        .reserve(
            record.key.org_id,
            plan,
            quota::prompt_upper_bound(&body),
            wanted,
            gateway.clock.now(),
        )
        .await
    {
        Ok(reservation) => reservation,
        Err(error) => {
            record.failed(&error).await;
            return Err(error);
        }
    };
    body["max_tokens"] = json!(reservation.completion_budget);
    if !body["max_completion_tokens"].is_null() {
        body["max_completion_tokens"] = json!(reservation.completion_budget);
    }
    let tokens_left = reservation.remaining;
    record.reservation = Some(reservation);
    let deadline = record.started + gateway.config.deadline;
    let mut chosen = None;
    let model = record.model.clone();
    for step in gateway.plan(&model) {
        let (deployment, provider) = (step.deployment, step.provider);
        if step.skipped() {
            record
                .attempts
                .push(attempt(deployment, "circuit_open", Duration::ZERO));
            continue;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let tried = Instant::now();
        let timeout = gateway.config.upstream_timeout.min(remaining);
        match upstream::send(
            &gateway.http,
            provider,
            &deployment.upstream_model,
            &body,
            streamed,
            timeout,
        )
        .await
        {
            Ok(response) => {
                gateway.record(deployment, true);
                record
                    .attempts
                    .push(attempt(deployment, "ok", tried.elapsed()));
                chosen = Some((deployment.clone(), provider.clone(), response));
                break;
            }
            Err(Failure::Retryable { outcome, .. }) => {
                gateway.record(deployment, false);
                record
                    .attempts
                    .push(attempt(deployment, &outcome, tried.elapsed()));
            }
            Err(Failure::Rejected { status, message }) => {
                record.attempts.push(attempt(
                    deployment,
                    &format!("http_{status}"),
                    tried.elapsed(),
                ));
                let error = ApiError::bad_request(
                    "provider_rejected",
                    format!("The model provider rejected the request: {message}"),
                );
                record.failed(&error).await;
                return Err(error);
            }
        }
    }
    let Some((deployment, provider, response)) = chosen else {
        let error = exhausted(&record.attempts);
        record.failed(&error).await;
        return Err(error);
    };
    let provider_name = provider.name.clone();
    if !streamed {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let upstream_body = match tokio::time::timeout(remaining, response.json::<Value>()).await {
            Ok(Ok(value)) if value.is_object() => value,
            _ => {
                let error = ApiError::bad_gateway("The model provider's answer could not be read.");
                record.failed(&error).await;
                return Err(error);
            }
        };
        let format = wire::of(&provider);
        let usage = format.usage(&upstream_body).unwrap_or_default();
        let out = format.response(upstream_body, &Reply::new(&record.model.name));
        record
            .succeeded(
                &provider_name,
                &deployment.upstream_model,
                usage,
                None,
                false,
            )
            .await;
        let mut response = axum::Json(out).into_response();
        if let Ok(value) = HeaderValue::from_str(&provider_name) {
            response.headers_mut().insert("x-aihub-provider", value);
        }
        insert_remaining(&mut response, tokens_left);
        return Ok(response);
    }

    let (tx, rx) = mpsc::channel::<String>(64);
    let format = wire::of(&provider);
    tokio::spawn(async move {
        relay_stream(
            record,
            response,
            tx,
            format,
            include_usage,
            provider_name,
            deployment.upstream_model,
        )
        .await;
    });
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
    if let Ok(value) = HeaderValue::from_str(&provider.name) {
        headers.insert("x-aihub-provider", value);
    }
    insert_remaining(&mut response, tokens_left);
    Ok(response)
}

/// Reads the upstream stream to its end — even after the client left, so the call is billed —
/// relaying each chunk in OpenAI's format with the public model name.
async fn relay_stream(
    record: CallRecord,
    response: reqwest::Response,
    tx: mpsc::Sender<String>,
    format: &'static dyn WireFormat,
    include_usage: bool,
    provider: String,
    upstream_model: String,
) {
    let mut data = Box::pin(upstream::sse_data(Box::pin(response.bytes_stream())));
    let reply = Reply::new(&record.model.name);
    let (mut usage, mut ttft, mut first, mut disconnected, mut failure) =
        (None, None, true, false, None);
    while let Some(item) = data.next().await {
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
        let chunks = format.chunks(event, &reply, first);
        for chunk in chunks {
            // The usage chunk goes only to a client that asked for it.
            let usage_only = chunk["choices"].as_array().is_some_and(|c| c.is_empty());
            if usage_only && !include_usage {
                continue;
            }
            if ttft.is_none() {
                ttft = Some(record.started.elapsed());
            }
            first = false;
            let line = format!("data: {chunk}\n\n");
            // A client that went away is not waited for; the upstream is still read to the end.
            if !disconnected && tx.send(line).await.is_err() {
                disconnected = true;
            }
        }
    }
    if let Some(reason) = failure {
        tracing::warn!(error = %reason, "upstream stream broke");
        let error = ApiError::bad_gateway("The model provider's stream broke off.")
            .with_code("upstream_stream_error");
        if !disconnected {
            let body = json!({"error": {"message": error.message, "type": error.kind, "code": error.code, "param": null}});
            let _ = tx.send(format!("data: {body}\n\n")).await;
        }
        record.failed(&error).await;
        return;
    }
    let usage = usage.unwrap_or_default();
    if include_usage && !disconnected {
        if let Some(chunk) = format.usage_chunk(usage, &reply) {
            let _ = tx.send(format!("data: {chunk}\n\n")).await;
        }
    }
    if !disconnected {
        disconnected = tx.send("data: [DONE]\n\n".to_string()).await.is_err();
    }
    record
        .succeeded(&provider, &upstream_model, usage, ttft, disconnected)
        .await;
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

fn attempt(deployment: &super::catalog::Deployment, outcome: &str, took: Duration) -> Attempt {
    Attempt {
        provider: deployment.provider.clone(),
        upstream_model: deployment.upstream_model.clone(),
        outcome: outcome.to_string(),
        latency_ms: took.as_millis() as u64,
    }
}

/// The error once every deployment was tried: 429 when all were rate limited, 504 when the last
/// timed out, 503 when none could be tried, 502 otherwise.
fn exhausted(attempts: &[Attempt]) -> ApiError {
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
        let mut error = ApiError::bad_gateway("The model provider did not answer in time.");
        error.status = StatusCode::GATEWAY_TIMEOUT;
        error.code = "upstream_timeout".into();
        return error;
    }
    ApiError::bad_gateway("Every provider of this model failed; try again shortly.")
}

/// Models with a configured provider, in the tiers the caller's plan serves.
fn available<'a>(
    gateway: &'a Gateway,
    catalog: &'a Catalog,
    principal: &Principal,
) -> impl Iterator<Item = &'a Model> + 'a {
    let plan = principal.key().and_then(|k| platform::plans::plan(&k.plan));
    catalog.models.iter().filter(move |m| {
        plan.is_none_or(|p| p.serves_tier(&m.tier))
            && m.deployments
                .iter()
                .any(|d| gateway.provider(&d.provider).is_some())
    })
}

/// OpenAI's list shape, so the OpenAI SDKs' `models.list()` works.
async fn models(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
) -> Result<axum::Json<Value>, ApiError> {
    principal.require("models:read")?;
    let catalog = gateway.catalog();
    let data: Vec<Value> = available(&gateway, &catalog, &principal)
        .map(|m| json!({"id": m.name, "object": "model", "created": 0, "owned_by": m.deployments[0].provider}))
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data})))
}

/// The models the caller may use, with providers, context length and prices.
async fn chat_models(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
) -> Result<axum::Json<Value>, ApiError> {
    principal.require("models:read")?;
    let catalog = gateway.catalog();
    let data: Vec<Value> = available(&gateway, &catalog, &principal)
        .map(|m| {
            let providers: Vec<&str> = m
                .deployments
                .iter()
                .filter(|d| gateway.provider(&d.provider).is_some())
                .map(|d| d.provider.as_str())
                .collect();
            json!({
                "id": m.name,
                "object": "model",
                "tier": m.tier,
                "context_length": m.context_length,
                "providers": providers,
                "pricing": {
                    "input_usd_per_million_tokens": m.input_micros_per_mtok as f64 / 1e6,
                    "output_usd_per_million_tokens": m.output_micros_per_mtok as f64 / 1e6,
                },
            })
        })
        .collect();
    Ok(axum::Json(
        json!({"object": "list", "data": data, "next_cursor": null}),
    ))
}
