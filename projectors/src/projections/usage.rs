//! Usage read model: one row per chat call, with tokens and cost, for usage statistics, export
//! and billing.

use events::{EventEnvelope, EventPayload};

use crate::{Projection, Sql};

pub struct Usage;

const INSERT: &str = "INSERT INTO read.chat_calls (event_id, org_id, request_id, api_key_id, team_id, user_id, model,
        provider, upstream_model, outcome, status, streamed, attempts, prompt_tokens, completion_tokens, total_tokens,
        cost_micros, latency_ms, occurred_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
    ON CONFLICT (event_id) DO NOTHING";

impl Projection for Usage {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read.chat_calls"]
    }

    fn statements(&self, event: &EventEnvelope) -> Vec<Sql> {
        let Some(org_id) = event.org_id else {
            return vec![];
        };
        let (call, provider, upstream, outcome, status, tokens, cost) = match &event.payload {
            EventPayload::ChatCompletionSucceeded(e) => (
                &e.call,
                Some(e.provider.clone()),
                Some(e.upstream_model.clone()),
                "succeeded",
                200,
                [e.prompt_tokens, e.completion_tokens, e.total_tokens],
                e.cost_micros,
            ),
            EventPayload::ChatCompletionFailed(e) => (
                &e.call,
                None,
                None,
                "failed",
                i32::from(e.status),
                [0, 0, 0],
                0,
            ),
            _ => return vec![],
        };
        let [prompt, completion, total] = tokens.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        vec![Sql::new(
            INSERT,
            vec![
                Box::new(event.event_id),
                Box::new(org_id),
                Box::new(call.request_id.clone()),
                Box::new(call.api_key_id),
                Box::new(call.team_id),
                Box::new(call.user_id),
                Box::new(call.model.clone()),
                Box::new(provider),
                Box::new(upstream),
                Box::new(outcome),
                Box::new(status),
                Box::new(call.streamed),
                Box::new(call.attempts.len() as i32),
                Box::new(prompt),
                Box::new(completion),
                Box::new(total),
                Box::new(cost),
                Box::new(i64::try_from(call.latency_ms).unwrap_or(i64::MAX)),
                Box::new(*event.occurred_at),
            ],
        )]
    }
}
