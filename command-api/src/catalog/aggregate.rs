//! The imported catalog of one provider, as a pure aggregate: its state is the entries of the
//! last `catalog.synced`, and a sync decides the difference between that and a fresh list.

use std::collections::BTreeMap;
use std::convert::Infallible;

use events::catalog::{CatalogChange, CatalogEntry, CatalogSynced};
use events::{EventEnvelope, EventPayload};

use crate::command::Aggregate;

/// The stream holding a provider's imported catalog.
pub fn stream_id(provider: &str) -> events::StreamId {
    events::StreamId::catalog(provider)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportedCatalog {
    pub entries: BTreeMap<String, CatalogEntry>,
}

/// A freshly imported list of `provider`'s models.
#[derive(Debug, Clone)]
pub struct Import {
    pub provider: String,
    pub entries: Vec<CatalogEntry>,
}

impl Aggregate for ImportedCatalog {
    type Command = Import;
    type Error = Infallible;

    /// The `catalog.synced` recording how the import differs from the current state; none when
    /// it does not. A name listed twice keeps its first entry.
    fn decide(&self, import: Import) -> Result<Vec<EventPayload>, Infallible> {
        let mut fresh: BTreeMap<String, CatalogEntry> = BTreeMap::new();
        for entry in import.entries {
            fresh.entry(entry.name.clone()).or_insert(entry);
        }
        let mut added = Vec::new();
        let mut changed = Vec::new();
        for (name, after) in &fresh {
            match self.entries.get(name) {
                None => added.push(after.clone()),
                Some(before) if before != after => changed.push(CatalogChange {
                    before: before.clone(),
                    after: after.clone(),
                }),
                Some(_) => {}
            }
        }
        let removed: Vec<String> = self
            .entries
            .keys()
            .filter(|name| !fresh.contains_key(*name))
            .cloned()
            .collect();
        if added.is_empty() && changed.is_empty() && removed.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![EventPayload::CatalogSynced(CatalogSynced {
            provider: import.provider,
            added,
            changed,
            removed,
            entries: fresh.into_values().collect(),
        })])
    }

    fn apply(self, event: &EventEnvelope) -> Self {
        match &event.payload {
            EventPayload::CatalogSynced(synced) => Self {
                entries: synced
                    .entries
                    .iter()
                    .map(|e| (e.name.clone(), e.clone()))
                    .collect(),
            },
            _ => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::given;

    fn entry(name: &str, input: i64, output: i64) -> CatalogEntry {
        CatalogEntry {
            name: name.into(),
            upstream_model: name.into(),
            context_length: 8192,
            input_micros_per_mtok: input,
            output_micros_per_mtok: output,
            tier: "basic".into(),
        }
    }

    fn import(entries: Vec<CatalogEntry>) -> Import {
        Import {
            provider: "openrouter".into(),
            entries,
        }
    }

    fn synced(
        added: Vec<CatalogEntry>,
        changed: Vec<CatalogChange>,
        removed: Vec<&str>,
        entries: Vec<CatalogEntry>,
    ) -> EventPayload {
        EventPayload::CatalogSynced(CatalogSynced {
            provider: "openrouter".into(),
            added,
            changed,
            removed: removed.into_iter().map(Into::into).collect(),
            entries,
        })
    }

    /// The catalog after a first sync of `entries`, in name order.
    fn first_sync(entries: Vec<CatalogEntry>) -> Vec<EventPayload> {
        vec![synced(entries.clone(), vec![], vec![], entries)]
    }

    #[test]
    fn a_first_sync_adds_everything() {
        let (a, b) = (entry("a/m", 1, 1), entry("b/m", 2, 3));
        given::<ImportedCatalog>(vec![])
            .when(import(vec![b.clone(), a.clone()]))
            .then(vec![synced(
                vec![a.clone(), b.clone()],
                vec![],
                vec![],
                vec![a, b],
            )])
            .then_state(|catalog| {
                assert_eq!(catalog.entries.keys().collect::<Vec<_>>(), ["a/m", "b/m"]);
            });
    }

    #[test]
    fn the_same_list_again_decides_nothing() {
        let list = vec![entry("a/m", 1, 1), entry("b/m", 2, 3)];
        let reordered = list.iter().rev().cloned().collect();
        given::<ImportedCatalog>(first_sync(list))
            .when(import(reordered))
            .then(vec![]);
    }

    #[test]
    fn price_changes_and_removals_carry_before_and_after() {
        given::<ImportedCatalog>(first_sync(vec![entry("a/m", 1, 1), entry("b/m", 2, 3)]))
            .when(import(vec![entry("a/m", 1, 5), entry("c/m", 7, 7)]))
            .then(vec![synced(
                vec![entry("c/m", 7, 7)],
                vec![CatalogChange {
                    before: entry("a/m", 1, 1),
                    after: entry("a/m", 1, 5),
                }],
                vec!["b/m"],
                vec![entry("a/m", 1, 5), entry("c/m", 7, 7)],
            )])
            .then_state(|catalog| {
                assert_eq!(catalog.entries.keys().collect::<Vec<_>>(), ["a/m", "c/m"]);
            });
    }

    #[test]
    fn a_duplicate_name_keeps_its_first_entry() {
        given::<ImportedCatalog>(vec![])
            .when(import(vec![entry("a/m", 1, 1), entry("a/m", 9, 9)]))
            .then(vec![synced(
                vec![entry("a/m", 1, 1)],
                vec![],
                vec![],
                vec![entry("a/m", 1, 1)],
            )]);
    }
}
