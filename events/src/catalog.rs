//! The model catalog imported from a provider's model list (OpenRouter's `/models`). Prices are
//! integers in millionths of a dollar per million tokens (dollars per token ×10¹²).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One imported model, routable under `name` through the stream's provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogEntry {
    /// The public model name clients ask for (OpenRouter's id, such as `openai/gpt-4o`).
    pub name: String,
    /// The model id sent upstream.
    pub upstream_model: String,
    pub context_length: u64,
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    /// `basic`, `advanced` or `premium`, derived from the price.
    pub tier: String,
}

/// A model present before and after a sync whose price, context length or tier moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogChange {
    pub before: CatalogEntry,
    pub after: CatalogEntry,
}

/// `catalog.synced`: a platform event (no organization) on the stream `catalog:<provider>`,
/// written only when the imported list differs from the one before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogSynced {
    /// The provider the list came from and the imported models are served by: `openrouter`.
    pub provider: String,
    pub added: Vec<CatalogEntry>,
    pub changed: Vec<CatalogChange>,
    /// Names of the models no longer in the provider's list.
    pub removed: Vec<String>,
    /// The whole imported catalog after this sync, sorted by name.
    pub entries: Vec<CatalogEntry>,
}
