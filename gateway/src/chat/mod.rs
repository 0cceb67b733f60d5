//! `POST /chat/completions` and `POST /chat/stream`: authorize, check the request, gate the model
//! by plan, hold the tokens, find a deployment that answers, shape the answer. Each step is a
//! module of its own; the handler only puts them in order.

pub mod call;
pub mod dispatch;
pub mod request;
pub mod respond;

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use platform::http::{ClientIp, Json, RequestId};
use platform::{ApiError, Principal};
use serde_json::Value;

use crate::access::{self, Action};
use crate::Gateway;
use call::Call;
use request::ChatRequest;

pub async fn completions(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    chat(gateway, principal, request_id, ip, body, false).await
}

pub async fn stream(
    State(gateway): State<Arc<Gateway>>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ClientIp(ip): ClientIp,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    chat(gateway, principal, request_id, ip, body, true).await
}

/// Refusals before the call is made (403, 400, 404) end in no event; from the quota on, every
/// outcome is the call's one event.
async fn chat(
    gateway: Arc<Gateway>,
    principal: Principal,
    request_id: String,
    ip: Option<String>,
    body: Value,
    force_stream: bool,
) -> Result<Response, ApiError> {
    let key = access::tenant(&principal)?;
    access::authorize(&principal, Action::Chat)?;
    let mut request = ChatRequest::parse(body, force_stream)?;
    let model = crate::models::find(&gateway.catalog(), &request.model)?;
    let plan = access::plan_of(&key)?;
    access::gate(plan, &model)?;

    let actor = principal.actor(ip);
    let mut call = Call::new(gateway, key, actor, request_id, model, request.streamed);
    let reserved = call.reserve(plan, &mut request).await;
    let tokens_left = call.check(reserved).await?;
    let answer = dispatch::first_answer(&mut call, &request).await;
    let answer = call.check(answer).await?;
    respond::respond(call, answer, &request, tokens_left).await
}
