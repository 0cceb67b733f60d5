//! Usage read model: one row per chat call, with tokens and cost, for usage statistics, export
//! and billing.
//!
//! A batch's calls are written in one statement (a `Fold`), not one `INSERT` each: the calls are
//! most of the topic (issue 17).

use futures::future::{BoxFuture, FutureExt};
use uuid::Uuid;

use events::{EventEnvelope, EventPayload};

use crate::{Fold, Projection, Sql};

pub struct Usage;

const INSERT: &str = "INSERT INTO read.chat_calls (event_id, org_id, request_id, api_key_id, team_id, user_id, model,
        provider, upstream_model, outcome, status, streamed, attempts, prompt_tokens, completion_tokens, total_tokens,
        cost_micros, latency_ms, occurred_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[],
        $8::text[], $9::text[], $10::text[], $11::int[], $12::bool[], $13::int[], $14::bigint[], $15::bigint[],
        $16::bigint[], $17::bigint[], $18::bigint[], $19::timestamptz[])
    ON CONFLICT (event_id) DO NOTHING";

impl Projection for Usage {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read.chat_calls"]
    }

    fn statements(&self, _event: &EventEnvelope) -> Vec<Sql> {
        vec![]
    }

    fn fold(&self) -> Option<&dyn Fold> {
        Some(&Calls)
    }

    /// A call's row is written `ON CONFLICT (event_id) DO NOTHING`: a second copy changes
    /// nothing, and no command waits for it.
    fn marks(&self, event_type: &str) -> bool {
        !events::chat::is_call(event_type)
    }
}

/// The batch's chat calls, column by column.
struct Calls;

/// One call's row.
struct Call<'a> {
    event: &'a EventEnvelope,
    org_id: Uuid,
    call: &'a events::chat::ChatCall,
    provider: Option<&'a str>,
    upstream_model: Option<&'a str>,
    outcome: &'static str,
    status: i32,
    tokens: [i64; 3],
    cost_micros: i64,
}

fn call(event: &EventEnvelope) -> Option<Call<'_>> {
    let org_id = event.org_id?;
    let row = match &event.payload {
        EventPayload::ChatCompletionSucceeded(e) => Call {
            event,
            org_id,
            call: &e.call,
            provider: Some(&e.provider),
            upstream_model: Some(&e.upstream_model),
            outcome: "succeeded",
            status: 200,
            tokens: [e.prompt_tokens, e.completion_tokens, e.total_tokens]
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            cost_micros: e.cost_micros,
        },
        EventPayload::ChatCompletionFailed(e) => Call {
            event,
            org_id,
            call: &e.call,
            provider: None,
            upstream_model: None,
            outcome: "failed",
            status: i32::from(e.status),
            tokens: [0, 0, 0],
            cost_micros: 0,
        },
        _ => return None,
    };
    Some(row)
}

impl Fold for Calls {
    fn apply<'a>(
        &'a self,
        tx: &'a platform::db::Transaction<'a>,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let calls: Vec<Call<'_>> = events.iter().filter_map(|e| call(e)).collect();
            if calls.is_empty() {
                return Ok(());
            }
            let column = |f: &dyn Fn(&Call<'_>) -> i64| calls.iter().map(f).collect::<Vec<i64>>();
            let event_ids: Vec<Uuid> = calls.iter().map(|c| c.event.event_id).collect();
            let org_ids: Vec<Uuid> = calls.iter().map(|c| c.org_id).collect();
            let request_ids: Vec<&str> = calls.iter().map(|c| c.call.request_id.as_str()).collect();
            let api_key_ids: Vec<Option<Uuid>> = calls.iter().map(|c| c.call.api_key_id).collect();
            let team_ids: Vec<Option<Uuid>> = calls.iter().map(|c| c.call.team_id).collect();
            let user_ids: Vec<Option<Uuid>> = calls.iter().map(|c| c.call.user_id).collect();
            let models: Vec<&str> = calls.iter().map(|c| c.call.model.as_str()).collect();
            let providers: Vec<Option<&str>> = calls.iter().map(|c| c.provider).collect();
            let upstreams: Vec<Option<&str>> = calls.iter().map(|c| c.upstream_model).collect();
            let outcomes: Vec<&str> = calls.iter().map(|c| c.outcome).collect();
            let statuses: Vec<i32> = calls.iter().map(|c| c.status).collect();
            let streamed: Vec<bool> = calls.iter().map(|c| c.call.streamed).collect();
            let attempts: Vec<i32> = calls.iter().map(|c| c.call.attempts.len() as i32).collect();
            let prompt = column(&|c| c.tokens[0]);
            let completion = column(&|c| c.tokens[1]);
            let total = column(&|c| c.tokens[2]);
            let cost = column(&|c| c.cost_micros);
            let latency = column(&|c| i64::try_from(c.call.latency_ms).unwrap_or(i64::MAX));
            let occurred: Vec<chrono::DateTime<chrono::Utc>> =
                calls.iter().map(|c| *c.event.occurred_at).collect();
            let insert = tx.prepare_cached(INSERT).await?;
            tx.execute(
                &insert,
                &[
                    &event_ids,
                    &org_ids,
                    &request_ids,
                    &api_key_ids,
                    &team_ids,
                    &user_ids,
                    &models,
                    &providers,
                    &upstreams,
                    &outcomes,
                    &statuses,
                    &streamed,
                    &attempts,
                    &prompt,
                    &completion,
                    &total,
                    &cost,
                    &latency,
                    &occurred,
                ],
            )
            .await?;
            Ok(())
        }
        .boxed()
    }
}
