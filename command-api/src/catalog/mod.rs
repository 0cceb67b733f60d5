//! The model catalog imported from a provider, as the control plane keeps it: the
//! `catalog:<provider>` stream, decided by a pure aggregate and appended by `sync`. Fetching the
//! provider's list is the gateway's part (`gateway::import`); it hands the entries to `sync`.

pub mod aggregate;
pub mod sync;

/// The provider whose model list is imported, and which serves the imported models.
pub const PROVIDER: &str = "openrouter";

/// Why the imported entries could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("other syncs kept changing the catalog ({attempts} attempts); run it again")]
    Conflict { attempts: u32 },
    #[error("the journal could not be read or written: {0}")]
    Journal(String),
}

impl From<platform::ApiError> for ImportError {
    fn from(e: platform::ApiError) -> Self {
        Self::Journal(match &e.cause {
            Some(cause) => format!("{e} ({cause:#})"),
            None => e.to_string(),
        })
    }
}
