//! Recording an imported list: load the catalog stream, decide, append at the loaded version.
//! A sync that loses the race to another reloads and decides again, which usually finds nothing
//! left to record.

use events::catalog::CatalogEntry;
use events::{Actor, EventEnvelope, EventPayload};

use super::aggregate::{self, Import, ImportedCatalog};
use super::{ImportError, PROVIDER};
use crate::command::{load_from, Aggregate, Loaded};
use crate::journal::JournalError;
use crate::Journal;

/// How many times a sync decides again after losing a race.
const ATTEMPTS: u32 = 3;

/// Records `entries` as the imported catalog, retrying on a lost race.
pub async fn import(
    journal: &Journal,
    entries: Vec<CatalogEntry>,
    actor: &Actor,
    correlation_id: &str,
) -> Result<(Option<EventEnvelope>, i64), ImportError> {
    for _ in 0..ATTEMPTS {
        let loaded = load(journal).await?;
        let Ok(decided) = loaded.state.decide(Import {
            provider: PROVIDER.into(),
            entries: entries.clone(),
        });
        if decided.is_empty() {
            return Ok((None, loaded.version));
        }
        match append(journal, &loaded, decided, actor, correlation_id).await {
            Ok(mut appended) => {
                let last = appended.pop();
                let version = last.as_ref().map_or(loaded.version, |e| e.stream_version);
                return Ok((last, version));
            }
            Err(JournalError::VersionConflict) => {
                tracing::info!("another sync changed the catalog first; deciding again");
            }
            Err(e) => return Err(ImportError::Journal(e.to_string())),
        }
    }
    Err(ImportError::Conflict { attempts: ATTEMPTS })
}

/// The imported catalog as the journal holds it now.
pub async fn load(journal: &Journal) -> Result<Loaded<ImportedCatalog>, ImportError> {
    Ok(load_from(journal, &aggregate::stream_id(PROVIDER)).await?)
}

/// Appends the decision at the version it was made at: platform events, keyed by their stream.
pub async fn append(
    journal: &Journal,
    loaded: &Loaded<ImportedCatalog>,
    decided: Vec<EventPayload>,
    actor: &Actor,
    correlation_id: &str,
) -> Result<Vec<EventEnvelope>, JournalError> {
    let events: Vec<EventEnvelope> = (loaded.version + 1..)
        .zip(decided)
        .map(|(version, payload)| {
            EventEnvelope::new(
                payload,
                None,
                aggregate::stream_id(PROVIDER),
                version,
                actor.clone(),
                correlation_id.to_string(),
            )
        })
        .collect();
    journal.append(&events, &[]).await?;
    Ok(events)
}
