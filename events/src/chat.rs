//! Chat calls through the gateway: every call ends in exactly one of these events. Prompt and
//! completion text never appear; tokens, cost and timings do.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The types of the events that end a chat call: most of the topic.
pub const CALL_TYPES: [&str; 2] = ["chat.completion.succeeded", "chat.completion.failed"];

/// Whether `event_type` ends a chat call.
pub fn is_call(event_type: &str) -> bool {
    CALL_TYPES.contains(&event_type)
}

/// One try against one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    pub provider: String,
    pub upstream_model: String,
    /// `ok`, `http_<status>`, `timeout`, `connect_error`, `circuit_open`, `stream_error`
    pub outcome: String,
    pub latency_ms: u64,
}

/// Who called and what: shared by both outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCall {
    pub request_id: String,
    #[serde(default)]
    pub api_key_id: Option<Uuid>,
    #[serde(default)]
    pub team_id: Option<Uuid>,
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// The public model name the client asked for.
    pub model: String,
    pub streamed: bool,
    pub attempts: Vec<Attempt>,
    pub latency_ms: u64,
}

/// `chat.completion.succeeded`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletionSucceeded {
    #[serde(flatten)]
    pub call: ChatCall,
    pub provider: String,
    pub upstream_model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Cost in millionths of a US dollar, from the catalog's prices per million tokens.
    pub cost_micros: i64,
    #[serde(default)]
    pub time_to_first_token_ms: Option<u64>,
    /// The client went away before the end; the call was still read to the end and billed.
    #[serde(default)]
    pub client_disconnected: bool,
    /// The stream was ended before the provider reported its usage (it stalled, or the process
    /// was shutting down): the tokens are the gateway's estimate from the text.
    #[serde(default)]
    pub usage_estimated: bool,
}

/// `chat.completion.failed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletionFailed {
    #[serde(flatten)]
    pub call: ChatCall,
    /// The HTTP status the client got.
    pub status: u16,
    pub error_code: String,
}
