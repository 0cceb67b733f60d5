//! Audit log: one row per event, whatever its type. Nothing else writes audit rows.
//!
//! A batch is written in one statement (a `Fold`): the gateway's chat calls are most of the
//! topic, and one `INSERT` per event cost Postgres more than everything else the projection
//! does (issue 17: 98,000 single-row inserts took 16 s of a 45 s run's database time). Each
//! envelope is serialized once, as text, and stored as `json`; a chat call's `data` is not
//! stored apart from it (migration 0033), every other event's is.

use futures::future::{BoxFuture, FutureExt};
use uuid::Uuid;

use events::EventEnvelope;

use crate::{Fold, Projection, Sql};

pub struct Audit;

const INSERT: &str =
    "INSERT INTO read.audit_log (event_id, event_type, org_id, stream_id, stream_version,
         actor_type, actor_id, actor_ip, correlation_id, causation_id, occurred_at, data, chain_seq,
         chain_hash, envelope)
     SELECT id, kind, org, stream, version, actor_type, actor_id, actor_ip, correlation, causation,
            occurred, data::jsonb, seq, hash, envelope::json
     FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::bigint[], $6::text[],
                 $7::text[], $8::text[], $9::text[], $10::uuid[], $11::timestamptz[],
                 $12::text[], $13::bigint[], $14::text[], $15::text[])
          AS e(id, kind, org, stream, version, actor_type, actor_id, actor_ip, correlation,
               causation, occurred, data, seq, hash, envelope)
     ON CONFLICT (event_id) DO NOTHING";

impl Projection for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read.audit_log"]
    }

    fn opens_personal_data(&self) -> bool {
        false
    }

    /// A chat call's row is written `ON CONFLICT (event_id) DO NOTHING`: a second copy changes
    /// nothing, and no command waits for a call's audit row.
    fn marks(&self, event_type: &str) -> bool {
        !events::chat::is_call(event_type)
    }

    fn statements(&self, _event: &EventEnvelope) -> Vec<Sql> {
        vec![]
    }

    fn fold(&self) -> Option<&dyn Fold> {
        Some(&Rows)
    }
}

/// The batch's audit rows, column by column.
struct Rows;

impl Fold for Rows {
    fn apply<'a>(
        &'a self,
        tx: &'a platform::db::Transaction<'a>,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            if events.is_empty() {
                return Ok(());
            }
            let n = events.len();
            let mut ids: Vec<Uuid> = Vec::with_capacity(n);
            let mut kinds: Vec<&str> = Vec::with_capacity(n);
            let mut orgs: Vec<Option<Uuid>> = Vec::with_capacity(n);
            let mut streams: Vec<&str> = Vec::with_capacity(n);
            let mut versions: Vec<i64> = Vec::with_capacity(n);
            let mut actor_types: Vec<String> = Vec::with_capacity(n);
            let mut actor_ids: Vec<&str> = Vec::with_capacity(n);
            let mut actor_ips: Vec<Option<&str>> = Vec::with_capacity(n);
            let mut correlations: Vec<&str> = Vec::with_capacity(n);
            let mut causations: Vec<Option<Uuid>> = Vec::with_capacity(n);
            let mut occurred: Vec<chrono::DateTime<chrono::Utc>> = Vec::with_capacity(n);
            let mut seqs: Vec<Option<i64>> = Vec::with_capacity(n);
            let mut hashes: Vec<Option<&str>> = Vec::with_capacity(n);
            let mut data: Vec<Option<String>> = Vec::with_capacity(n);
            let mut envelopes: Vec<String> = Vec::with_capacity(n);
            for event in events {
                ids.push(event.event_id);
                kinds.push(event.event_type());
                orgs.push(event.org_id);
                streams.push(event.stream_id.as_str());
                versions.push(event.stream_version);
                actor_types.push(
                    serde_json::to_value(event.actor.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                );
                actor_ids.push(&event.actor.id);
                actor_ips.push(event.actor.ip.as_deref());
                correlations.push(&event.correlation_id);
                causations.push(event.causation_id);
                occurred.push(*event.occurred_at);
                seqs.push(event.chain.as_ref().map(|c| c.seq));
                hashes.push(event.chain.as_ref().map(|c| c.hash.as_str()));
                // A chat call's data is read from its envelope (migration 0033); other events
                // keep theirs apart too, for the queries that read their fields.
                if events::chat::is_call(event.event_type()) {
                    data.push(None);
                    envelopes.push(serde_json::to_string(event)?);
                } else {
                    let envelope = serde_json::to_value(event)?;
                    data.push(Some(envelope["data"].to_string()));
                    envelopes.push(envelope.to_string());
                }
            }
            let insert = tx.prepare_cached(INSERT).await?;
            tx.execute(
                &insert,
                &[
                    &ids,
                    &kinds,
                    &orgs,
                    &streams,
                    &versions,
                    &actor_types,
                    &actor_ids,
                    &actor_ips,
                    &correlations,
                    &causations,
                    &occurred,
                    &data,
                    &seqs,
                    &hashes,
                    &envelopes,
                ],
            )
            .await?;
            Ok(())
        }
        .boxed()
    }
}
