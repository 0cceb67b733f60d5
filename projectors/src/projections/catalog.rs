//! Catalog read model: the models imported by `aihub models sync`. Every `catalog.synced`
//! carries the provider's whole list, so applying one replaces the provider's rows.

use events::{EventEnvelope, EventPayload};

use crate::{Projection, Sql};

pub struct Catalog;

/// Rows of older syncs go, this sync's list replaces them; an event older than the rows present
/// changes nothing.
const DELETE_OLDER: &str = "DELETE FROM read.catalog_models WHERE provider = $1 AND version < $2";

const INSERT: &str =
    "INSERT INTO read.catalog_models (provider, name, upstream_model, context_length,
        input_micros_per_mtok, output_micros_per_mtok, tier, version, synced_at)
    SELECT $1, m.name, m.upstream_model, m.context_length, m.input, m.output, m.tier, $2, $3
    FROM unnest($4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[])
        AS m(name, upstream_model, context_length, input, output, tier)
    WHERE NOT EXISTS (SELECT 1 FROM read.catalog_models WHERE provider = $1 AND version >= $2)";

impl Projection for Catalog {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read.catalog_models"]
    }

    fn handles(&self, event_type: &str) -> bool {
        event_type == "catalog.synced"
    }

    fn statements(&self, event: &EventEnvelope) -> Vec<Sql> {
        let EventPayload::CatalogSynced(synced) = &event.payload else {
            return vec![];
        };
        let entries = &synced.entries;
        let column = |f: fn(&events::catalog::CatalogEntry) -> String| -> Vec<String> {
            entries.iter().map(f).collect()
        };
        let number = |f: fn(&events::catalog::CatalogEntry) -> i64| -> Vec<i64> {
            entries.iter().map(f).collect()
        };
        vec![
            Sql::new(
                DELETE_OLDER,
                vec![
                    Box::new(synced.provider.clone()),
                    Box::new(event.stream_version),
                ],
            ),
            Sql::new(
                INSERT,
                vec![
                    Box::new(synced.provider.clone()),
                    Box::new(event.stream_version),
                    Box::new(*event.occurred_at),
                    Box::new(column(|e| e.name.clone())),
                    Box::new(column(|e| e.upstream_model.clone())),
                    Box::new(number(|e| {
                        i64::try_from(e.context_length).unwrap_or(i64::MAX)
                    })),
                    Box::new(number(|e| e.input_micros_per_mtok)),
                    Box::new(number(|e| e.output_micros_per_mtok)),
                    Box::new(column(|e| e.tier.clone())),
                ],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use events::catalog::{CatalogEntry, CatalogSynced};
    use events::Actor;

    use super::*;

    fn synced(version: i64) -> EventEnvelope {
        let entry = CatalogEntry {
            name: "openai/gpt-4o".into(),
            upstream_model: "openai/gpt-4o".into(),
            context_length: 128_000,
            input_micros_per_mtok: 2_500_000,
            output_micros_per_mtok: 10_000_000,
            tier: "advanced".into(),
        };
        EventEnvelope::new(
            EventPayload::CatalogSynced(CatalogSynced {
                provider: "openrouter".into(),
                added: vec![entry.clone()],
                changed: vec![],
                removed: vec![],
                entries: vec![entry],
            }),
            None,
            events::StreamId::catalog("openrouter"),
            version,
            Actor::system(),
            "t".into(),
        )
    }

    #[test]
    fn a_sync_replaces_the_providers_rows_guarded_by_version() {
        let sql = Catalog.statements(&synced(3));
        assert_eq!(sql.len(), 2);
        assert!(sql[0].text.starts_with("DELETE") && sql[0].text.contains("version < $2"));
        assert!(
            sql[1].text.contains("version >= $2"),
            "an older sync must not come back"
        );
        assert_eq!(sql[1].params.len(), 9);
    }

    #[test]
    fn other_events_change_nothing() {
        let other = EventEnvelope::new(
            EventPayload::DowngradeCancelled(events::billing::DowngradeCancelled {
                to_plan: "pro".into(),
            }),
            Some(uuid::Uuid::now_v7()),
            events::StreamId::subscription(uuid::Uuid::now_v7().into()),
            1,
            Actor::system(),
            "t".into(),
        );
        assert!(Catalog.statements(&other).is_empty());
    }
}
