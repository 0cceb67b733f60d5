//! The client's chat request: checked once, then forwarded with only the OpenAI fields we know
//! and meter ([`FORWARDED`]), its completion budget rewritten to what the quota granted.
//!
//! Unknown fields are refused with 400, as OpenAI itself refuses an unrecognized argument: a
//! provider's own extensions (OpenRouter's paid `plugins`, its `models`/`route` fallbacks billed at
//! another model's price, `provider` routing, `transforms`) never reach it. OpenAI fields that
//! concern OpenAI's platform rather than the answer are accepted and dropped ([`DROPPED`]), and the
//! ones that would buy something we do not meter are refused ([`REFUSED`]).

use platform::ApiError;
use serde_json::{json, Value};

use super::schema::Role;
use crate::quota;

/// The most choices one request may ask for.
pub const MAX_N: u64 = 4;

/// The OpenAI Chat Completions fields forwarded to an OpenAI-format provider (Gemini's
/// translation reads those it can express and refuses the others).
pub const FORWARDED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "reasoning_effort",
];

/// OpenAI fields about OpenAI's platform, not the answer: accepted, never forwarded. `store` and
/// `metadata` keep a copy on OpenAI's side; `service_tier` would change the price we are charged.
pub const DROPPED: &[&str] = &["store", "metadata", "service_tier"];

/// OpenAI fields refused: each buys something the gateway does not meter or translate (web
/// search calls, audio in or out, predicted outputs).
pub const REFUSED: &[&str] = &["web_search_options", "audio", "modalities", "prediction"];

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The body as the client sent it, forwarded upstream.
    pub body: Value,
    /// The public model name asked for.
    pub model: String,
    /// Answered as server-sent events.
    pub streamed: bool,
    /// The client asked for the usage chunk at the end of a stream.
    pub include_usage: bool,
}

impl ChatRequest {
    /// Checks the body (400 naming the offending `param`); `force_stream` is `/chat/stream`.
    pub fn parse(mut body: Value, force_stream: bool) -> Result<Self, ApiError> {
        validate(&body)?;
        if let Some(fields) = body.as_object_mut() {
            fields.retain(|name, _| !DROPPED.contains(&name.as_str()));
        }
        Ok(Self {
            model: body["model"].as_str().unwrap_or_default().to_string(),
            streamed: force_stream || body["stream"].as_bool().unwrap_or(false),
            include_usage: body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            body,
        })
    }

    /// The choices asked for (`n`, 1 when absent).
    pub fn choices(&self) -> i64 {
        self.body["n"].as_i64().unwrap_or(1).max(1)
    }

    /// The completion budget of the whole call: what the client named per choice
    /// (`max_completion_tokens`, else `max_tokens`, when positive) times the choices.
    pub fn wanted_completion(&self) -> Option<i64> {
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|f| self.body[*f].as_i64())
            .filter(|n| *n > 0)
            .map(|per_choice| per_choice.saturating_mul(self.choices()))
    }

    /// An upper bound of the prompt's tokens: the messages and everything else the model reads,
    /// tool and function definitions and the response format's schema included
    /// (`quota::prompt_upper_bound`).
    pub fn prompt_bound(&self) -> i64 {
        quota::prompt_upper_bound(&self.body)
    }

    /// Sends the budget the quota granted for the whole call upstream, shared among the choices,
    /// so the call cannot use more than it holds.
    pub fn limit_completion(&mut self, budget: i64) {
        let per_choice = (budget / self.choices()).max(1);
        self.body["max_tokens"] = json!(per_choice);
        if !self.body["max_completion_tokens"].is_null() {
            self.body["max_completion_tokens"] = json!(per_choice);
        }
    }
}

