//! OpenRouter's model list (`GET /api/v1/models`): `{"data": [{"id", "name", "context_length",
//! "pricing": {"prompt", "completion", …}, "top_provider": {…}, …}]}`, prices in dollars per
//! token as decimal strings. Entries that cannot be priced are skipped and reported, not guessed.

use std::time::Duration;

use events::catalog::CatalogEntry;
use platform::config::ProviderConfig;
use serde_json::Value;

use super::price::{self, PriceError};
use super::SyncError;

/// The most of an unexpected answer quoted in an error.
const QUOTED: usize = 200;

/// A model of the list that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Default, PartialEq)]
pub struct ModelList {
    pub entries: Vec<CatalogEntry>,
    pub skipped: Vec<Skipped>,
}

/// Fetches and parses the list with the provider's key.
pub async fn fetch(
    http: &reqwest::Client,
    provider: &ProviderConfig,
    timeout: Duration,
) -> Result<ModelList, SyncError> {
    let url = format!("{}/models", provider.base_url);
    let response = http
        .get(&url)
        .bearer_auth(&provider.api_key)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| SyncError::Unreachable {
            url: url.clone(),
            reason: error_chain(&e),
        })?;
    let status = response.status();
    let body = response.text().await.map_err(|e| SyncError::Unreachable {
        url: url.clone(),
        reason: error_chain(&e),
    })?;
    if !status.is_success() {
        return Err(SyncError::Refused {
            url,
            status: status.as_u16(),
            body: quote(&body),
        });
    }
    parse(&body).map_err(|reason| SyncError::Garbage { url, reason })
}

/// The list in a response body; an error names what is wrong with the body as a whole.
pub fn parse(body: &str) -> Result<ModelList, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {}", quote(body)))?;
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no \"data\" array: {}", quote(body)))?;
    let mut list = ModelList::default();
    for (i, model) in data.iter().enumerate() {
        match entry(model) {
            Ok(entry) => list.entries.push(entry),
            Err(reason) => list.skipped.push(Skipped {
                id: model["id"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("data[{i}]")),
                reason,
            }),
        }
    }
    if list.entries.is_empty() {
        return Err(format!(
            "no importable model among {} listed; refusing to empty the catalog",
            data.len()
        ));
    }
    Ok(list)
}

fn entry(model: &Value) -> Result<CatalogEntry, String> {
    let id = model["id"]
        .as_str()
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 200 && !id.chars().any(char::is_control))
        .ok_or("no usable id")?;
    let context_length = model["context_length"]
        .as_u64()
        .or_else(|| model["top_provider"]["context_length"].as_u64())
        .ok_or("no context_length")?;
    let input = price(&model["pricing"]["prompt"]).map_err(|e| format!("prompt {e}"))?;
    let output = price(&model["pricing"]["completion"]).map_err(|e| format!("completion {e}"))?;
    Ok(CatalogEntry {
        name: id.to_string(),
        upstream_model: id.to_string(),
        context_length,
        input_micros_per_mtok: input,
        output_micros_per_mtok: output,
        tier: price::tier(input, output).to_string(),
    })
}

/// OpenRouter sends strings; a bare JSON number is read by its decimal text, never as a float.
fn price(value: &Value) -> Result<i64, PriceError> {
    match value {
        Value::String(text) => price::micros_per_mtok(text),
        Value::Number(number) => price::micros_per_mtok(&number.to_string()),
        Value::Null => Err(PriceError::Unparseable("missing".into())),
        other => Err(PriceError::Unparseable(other.to_string())),
    }
}

fn quote(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape_parses_and_unpriceable_entries_are_skipped() {
        let body = r#"{"data": [
            {"id": "openai/gpt-4o", "canonical_slug": "openai/gpt-4o", "name": "OpenAI: GPT-4o",
             "created": 1715367049, "context_length": 128000,
             "architecture": {"modality": "text+image->text", "tokenizer": "GPT"},
             "pricing": {"prompt": "0.0000025", "completion": "0.00001", "request": "0", "image": "0.003613"},
             "top_provider": {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": true},
             "per_request_limits": null, "supported_parameters": ["tools"]},
            {"id": "openrouter/auto", "name": "Auto Router", "context_length": 2000000,
             "pricing": {"prompt": "-1", "completion": "-1"}},
            {"id": "x/free", "context_length": null, "top_provider": {"context_length": 4096},
             "pricing": {"prompt": "0", "completion": "0"}},
            {"id": "x/odd", "context_length": 4096, "pricing": {"prompt": "cheap", "completion": "0"}},
            {"name": "no id at all", "context_length": 4096, "pricing": {"prompt": "0", "completion": "0"}}
        ]}"#;
        let list = parse(body).expect("parses");
        assert_eq!(list.entries.len(), 2);
        let gpt = &list.entries[0];
        assert_eq!(gpt.name, "openai/gpt-4o");
        assert_eq!(gpt.upstream_model, "openai/gpt-4o");
        assert_eq!(gpt.context_length, 128_000);
        assert_eq!(gpt.input_micros_per_mtok, 2_500_000);
        assert_eq!(gpt.output_micros_per_mtok, 10_000_000);
        assert_eq!(gpt.tier, "advanced");
        assert_eq!(list.entries[1].context_length, 4096);
        assert_eq!(list.entries[1].tier, "basic");
        let skipped: Vec<_> = list.skipped.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(skipped, ["openrouter/auto", "x/odd", "data[4]"]);
        assert!(
            list.skipped[0].reason.contains("negative"),
            "{:?}",
            list.skipped[0]
        );
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_catalog() {
        for body in ["<html>502 Bad Gateway</html>", "{}", "{\"data\": {}}", "{\"data\": []}", "[]",
            "{\"data\": [{\"id\": \"a\", \"pricing\": {\"prompt\": \"-1\", \"completion\": \"-1\"}}]}"] {
            assert!(parse(body).is_err(), "{body}");
        }
    }
}
