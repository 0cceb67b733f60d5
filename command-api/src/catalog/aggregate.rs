//! The imported catalog of one provider, as a pure aggregate: its state is the entries of the
//! last `catalog.synced`, and a sync decides the difference between that and a fresh list.

use std::collections::BTreeMap;

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

impl Aggregate for ImportedCatalog {
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

/// The event recording how `imported` differs from the current state; `None` when it does not.
/// A name listed twice keeps its first entry.
pub fn decide(
    state: &ImportedCatalog,
    provider: &str,
    imported: Vec<CatalogEntry>,
) -> Option<CatalogSynced> {
    let mut fresh: BTreeMap<String, CatalogEntry> = BTreeMap::new();
    for entry in imported {
        fresh.entry(entry.name.clone()).or_insert(entry);
    }
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for (name, after) in &fresh {
        match state.entries.get(name) {
            None => added.push(after.clone()),
            Some(before) if before != after => changed.push(CatalogChange {
                before: before.clone(),
                after: after.clone(),
            }),
            Some(_) => {}
        }
    }
    let removed: Vec<String> = state
        .entries
        .keys()
        .filter(|name| !fresh.contains_key(*name))
        .cloned()
        .collect();
    if added.is_empty() && changed.is_empty() && removed.is_empty() {
        return None;
    }
    Some(CatalogSynced {
        provider: provider.to_string(),
        added,
        changed,
        removed,
        entries: fresh.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use events::Actor;

    use super::*;

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

    fn applied(state: ImportedCatalog, synced: CatalogSynced) -> ImportedCatalog {
        let event = EventEnvelope::new(
            EventPayload::CatalogSynced(synced),
            None,
            stream_id("openrouter"),
            1,
            Actor::system(),
            "test".into(),
        );
        state.apply(&event)
    }

    #[test]
    fn a_first_sync_adds_everything() {
        let synced = decide(
            &ImportedCatalog::default(),
            "openrouter",
            vec![entry("b/m", 2, 3), entry("a/m", 1, 1)],
        )
        .expect("a change");
        assert_eq!(synced.added.len(), 2);
        assert!(synced.changed.is_empty() && synced.removed.is_empty());
        let names: Vec<_> = synced.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a/m", "b/m"]);
    }

    #[test]
    fn the_same_list_again_decides_nothing() {
        let list = vec![entry("a/m", 1, 1), entry("b/m", 2, 3)];
        let first = decide(&ImportedCatalog::default(), "openrouter", list.clone()).expect("first");
        let state = applied(ImportedCatalog::default(), first);
        let reordered = list.into_iter().rev().collect();
        assert_eq!(decide(&state, "openrouter", reordered), None);
    }

    #[test]
    fn price_changes_and_removals_carry_before_and_after() {
        let first = decide(
            &ImportedCatalog::default(),
            "openrouter",
            vec![entry("a/m", 1, 1), entry("b/m", 2, 3)],
        )
        .expect("first");
        let state = applied(ImportedCatalog::default(), first);
        let second = decide(
            &state,
            "openrouter",
            vec![entry("a/m", 1, 5), entry("c/m", 7, 7)],
        )
        .expect("second");
        assert_eq!(second.added, vec![entry("c/m", 7, 7)]);
        assert_eq!(
            second.changed,
            vec![CatalogChange {
                before: entry("a/m", 1, 1),
                after: entry("a/m", 1, 5)
            }]
        );
        assert_eq!(second.removed, vec!["b/m".to_string()]);
        let state = applied(state, second);
        assert_eq!(state.entries.keys().collect::<Vec<_>>(), ["a/m", "c/m"]);
    }

    #[test]
    fn a_duplicate_name_keeps_its_first_entry() {
        let synced = decide(
            &ImportedCatalog::default(),
            "openrouter",
            vec![entry("a/m", 1, 1), entry("a/m", 9, 9)],
        )
        .expect("a change");
        assert_eq!(synced.entries, vec![entry("a/m", 1, 1)]);
    }
}
