//! The providers' wire formats behind one interface. The gateway speaks OpenAI's Chat
//! Completions to its clients; a [`WireFormat`] turns such a request into its provider's, and the
//! provider's answers (whole, or one stream event at a time) back into OpenAI's shape. Pure
//! functions over `serde_json::Value`: the transport (HTTP, SSE framing, timeouts) is
//! `upstream.rs`. A third format is one new module and one arm in [`of`].

pub mod gemini;
pub mod openai;

use platform::config::ProviderConfig;
use serde_json::Value;

/// Picks the format a provider speaks: Gemini its own, every other one OpenAI's.
pub fn of(provider: &ProviderConfig) -> &'static dyn WireFormat {
    match provider.name.as_str() {
        "gemini" => &gemini::Gemini,
        _ => &openai::OpenAi,
    }
}

pub trait WireFormat: Send + Sync {
    /// The provider's request for an OpenAI chat request `body`, to `upstream_model`.
    fn request(
        &self,
        provider: &ProviderConfig,
        upstream_model: &str,
        body: &Value,
        stream: bool,
    ) -> Result<UpstreamRequest, Invalid>;

    /// The usage a whole answer or one stream event reports, in OpenAI terms.
    fn usage(&self, answer: &Value) -> Option<Usage>;

    /// A whole answer (a JSON object) as an OpenAI `chat.completion` under `reply`'s name.
    fn response(&self, answer: Value, reply: &Reply) -> Value;

    /// One stream event's JSON as zero or more OpenAI `chat.completion.chunk`s; `first` is true
    /// until a chunk has gone to the client.
    fn chunks(&self, event: Value, reply: &Reply, first: bool) -> Vec<Value>;

    /// The usage chunk to end a stream with, for a client that asked for one
    /// (`stream_options.include_usage`), when the provider's own events do not carry it.
    fn usage_chunk(&self, _usage: Usage, _reply: &Reply) -> Option<Value> {
        None
    }
}

/// What to send upstream: the URL, the credential and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub url: String,
    pub auth: Auth,
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    Bearer(String),
    /// A header of the provider's own, such as Gemini's `x-goog-api-key`.
    Header(&'static str, String),
}

/// How the client sees its answer: the completion's id, its creation time (Unix seconds) and the
/// public model name, whatever upstream model served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: String,
    pub created: i64,
    pub model: String,
}

impl Reply {
    pub fn new(model: &str) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
            created: chrono::Utc::now().timestamp(),
            model: model.to_string(),
        }
    }
}

/// Usage in OpenAI terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Why a request cannot be translated (becomes a 400 for the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub param: &'static str,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

impl std::error::Error for Invalid {}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            base_url: format!("https://{name}.example/api"),
            api_key: "secret".into(),
        }
    }

    #[test]
    fn gemini_speaks_its_own_format_and_everyone_else_openais() {
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
        for (name, url) in [
            (
                "openrouter",
                "https://openrouter.example/api/chat/completions",
            ),
            ("openai", "https://openai.example/api/chat/completions"),
            (
                "gemini",
                "https://gemini.example/api/v1beta/models/up:generateContent",
            ),
        ] {
            let request = of(&provider(name))
                .request(&provider(name), "up", &body, false)
                .expect("translates");
            assert_eq!(request.url, url, "{name}");
        }
    }
}
