//! Recording an imported list: load the catalog stream, decide, append at the loaded version.
//! A sync that loses the race to another reloads and decides again, which usually finds nothing
//! left to record.

use events::catalog::{CatalogEntry, CatalogSynced};
use events::{Actor, EventEnvelope, EventPayload};

use super::aggregate::{self, ImportedCatalog};
use super::{ImportError, PROVIDER};
use crate::command::{load_from, Loaded};
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
        let Some(synced) = aggregate::decide(&loaded.state, PROVIDER, entries.clone()) else {
            return Ok((None, loaded.version));
        };
        match append(journal, &loaded, synced, actor, correlation_id).await {
            Ok(event) => {
                let version = event.stream_version;
                return Ok((Some(event), version));
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

/// Appends the decision at the version it was made at: a platform event, keyed by its stream.
pub async fn append(
    journal: &Journal,
    loaded: &Loaded<ImportedCatalog>,
    synced: CatalogSynced,
    actor: &Actor,
    correlation_id: &str,
) -> Result<EventEnvelope, JournalError> {
    let event = EventEnvelope::new(
        EventPayload::CatalogSynced(synced),
        None,
        aggregate::stream_id(PROVIDER),
        loaded.version + 1,
        actor.clone(),
        correlation_id.to_string(),
    );
    journal.append(std::slice::from_ref(&event), &[]).await?;
    Ok(event)
}