fn validate(body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "The request body must be a JSON object.",
        ));
    }
    for name in body.as_object().map(|o| o.keys()).into_iter().flatten() {
        if REFUSED.contains(&name.as_str()) {
            return Err(ApiError::invalid_param(
                name,
                format!("{name} is not supported by this gateway."),
            )
            .with_code("unsupported_parameter"));
        }
        if !FORWARDED.contains(&name.as_str()) && !DROPPED.contains(&name.as_str()) {
            return Err(ApiError::invalid_param(
                name,
                format!("Unrecognized request argument supplied: {name}"),
            )
            .with_code("unknown_parameter"));
        }
    }
    if !body["model"].is_string() {
        return Err(ApiError::invalid_param(
            "model",
            "model is required: the name of a model from GET /api/v1/models.",
        ));
    }
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_param(
                "messages",
                "messages must be a non-empty array of {role, content}.",
            )
        })?;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if serde_json::from_value::<Role>(json!(role)).is_err() {
            return Err(ApiError::invalid_param(
                "messages",
                format!("messages[{i}].role {role:?} is not a valid role."),
            ));
        }
    }
    if let Some(n) = body.get("n").filter(|n| !n.is_null()) {
        if !n.as_u64().is_some_and(|n| (1..=MAX_N).contains(&n)) {
            return Err(ApiError::invalid_param(
                "n",
                format!("n must be an integer from 1 to {MAX_N}."),
            ));
        }
    }
    if let Some(stream) = body.get("stream").filter(|s| !s.is_null()) {
        if !stream.is_boolean() {
            return Err(ApiError::invalid_param(
                "stream",
                "stream must be true or false.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Value {
        json!([{"role": "user", "content": "Hello"}])
    }

    /// The `param` a refused body names (`None` for one refused as a whole).
    fn refused(body: Value) -> Option<String> {
        ChatRequest::parse(body, false).unwrap_err().param
    }

    #[test]
    fn a_minimal_body_is_accepted_as_it_came() {
        let body = json!({"model": "gpt-4o", "messages": hello(), "temperature": 0.2, "n": null});
        let request = ChatRequest::parse(body.clone(), false).unwrap();
        assert_eq!(request.model, "gpt-4o");
        assert_eq!(request.body, body);
        assert!(!request.streamed && !request.include_usage);
    }

    #[test]
    fn bodies_without_a_model_or_messages_name_the_field() {
        assert_eq!(
            refused(json!({"messages": hello()})).as_deref(),
            Some("model")
        );
        assert_eq!(
            refused(json!({"model": 4, "messages": hello()})).as_deref(),
            Some("model")
        );
        for messages in [
            json!(null),
            json!([]),
            json!("Hello"),
            json!({"role": "user"}),
        ] {
            assert_eq!(
                refused(json!({"model": "m", "messages": messages})).as_deref(),
                Some("messages"),
                "{messages}"
            );
        }
        let whole = ChatRequest::parse(json!(["not", "an", "object"]), false).unwrap_err();
        assert_eq!((whole.code.as_str(), whole.param), ("invalid_body", None));
    }

    #[test]
    fn every_openai_role_is_accepted_and_no_other() {
        for role in [
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ] {
            let body = json!({"model": "m", "messages": [{"role": role, "content": "x"}]});
            assert!(ChatRequest::parse(body, false).is_ok(), "{role}");
        }
        for role in [json!("wizard"), json!(null), json!(1)] {
            let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": role}]});
            let error = ChatRequest::parse(body, false).unwrap_err();
            assert_eq!(error.param.as_deref(), Some("messages"));
            assert!(
                error.message.starts_with("messages[1].role"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn n_is_one_to_four_and_stream_a_boolean() {
        for n in [1, MAX_N] {
            assert!(
                ChatRequest::parse(json!({"model": "m", "messages": hello(), "n": n}), false)
                    .is_ok()
            );
        }
        for n in [json!(0), json!(MAX_N + 1), json!(1.5), json!("2")] {
            assert_eq!(
                refused(json!({"model": "m", "messages": hello(), "n": n})).as_deref(),
                Some("n")
            );
        }
        assert_eq!(
            refused(json!({"model": "m", "messages": hello(), "stream": "yes"})).as_deref(),
            Some("stream")
        );
    }

    #[test]
    fn streaming_is_asked_by_the_body_or_forced_by_the_route() {
        let body = |extra: Value| {
            let mut body = json!({"model": "m", "messages": hello()});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        let parsed = |b: Value, force: bool| ChatRequest::parse(b, force).unwrap();
        assert!(parsed(body(json!({"stream": true})), false).streamed);
        assert!(parsed(body(json!({"stream": false})), true).streamed);
        assert!(!parsed(body(json!({"stream": null})), false).streamed);
        let usage = parsed(
            body(json!({"stream": true, "stream_options": {"include_usage": true}})),
            false,
        );
        assert!(usage.include_usage);
    }

    #[test]
    fn the_completion_budget_is_max_completion_tokens_then_max_tokens_and_is_rewritten() {
        let parsed = |extra: Value| {
            let mut body = json!({"model": "m", "messages": hello()});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            ChatRequest::parse(body, false).unwrap()
        };
        assert_eq!(parsed(json!({})).wanted_completion(), None);
        assert_eq!(
            parsed(json!({"max_tokens": 50})).wanted_completion(),
            Some(50)
        );
        assert_eq!(
            parsed(json!({"max_tokens": 50, "max_completion_tokens": 20})).wanted_completion(),
            Some(20)
        );
        assert_eq!(parsed(json!({"max_tokens": 0})).wanted_completion(), None);

        let mut plain = parsed(json!({}));
        plain.limit_completion(1024);
        assert_eq!(plain.body["max_tokens"], 1024);
        assert!(plain.body.get("max_completion_tokens").is_none());
        let mut both = parsed(json!({"max_completion_tokens": 20}));
        both.limit_completion(20);
        assert_eq!(both.body["max_tokens"], 20);
        assert_eq!(both.body["max_completion_tokens"], 20);
        assert_eq!(plain.prompt_bound(), quota::prompt_upper_bound(&plain.body));
    }

    #[test]
    fn unknown_and_unmetered_fields_are_refused_and_platform_fields_dropped() {
        for field in [
            "plugins",
            "models",
            "route",
            "provider",
            "transforms",
            "foo",
        ] {
            let error = ChatRequest::parse(
                json!({"model": "m", "messages": hello(), field: ["x"]}),
                false,
            )
            .unwrap_err();
            assert_eq!(error.param.as_deref(), Some(field));
            assert_eq!(error.code, "unknown_parameter", "{field}");
        }
        for field in REFUSED {
            let error = ChatRequest::parse(
                json!({"model": "m", "messages": hello(), *field: {}}),
                false,
            )
            .unwrap_err();
            assert_eq!(error.code, "unsupported_parameter", "{field}");
        }
        let request = ChatRequest::parse(
            json!({"model": "m", "messages": hello(), "store": true, "metadata": {"a": "b"},
                   "service_tier": "priority", "tools": [], "seed": 1}),
            false,
        )
        .unwrap();
        assert_eq!(
            request.body,
            json!({"model": "m", "messages": hello(), "tools": [], "seed": 1})
        );
    }

    #[test]
    fn the_whole_request_is_reserved_for_every_choice() {
        let plain = ChatRequest::parse(
            json!({"model": "m", "messages": hello(), "max_tokens": 100}),
            false,
        )
        .unwrap();
        let mut many = ChatRequest::parse(
            json!({"model": "m", "messages": hello(), "max_tokens": 100, "n": 3,
                   "tools": [{"type": "function", "function": {"name": "lookup", "description": "x".repeat(500)}}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": "y".repeat(300)}}}}),
            false,
        )
        .unwrap();
        assert_eq!(plain.wanted_completion(), Some(100));
        assert_eq!(many.wanted_completion(), Some(300), "n × max_tokens");
        assert!(
            many.prompt_bound() >= plain.prompt_bound() + 800,
            "tools and the response format count: {} vs {}",
            many.prompt_bound(),
            plain.prompt_bound()
        );
        many.limit_completion(240);
        assert_eq!(
            many.body["max_tokens"], 80,
            "the granted budget shared by the choices"
        );
    }

    #[test]
    fn the_documented_request_names_exactly_the_fields_accepted() {
        use utoipa::PartialSchema;
        let schema =
            serde_json::to_value(super::super::schema::ChatCompletionRequest::schema()).unwrap();
        let mut documented: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        documented.sort_unstable();
        let mut accepted: Vec<&str> = FORWARDED.iter().chain(DROPPED).copied().collect();
        accepted.sort_unstable();
        assert_eq!(documented, accepted);
        assert_eq!(schema["additionalProperties"], json!(false));
    }
}
