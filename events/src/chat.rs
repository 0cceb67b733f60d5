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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ChatCompletionFailed {
    #[serde(flatten)]
    pub call: ChatCall,
    /// The HTTP status the client got.
    pub status: u16,
    pub error_code: String,
}

// Read through flat twins: serde's derived decoder of a flattened member buffers the whole
// object in its generic tree and reads it a second time, and these two are most of the topic,
// decoded by every projection (the `codec` bench). Same wire format: a unit test holds them to
// what they write.
macro_rules! read_flat {
    ($event:ident via $wire:ident { $( $(#[$meta:meta])* $field:ident: $ty:ty, )* }) => {
        #[derive(Deserialize)]
        struct $wire {
            request_id: String,
            #[serde(default)]
            api_key_id: Option<Uuid>,
            #[serde(default)]
            team_id: Option<Uuid>,
            #[serde(default)]
            user_id: Option<Uuid>,
            model: String,
            streamed: bool,
            attempts: Vec<Attempt>,
            latency_ms: u64,
            $( $(#[$meta])* $field: $ty, )*
        }

        impl<'de> Deserialize<'de> for $event {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let wire = $wire::deserialize(deserializer)?;
                Ok(Self {
                    call: ChatCall {
                        request_id: wire.request_id,
                        api_key_id: wire.api_key_id,
                        team_id: wire.team_id,
                        user_id: wire.user_id,
                        model: wire.model,
                        streamed: wire.streamed,
                        attempts: wire.attempts,
                        latency_ms: wire.latency_ms,
                    },
                    $( $field: wire.$field, )*
                })
            }
        }
    };
}

read_flat!(ChatCompletionSucceeded via SucceededWire {
    provider: String,
    upstream_model: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cost_micros: i64,
    #[serde(default)]
    time_to_first_token_ms: Option<u64>,
    #[serde(default)]
    client_disconnected: bool,
    #[serde(default)]
    usage_estimated: bool,
});

read_flat!(ChatCompletionFailed via FailedWire {
    status: u16,
    error_code: String,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> ChatCall {
        ChatCall {
            request_id: "req-\"1\"\u{e9}".into(),
            api_key_id: Some(Uuid::now_v7()),
            team_id: None,
            user_id: Some(Uuid::now_v7()),
            model: "gpt-4o".into(),
            streamed: true,
            attempts: vec![Attempt {
                provider: "openrouter".into(),
                upstream_model: "openai/gpt-4o".into(),
                outcome: "ok".into(),
                latency_ms: 12,
            }],
            latency_ms: 14,
        }
    }

    #[test]
    fn chat_events_read_back_what_they_write() {
        let succeeded = ChatCompletionSucceeded {
            call: call(),
            provider: "openrouter".into(),
            upstream_model: "openai/gpt-4o".into(),
            prompt_tokens: 6,
            completion_tokens: 4,
            total_tokens: 10,
            cost_micros: 31,
            time_to_first_token_ms: Some(3),
            client_disconnected: true,
            usage_estimated: true,
        };
        let text = serde_json::to_string(&succeeded).expect("serializes");
        assert_eq!(
            serde_json::from_str::<ChatCompletionSucceeded>(&text).expect("reads"),
            succeeded
        );
        let failed = ChatCompletionFailed {
            call: call(),
            status: 502,
            error_code: "upstream_error".into(),
        };
        let text = serde_json::to_string(&failed).expect("serializes");
        assert_eq!(
            serde_json::from_str::<ChatCompletionFailed>(&text).expect("reads"),
            failed
        );
    }

    #[test]
    fn chat_events_keep_their_defaults_and_refuse_what_is_missing() {
        // Written before the optional members existed: still read, with their defaults.
        let old = r#"{"request_id":"r","model":"m","streamed":false,"attempts":[],"latency_ms":1,
            "provider":"p","upstream_model":"u","prompt_tokens":1,"completion_tokens":2,
            "total_tokens":3,"cost_micros":4,"unknown_later_member":true}"#;
        let read: ChatCompletionSucceeded = serde_json::from_str(old).expect("reads");
        assert_eq!(
            (read.call.api_key_id, read.time_to_first_token_ms),
            (None, None)
        );
        assert!(!read.client_disconnected && !read.usage_estimated);
        let missing = r#"{"request_id":"r","model":"m","streamed":false,"attempts":[],"latency_ms":1,"status":502}"#;
        let err = serde_json::from_str::<ChatCompletionFailed>(missing).expect_err("refused");
        assert!(err.to_string().contains("error_code"), "{err}");
    }
}
