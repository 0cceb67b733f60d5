//! `aihub models sync`: fetch OpenRouter's model list, then let the control plane record what
//! changed (`command_api::catalog::sync`) as a `catalog.synced` event. Reaching the provider and
//! reading its wire format is the gateway's part; deciding and appending is command-api's.

pub mod openrouter;
pub mod price;

use std::time::Duration;

use command_api::catalog::sync::import;
use command_api::catalog::{ImportError, PROVIDER};
use command_api::Journal;
use events::catalog::CatalogSynced;
use events::{Actor, EventEnvelope, EventPayload};
use platform::config::ProviderConfig;

use openrouter::Skipped;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("OpenRouter is not configured: set OPENROUTER_API_KEY (and OPENROUTER_BASE_URL to use another server than https://openrouter.ai/api/v1)")]
    NotConfigured,
    #[error("OpenRouter is unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("OpenRouter answered HTTP {status} at {url}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("OpenRouter's answer at {url} is not a model list: {reason}")]
    Garbage { url: String, reason: String },
    #[error(transparent)]
    Import(#[from] ImportError),
}

#[derive(Debug)]
pub struct Report {
    /// Models in the list that were priced and imported.
    pub imported: usize,
    pub skipped: Vec<Skipped>,
    /// The recorded event, or `None` when the catalog already matched the list.
    pub recorded: Option<EventEnvelope>,
    /// The catalog stream's version after the sync.
    pub version: i64,
}

impl Report {
    pub fn synced(&self) -> Option<&CatalogSynced> {
        match self.recorded.as_ref().map(|e| &e.payload) {
            Some(EventPayload::CatalogSynced(synced)) => Some(synced),
            _ => None,
        }
    }
}

/// Imports OpenRouter's model list into the catalog.
pub async fn run(
    journal: &Journal,
    http: &reqwest::Client,
    providers: &[ProviderConfig],
    timeout: Duration,
    actor: Actor,
    correlation_id: &str,
) -> Result<Report, SyncError> {
    let provider = providers
        .iter()
        .find(|p| p.name == PROVIDER)
        .ok_or(SyncError::NotConfigured)?;
    let list = openrouter::fetch(http, provider, timeout).await?;
    let imported = list.entries.len();
    let (recorded, version) = import(journal, list.entries, &actor, correlation_id).await?;
    Ok(Report {
        imported,
        skipped: list.skipped,
        recorded,
        version,
    })
}
