//! The model catalog imported from OpenRouter: `aihub models sync` fetches its model list and
//! records what changed as a `catalog.synced` event; the gateway serves the imported models.

pub mod aggregate;
pub mod openrouter;
pub mod price;
pub mod sync;

/// The provider whose model list is imported, and which serves the imported models.
pub const PROVIDER: &str = "openrouter";

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
    #[error("other syncs kept changing the catalog ({attempts} attempts); run it again")]
    Conflict { attempts: u32 },
    #[error("the journal could not be read or written: {0}")]
    Journal(String),
}

impl From<platform::ApiError> for SyncError {
    fn from(e: platform::ApiError) -> Self {
        Self::Journal(match &e.cause {
            Some(cause) => format!("{e} ({cause:#})"),
            None => e.to_string(),
        })
    }
}
