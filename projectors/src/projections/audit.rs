//! Audit log: one row per event, whatever its type. Nothing else writes audit rows.

use events::EventEnvelope;

use crate::{Projection, Sql};

pub struct Audit;

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

    fn statements(&self, event: &EventEnvelope) -> Vec<Sql> {
        let data = serde_json::to_value(&event.payload)
            .ok()
            .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
            .unwrap_or(serde_json::Value::Null);
        let actor_type = serde_json::to_value(event.actor.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        vec![Sql::new(
            "INSERT INTO read.audit_log (event_id, event_type, org_id, stream_id, stream_version, actor_type,
                 actor_id, actor_ip, correlation_id, causation_id, occurred_at, data, chain_seq, chain_hash,
                 envelope)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            vec![
                Box::new(event.event_id),
                Box::new(event.event_type().to_string()),
                Box::new(event.org_id),
                Box::new(event.stream_id.to_string()),
                Box::new(event.stream_version),
                Box::new(actor_type),
                Box::new(event.actor.id.clone()),
                Box::new(event.actor.ip.clone()),
                Box::new(event.correlation_id.clone()),
                Box::new(event.causation_id),
                Box::new(*event.occurred_at),
                Box::new(data),
                Box::new(event.chain.as_ref().map(|c| c.seq)),
                Box::new(event.chain.as_ref().map(|c| c.hash.clone())),
                Box::new(serde_json::to_value(event).unwrap_or_default()),
            ],
        )]
    }
}
