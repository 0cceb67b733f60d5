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

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// The gateway's estimate of a text's tokens, for a stream ended before the provider reported
/// its usage. Tokenizers give English about four characters a token, and Chinese, Japanese or
/// Korean text about one token a character (often more), so: a token per four ASCII characters
/// plus one per other character, rounded up. It errs high on CJK rather than billing nothing.
pub fn estimate_tokens(text: &str) -> u64 {
    let mut estimate = TokenEstimate::default();
    estimate.add(text);
    estimate.tokens()
}

/// [`estimate_tokens`] of a text that arrives in pieces: the same as of the pieces joined.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenEstimate {
    ascii: u64,
    other: u64,
}

impl TokenEstimate {
    pub fn add(&mut self, text: &str) {
        self.ascii += text.bytes().filter(u8::is_ascii).count() as u64;
        self.other += text.chars().filter(|c| !c.is_ascii()).count() as u64;
    }

    pub fn tokens(&self) -> u64 {
        self.ascii.div_ceil(4) + self.other
    }
}

/// The estimate of a request's prompt: its messages' text, and a few tokens per message for
/// the chat format (as OpenAI counts them).
pub fn estimate_prompt_tokens(body: &serde_json::Value) -> u64 {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text = |content: &serde_json::Value| match content {
        serde_json::Value::String(text) => estimate_tokens(text),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .map(estimate_tokens)
            .sum(),
        _ => 0,
    };
    messages
        .iter()
        .map(|m| text(&m["content"]) + 4)
        .sum::<u64>()
        + 3
}

/// The text of a chunk in OpenAI's format: its choices' content and tool-call arguments.
pub fn chunk_text(chunk: &serde_json::Value) -> String {
    let mut text = String::new();
    for choice in chunk["choices"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let delta = &choice["delta"];
        text.push_str(delta["content"].as_str().unwrap_or_default());
        for call in delta["tool_calls"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            text.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    text
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

    #[test]
    fn token_estimates_count_ascii_by_four_and_other_characters_one_each() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("Hello"), 2);
        assert_eq!(estimate_tokens("你好，世界。"), 6);
        assert_eq!(estimate_tokens("Hi 你好"), 3);
        let mut pieces = TokenEstimate::default();
        for piece in ["Hel", "lo", " fr", "om"] {
            pieces.add(piece);
        }
        assert_eq!(pieces.tokens(), estimate_tokens("Hello from"));
        let body = serde_json::json!({"messages": [
            {"role": "user", "content": "abcd"},
            {"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}
        ]});
        assert_eq!(estimate_prompt_tokens(&body), (1 + 4) + (2 + 4) + 3);
        let chunk = serde_json::json!({"choices": [{"delta": {"content": "ab",
            "tool_calls": [{"function": {"arguments": "{}"}}]}}]});
        assert_eq!(chunk_text(&chunk), "ab{}");
    }
}
