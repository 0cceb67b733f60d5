//! The model catalog: public model name → ordered deployments, prices, context length, tier.
//! Built in, or replaced by a JSON file (`AIHUB_MODELS_FILE`) of the same shape as `builtin()`.

use events::catalog::CatalogEntry;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// A configured provider: `openrouter`, `gemini` or `openai`.
    pub provider: String,
    pub upstream_model: String,
    /// Lower goes first; deployments of one priority share the load by weight.
    #[serde(default)]
    pub priority: u32,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub name: String,
    /// `basic`, `advanced` or `premium`.
    pub tier: String,
    pub context_length: u64,
    /// Millionths of a dollar per million tokens (= dollars per token ×10¹²).
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    pub deployments: Vec<Deployment>,
}

impl Model {
    /// The tier the plans gate on; a tier name this build does not know is served as the top
    /// tier, so only the plans that serve everything can use the model.
    pub fn model_tier(&self) -> platform::plans::ModelTier {
        self.tier
            .parse()
            .unwrap_or(platform::plans::ModelTier::Premium)
    }
}

impl Model {
    /// Cost of a call in millionths of a dollar, rounded half up.
    pub fn cost_micros(&self, prompt_tokens: u64, completion_tokens: u64) -> i64 {
        let numerator = i128::from(prompt_tokens) * i128::from(self.input_micros_per_mtok)
            + i128::from(completion_tokens) * i128::from(self.output_micros_per_mtok);
        ((numerator + 500_000) / 1_000_000) as i64
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub models: Vec<Model>,
}

impl Catalog {
    pub fn load(file: Option<&str>) -> anyhow::Result<Self> {
        match file {
            None => Ok(Self { models: builtin() }),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
                let models: Vec<Model> =
                    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
                Ok(Self { models })
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// This catalog followed by the models imported from `provider`, each served by it under
    /// its own name; a name this catalog already has keeps its configured entry.
    pub fn with_imported<'a>(
        &self,
        provider: &str,
        imported: impl IntoIterator<Item = &'a CatalogEntry>,
    ) -> Catalog {
        let mut models = self.models.clone();
        for entry in imported {
            if self.get(&entry.name).is_some() {
                continue;
            }
            models.push(Model {
                name: entry.name.clone(),
                tier: entry.tier.clone(),
                context_length: entry.context_length,
                input_micros_per_mtok: entry.input_micros_per_mtok,
                output_micros_per_mtok: entry.output_micros_per_mtok,
                deployments: vec![Deployment {
                    provider: provider.to_string(),
                    upstream_model: entry.upstream_model.clone(),
                    priority: 0,
                    weight: 1,
                }],
            });
        }
        Catalog { models }
    }
}

fn model(
    name: &str,
    tier: &str,
    context: u64,
    input: i64,
    output: i64,
    deployments: &[(&str, &str, u32)],
) -> Model {
    Model {
        name: name.into(),
        tier: tier.into(),
        context_length: context,
        input_micros_per_mtok: input,
        output_micros_per_mtok: output,
        deployments: deployments
            .iter()
            .map(|(provider, upstream, priority)| Deployment {
                provider: (*provider).into(),
                upstream_model: (*upstream).into(),
                priority: *priority,
                weight: 1,
            })
            .collect(),
    }
}

/// The familiar names, mapped to OpenRouter ids; Gemini models go to Gemini first with OpenRouter
/// as the failover. Prices in dollars per million tokens ×10⁶.
pub fn builtin() -> Vec<Model> {
    vec![
        model(
            "gpt-4o",
            "advanced",
            128_000,
            2_500_000,
            10_000_000,
            &[("openrouter", "openai/gpt-4o", 0)],
        ),
        model(
            "gpt-4o-mini",
            "basic",
            128_000,
            150_000,
            600_000,
            &[("openrouter", "openai/gpt-4o-mini", 0)],
        ),
        model(
            "claude-3-5-sonnet",
            "premium",
            200_000,
            3_000_000,
            15_000_000,
            &[("openrouter", "anthropic/claude-3.5-sonnet", 0)],
        ),
        model(
            "llama-3-70b",
            "basic",
            8_192,
            590_000,
            790_000,
            &[("openrouter", "meta-llama/llama-3-70b-instruct", 0)],
        ),
        model(
            "gemini-1.5-pro",
            "advanced",
            2_000_000,
            1_250_000,
            5_000_000,
            &[
                ("gemini", "gemini-1.5-pro", 0),
                ("openrouter", "google/gemini-pro-1.5", 1),
            ],
        ),
        model(
            "gemini-1.5-flash",
            "basic",
            1_000_000,
            75_000,
            300_000,
            &[
                ("gemini", "gemini-1.5-flash", 0),
                ("openrouter", "google/gemini-flash-1.5", 1),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_in_millionths_of_a_dollar() {
        let gpt4o = builtin()
            .into_iter()
            .find(|m| m.name == "gpt-4o")
            .expect("gpt-4o");
        // 1,000 prompt tokens at $2.50/M + 500 completion tokens at $10/M = $0.0025 + $0.005.
        assert_eq!(gpt4o.cost_micros(1_000, 500), 7_500);
        assert_eq!(gpt4o.cost_micros(0, 0), 0);
        // 1 token at $2.50/M is 2.5 micros: rounds half up.
        assert_eq!(gpt4o.cost_micros(1, 0), 3);
    }

    #[test]
    fn imported_models_join_but_configured_names_keep_their_entry() {
        let configured = Catalog { models: builtin() };
        let imported = [
            CatalogEntry {
                name: "gpt-4o".into(),
                upstream_model: "gpt-4o".into(),
                context_length: 1,
                input_micros_per_mtok: 1,
                output_micros_per_mtok: 1,
                tier: "basic".into(),
            },
            CatalogEntry {
                name: "mistralai/mistral-7b".into(),
                upstream_model: "mistralai/mistral-7b".into(),
                context_length: 32_768,
                input_micros_per_mtok: 30_000,
                output_micros_per_mtok: 50_000,
                tier: "basic".into(),
            },
        ];
        let merged = configured.with_imported("openrouter", &imported);
        assert_eq!(merged.models.len(), builtin().len() + 1);
        assert_eq!(merged.get("gpt-4o"), configured.get("gpt-4o"));
        let mistral = merged.get("mistralai/mistral-7b").expect("imported");
        assert_eq!(mistral.input_micros_per_mtok, 30_000);
        assert_eq!(mistral.deployments[0].provider, "openrouter");
        assert_eq!(
            mistral.deployments[0].upstream_model,
            "mistralai/mistral-7b"
        );
    }
}
