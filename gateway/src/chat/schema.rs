//! OpenAI's Chat Completions shapes as the OpenAPI document shows them. The gateway forwards
//! bodies as JSON values (the providers read what they know), so these types document the
//! contract rather than parse it; the tests hold the code to them: a documented request passes
//! the gateway's checks, and what the wire formats answer reads back as these types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A chat request in OpenAI's Chat Completions format. The gateway checks `model`, `messages`,
/// `n` and `stream`, holds the whole request (prompt, tool definitions, response format, and the
/// completion budget of every choice) against the monthly token quota, and forwards these fields
/// only (translated for Gemini, which refuses tools and non-text content parts). Any other field
/// is refused with 400 `unknown_parameter`, as OpenAI refuses an unrecognized argument: a
/// provider's own extensions (OpenRouter's `plugins`, `models`, `route`, `provider`) never pass.
/// `store`, `metadata` and `service_tier` are accepted and dropped; `web_search_options`,
/// `audio`, `modalities` and `prediction` are refused (`unsupported_parameter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "What is an event store?"}
    ],
    "temperature": 0.2,
    "max_tokens": 200
}))]
pub struct ChatCompletionRequest {
    /// A model name from `GET /models`.
    pub model: String,
    /// The conversation so far, oldest first.
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// Answer as server-sent events: `data: {chat.completion.chunk}` lines, then
    /// `data: [DONE]`. `POST /chat/stream` streams whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature; OpenAI accepts 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling: the probability mass to sample from, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// How many choices to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4)]
    pub n: Option<u32>,
    /// The most tokens the completion may use. It is held against the monthly quota before
    /// the call and sent upstream; without it the gateway holds and sends up to 1,024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// OpenAI's newer name for `max_tokens`; wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Where the model stops: one sequence or several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// -2 to 2: positive values favour new topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// -2 to 2: positive values discourage repeating tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Ask for deterministic sampling, where the provider supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// An identifier of the caller's end user, forwarded to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Token id to bias (-100 to 100), as OpenAI takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<Value>,
    /// Return the log probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// With `logprobs`: how many likely tokens to return at each position (0 to 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<u32>,
    /// Tools the model may call, as OpenAI defines them; their definitions count as prompt
    /// tokens in the quota hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required`, or the tool to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The deprecated form of `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub functions: Option<Vec<Value>>,
    /// The deprecated form of `tool_choice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub function_call: Option<Value>,
    /// For reasoning models: `minimal`, `low`, `medium` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Accepted for OpenAI compatibility and dropped: nothing is stored at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Accepted for OpenAI compatibility and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Accepted for OpenAI compatibility and dropped: the provider's default tier is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    pub role: Role,
    /// Text, or an array of content parts. Null on an assistant message that only calls tools.
    pub content: Option<MessageContent>,
    /// A name telling apart participants of the same role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// On a `tool` message: the tool call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// On an `assistant` message: the tool calls it made, as OpenAI shapes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<Value>>,
}

/// The roles of OpenAI's Chat Completions; the gateway refuses any other (400, `param`
/// `messages`). Named `ChatRole` in the OpenAPI document, apart from the access roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ChatRole)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A part of a message's content: `{"type": "text", "text": "…"}`; other part types
/// (`image_url`, `input_audio`, `file`) are forwarded to the providers that take them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    #[schema(example = "text")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with no choices and the call's `usage` before `data: [DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema` (the last not for Gemini models).
    #[serde(rename = "type")]
    #[schema(example = "json_object")]
    pub kind: String,
}

/// A whole answer (`"stream"` absent or false), in OpenAI's format whichever provider served
/// it; `model` is the public model name asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    #[schema(example = "chatcmpl-0193a4c1b2d37e4f8a9b0c1d2e3f4a5b")]
    pub id: String,
    /// Always `chat.completion`.
    #[schema(example = "chat.completion")]
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Option<CompletionUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    /// `stop`, `length`, `content_filter` or `tool_calls`.
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    pub content: Option<String>,
}

/// Tokens as the provider counted them; the call is billed and charged to the quota by these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// The `data` of one server-sent event of a stream. The last chunk before `data: [DONE]` has no
/// choices and carries `usage` when the request asked for `stream_options.include_usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always `chat.completion.chunk`.
    #[schema(example = "chat.completion.chunk")]
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<String>,
}

/// What a chunk adds to the message: the role on the first, text on the following ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chat::request::ChatRequest;
    use crate::wire::{gemini::Gemini, openai::OpenAi, Reply, Usage, WireFormat};

    fn reply() -> Reply {
        Reply {
            id: "chatcmpl-1".into(),
            created: 1_700_000_000,
            model: "gemini-1.5-flash".into(),
        }
    }

    #[test]
    fn the_documented_example_passes_the_gateways_checks() {
        let example = <ChatCompletionRequest as utoipa::PartialSchema>::schema();
        let example = serde_json::to_value(example).unwrap()["example"].clone();
        let request: ChatCompletionRequest = serde_json::from_value(example.clone()).unwrap();
        assert_eq!(request.model, "gpt-4o-mini");
        assert!(ChatRequest::parse(example, false).is_ok());
    }

    #[test]
    fn every_request_shape_the_document_allows_round_trips() {
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function"}]},
                {"role": "tool", "content": "42", "tool_call_id": "c"}
            ],
            "stream": true, "stream_options": {"include_usage": true}, "stop": ["a", "b"], "n": 2,
            "response_format": {"type": "json_object"}, "seed": 7, "user": "u-1"
        });
        let request: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), body);
        assert_eq!(
            request.stop,
            Some(Stop::Several(vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn translated_answers_and_chunks_read_as_the_documented_types() {
        let answer = json!({
            "candidates": [{"content": {"parts": [{"text": "Hello"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        });
        let completion: ChatCompletion =
            serde_json::from_value(Gemini.response(answer.clone(), &reply())).unwrap();
        assert_eq!(completion.object, "chat.completion");
        assert_eq!(
            completion.choices[0].message.content.as_deref(),
            Some("Hello")
        );
        assert_eq!(completion.usage.map(|u| u.total_tokens), Some(4));

        for chunk in Gemini.chunks(answer, &reply(), true) {
            let chunk: ChatCompletionChunk = serde_json::from_value(chunk).unwrap();
            assert_eq!(chunk.object, "chat.completion.chunk");
        }
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 1,
            total_tokens: 4,
        };
        let last = Gemini.usage_chunk(usage, &reply()).unwrap();
        let last: ChatCompletionChunk = serde_json::from_value(last).unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage.map(|u| u.total_tokens), Some(4));

        let openai = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
        let completion: ChatCompletion =
            serde_json::from_value(OpenAi.response(openai, &reply())).unwrap();
        assert_eq!(completion.model, "gemini-1.5-flash");
    }
}

/// One server-sent event of a stream, as a client's SSE parser hands it over. Its `data` is a
/// `ChatCompletionChunk` as JSON, an `ErrorResponse` as JSON when a stream breaks off, or the
/// final `[DONE]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerSentEvent {
    /// The event's `data:` line.
    pub data: String,
    /// Never set by the gateway: every event is a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}
