//! One chat call as its event will tell it: who made it, for which model, every attempt, and the
//! tokens it holds against the quota. Every call ends in exactly one event, succeeded or failed,
//! which also settles its reservation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::chat::{Attempt, ChatCall, ChatCompletionFailed, ChatCompletionSucceeded};
use events::{Actor, EventPayload};
use platform::auth::KeyPrincipal;
use platform::plans::Plan;
use platform::ratelimit::{RateLimiter, Ticket};

use crate::limits::StreamSlot;
use platform::ApiError;

use super::request::ChatRequest;
use crate::catalog::{Deployment, Model};
use crate::quota::Reservation;
use crate::wire::Usage;
use crate::Gateway;

pub struct Call {
    pub gateway: Arc<Gateway>,
    pub key: KeyPrincipal,
    pub actor: Actor,
    pub request_id: String,
    pub model: Model,
    pub streamed: bool,
    pub attempts: Vec<Attempt>,
    pub started: Instant,
    /// The tokens held for this call, settled when it ends.
    reservation: Option<Reservation>,
    /// Counts the call as under way while it lives.
    _in_flight: crate::InFlightGuard,
    /// The tokens per minute it was admitted with, to give back what it did not use.
    rate: Option<(Arc<RateLimiter>, Ticket)>,
    /// Its place under the cap of open streams, freed when the call ends.
    _stream: Option<StreamSlot>,
}

/// How the call was served, for its success event.
pub struct Served<'a> {
    pub provider: &'a str,
    pub upstream_model: &'a str,
    pub usage: Usage,
    pub time_to_first_token: Option<Duration>,
    pub client_disconnected: bool,
    /// The usage is the gateway's estimate (the provider reported none before the end).
    pub usage_estimated: bool,
}

impl Call {
    pub fn new(
        gateway: Arc<Gateway>,
        key: KeyPrincipal,
        actor: Actor,
        request_id: String,
        model: Model,
        streamed: bool,
    ) -> Self {
        Self {
            key,
            actor,
            request_id,
            model,
            streamed,
            attempts: Vec::new(),
            started: Instant::now(),
            reservation: None,
            rate: None,
            _stream: None,
            _in_flight: gateway.in_flight.enter(),
            gateway,
        }
    }

    pub fn hold_limits(
        &mut self,
        rate: Option<(Arc<RateLimiter>, Ticket)>,
        stream: Option<StreamSlot>,
    ) {
        self.rate = rate;
        self._stream = stream;
    }

    /// When the whole call must be over, failover included.
    pub fn deadline(&self) -> Instant {
        self.started + self.gateway.config.deadline
    }

    /// Holds the call's tokens against the monthly quota (429 `insufficient_quota` when they
    /// are not there) and caps the request's completion at the budget granted. The allowance
    /// left after it; `None` for an unlimited plan.
    pub async fn reserve(
        &mut self,
        plan: &Plan,
        request: &mut ChatRequest,
    ) -> Result<Option<i64>, ApiError> {
        let gateway = &self.gateway;
        let reservation = gateway
            .quota
            .reserve(
                self.key.org_id,
                plan,
                request.prompt_bound(),
                request.wanted_completion(),
                gateway.clock.now(),
            )
            .await?;
        request.limit_completion(reservation.completion_budget);
        let remaining = reservation.remaining;
        self.reservation = Some(reservation);
        Ok(remaining)
    }

    pub fn attempted(&mut self, deployment: &Deployment, outcome: &str, took: Duration) {
        if outcome != "circuit_open" {
            platform::metrics::UPSTREAM_SECONDS
                .with_label_values(&[&deployment.provider, outcome])
                .observe(took.as_secs_f64());
        }
        if outcome != "ok" && outcome != "circuit_open" {
            self.gateway.last_error(deployment, outcome);
        }
        self.attempts.push(attempt(deployment, outcome, took));
    }

    /// Passes `result` on, ending the call as failed when it is an error.
    pub async fn check<T>(&self, result: Result<T, ApiError>) -> Result<T, ApiError> {
        if let Err(error) = &result {
            self.failed(error).await;
        }
        result
    }

    pub async fn failed(&self, error: &ApiError) {
        self.settle(0).await;
        platform::metrics::CHAT_CALLS
            .with_label_values(&[&self.model.name, "none", &error.code])
            .inc();
        let payload = EventPayload::ChatCompletionFailed(ChatCompletionFailed {
            call: self.call(),
            status: error.status.as_u16(),
            error_code: error.code.clone(),
        });
        self.emit(payload).await;
    }

    pub async fn succeeded(&self, served: Served<'_>) {
        let usage = served.usage;
        self.settle(usage.total_tokens).await;
        let cost_micros = self
            .model
            .cost_micros(usage.prompt_tokens, usage.completion_tokens);
        let (model, provider) = (self.model.name.as_str(), served.provider);
        platform::metrics::CHAT_CALLS
            .with_label_values(&[model, provider, "ok"])
            .inc();
        for (kind, tokens) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            platform::metrics::CHAT_TOKENS
                .with_label_values(&[model, provider, kind])
                .inc_by(tokens);
        }
        platform::metrics::CHAT_COST
            .with_label_values(&[model, provider])
            .inc_by(u64::try_from(cost_micros).unwrap_or(0));
        let payload = EventPayload::ChatCompletionSucceeded(ChatCompletionSucceeded {
            call: self.call(),
            provider: served.provider.to_string(),
            upstream_model: served.upstream_model.to_string(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            cost_micros,
            time_to_first_token_ms: served.time_to_first_token.map(|t| t.as_millis() as u64),
            client_disconnected: served.client_disconnected,
            usage_estimated: served.usage_estimated,
        });
        self.emit(payload).await;
    }

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

    /// Replaces the call's token reservation by what it used, and gives the tokens per minute
    /// it did not use back.
    async fn settle(&self, used: u64) {
        if let Some((rate, ticket)) = &self.rate {
            rate.give_back(ticket, ticket.tokens().saturating_sub(used))
                .await;
        }
        if let Some(reservation) = &self.reservation {
            if let Err(e) = self.gateway.quota.settle(reservation, used as i64).await {
                tracing::error!(error = %e, "settling a quota reservation failed; the sweep will release it");
            }
        }
    }

    async fn emit(&self, payload: EventPayload) {
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

pub fn attempt(deployment: &Deployment, outcome: &str, took: Duration) -> Attempt {
    Attempt {
        provider: deployment.provider.clone(),
        upstream_model: deployment.upstream_model.clone(),
        outcome: outcome.to_string(),
        latency_ms: took.as_millis() as u64,
    }
}
