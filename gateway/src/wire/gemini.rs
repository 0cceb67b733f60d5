//! Translation between the OpenAI Chat Completions wire format and Google Gemini's native
//! `generateContent` / `streamGenerateContent?alt=sse` format.
//!
//! Pure functions over `serde_json::Value`: no I/O, no HTTP client. [`Gemini`] puts them behind
//! the [`WireFormat`] interface, with the endpoint (streaming or not) and the key header.

use platform::config::ProviderConfig;
use serde_json::{json, Map, Value};

use super::{Auth, Invalid, Reply, UpstreamRequest, Usage, WireFormat};

pub struct Gemini;

impl WireFormat for Gemini {
    fn request(
        &self,
        provider: &ProviderConfig,
        upstream_model: &str,
        body: &Value,
        stream: bool,
    ) -> Result<UpstreamRequest, Invalid> {
        let action = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        Ok(UpstreamRequest {
            url: format!(
                "{}/v1beta/models/{upstream_model}:{action}",
                provider.base_url
            ),
            auth: Auth::Header("x-goog-api-key", provider.api_key.clone()),
            body: request(body)?,
        })
    }

    /// Gemini reports cumulative usage on stream events: the last one counts.
    fn usage(&self, answer: &Value) -> Option<Usage> {
        answer
            .get("usageMetadata")
            .filter(|meta| meta.is_object())
            .map(usage_of)
    }

    fn response(&self, answer: Value, reply: &Reply) -> Value {
        response(&answer, &reply.id, reply.created, &reply.model).0
    }

    fn chunks(&self, event: Value, reply: &Reply, first: bool) -> Vec<Value> {
        stream_chunk(&event, &reply.id, reply.created, &reply.model, first).0
    }

    /// Gemini's events are not OpenAI chunks, so none of them is the usage chunk: it is made here.
    fn usage_chunk(&self, usage: Usage, reply: &Reply) -> Option<Value> {
        Some(json!({
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "choices": [],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        }))
    }
}

/// The Gemini role a chat message becomes, or `System` for the system instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    System,
    User,
    Model,
}

impl Role {
    fn gemini(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Model => "model",
        }
    }
}

/// OpenAI chat request body -> Gemini GenerateContentRequest body.
pub fn request(openai: &serde_json::Value) -> Result<serde_json::Value, Invalid> {
    let body = openai
        .as_object()
        .ok_or_else(|| Invalid::new("messages", "the request body must be a JSON object"))?;
    reject_tools(body)?;

    let (system, contents) = contents(body.get("messages"))?;
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({ "parts": [{ "text": system.join("\n\n") }] }),
        );
    }
    let config = generation_config(body)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

/// Gemini GenerateContentResponse (non-streaming) -> OpenAI chat.completion object.
/// `id` and `created` are given by the caller; `model` is the public model name to report.
pub fn response(
    gemini: &serde_json::Value,
    id: &str,
    created: i64,
    model: &str,
) -> (serde_json::Value, Usage) {
    let usage = gemini
        .get("usageMetadata")
        .map(usage_of)
        .unwrap_or_default();
    let candidates = candidates(gemini);
    let choices: Vec<Value> = if candidates.is_empty() {
        vec![choice(0, String::new(), "content_filter")]
    } else {
        candidates
            .iter()
            .enumerate()
            .map(|(position, candidate)| {
                let reason = candidate
                    .get("finishReason")
                    .and_then(Value::as_str)
                    .map_or("stop", finish_reason);
                choice(
                    candidate_index(candidate, position),
                    text_of(candidate),
                    reason,
                )
            })
            .collect()
    };
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    });
    (body, usage)
}

/// One Gemini SSE event's JSON (a GenerateContentResponse chunk) -> zero or more OpenAI chat.completion.chunk objects,
/// plus the cumulative usage that chunk reported (Gemini reports cumulative usageMetadata: callers keep the last one).
/// `first` is true for the first chunk of the stream (then the delta carries "role":"assistant").
pub fn stream_chunk(
    gemini: &serde_json::Value,
    id: &str,
    created: i64,
    model: &str,
    first: bool,
) -> (Vec<serde_json::Value>, Option<Usage>) {
    let usage = gemini
        .get("usageMetadata")
        .filter(|meta| meta.is_object())
        .map(usage_of);
    let chunk = |index: u64, delta: Value, reason: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": index, "delta": delta, "finish_reason": reason }],
        })
    };
    let opening = |text: String| {
        if first {
            json!({ "role": "assistant", "content": text })
        } else {
            json!({ "content": text })
        }
    };

    let mut out = Vec::new();
    let candidates = candidates(gemini);
    if candidates.is_empty() {
        // A blocked prompt arrives as a chunk without candidates but with a block reason.
        let blocked = gemini
            .get("promptFeedback")
            .and_then(|feedback| feedback.get("blockReason"))
            .is_some_and(|reason| !reason.is_null());
        if blocked {
            if first {
                out.push(chunk(0, opening(String::new()), None));
            }
            out.push(chunk(0, json!({}), Some("content_filter")));
        }
        return (out, usage);
    }
    for (position, candidate) in candidates.iter().enumerate() {
        let index = candidate_index(candidate, position);
        let text = text_of(candidate);
        let reason = candidate.get("finishReason").and_then(Value::as_str);
        // The role goes out even when the first chunk carries no text, so clients always see it.
        if !text.is_empty() || first {
            out.push(chunk(index, opening(text), None));
        }
        if let Some(reason) = reason {
            out.push(chunk(index, json!({}), Some(finish_reason(reason))));
        }
    }
    (out, usage)
}

/// Gemini finishReason -> OpenAI finish_reason.
pub fn finish_reason(gemini_reason: &str) -> &'static str {
    match gemini_reason {
        "STOP" => "stop",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => "content_filter",
        _ => "stop",
    }
}

// ---------------------------------------------------------------------------------------------
// Request helpers
// ---------------------------------------------------------------------------------------------

/// Function calling is not translated yet: refuse rather than silently drop the tools.
fn reject_tools(body: &Map<String, Value>) -> Result<(), Invalid> {
    for key in ["tools", "functions"] {
        let present = match body.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Array(items)) => !items.is_empty(),
            Some(_) => true,
        };
        if present {
            return Err(Invalid::new(
                key,
                "tool and function calling is not supported for this model yet",
            ));
        }
    }
    Ok(())
}

/// Splits the messages into the system texts and the Gemini `contents`, merging consecutive
/// messages of the same Gemini role into one content (Gemini wants alternating turns).
fn contents(messages: Option<&Value>) -> Result<(Vec<String>, Vec<Value>), Invalid> {
    let messages = match messages {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(Invalid::new("messages", "messages must not be empty"))
        }
        Some(_) => return Err(Invalid::new("messages", "messages must be an array")),
    };

    let mut system = Vec::new();
    let mut turns: Vec<(Role, Vec<Value>)> = Vec::new();
    for (at, message) in messages.iter().enumerate() {
        let role = role_of(message, at)?;
        let texts = texts_of(message, at)?;
        match role {
            Role::System => system.extend(texts.into_iter().filter(|t| !t.is_empty())),
            Role::User | Role::Model => {
                let parts: Vec<Value> = texts
                    .into_iter()
                    // Gemini rejects empty text parts.
                    .filter(|t| !t.is_empty())
                    .map(|text| json!({ "text": text }))
                    .collect();
                if parts.is_empty() {
                    continue;
                }
                match turns.last_mut() {
                    Some((last, existing)) if *last == role => existing.extend(parts),
                    _ => turns.push((role, parts)),
                }
            }
        }
    }
    if turns.is_empty() {
        return Err(Invalid::new(
            "messages",
            "messages must include at least one non-empty user or assistant message",
        ));
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({ "role": role.gemini(), "parts": parts }))
        .collect();
    Ok((system, contents))
}

fn role_of(message: &Value, at: usize) -> Result<Role, Invalid> {
    let Some(message) = message.as_object() else {
        return Err(Invalid::new(
            "messages",
            format!("messages[{at}] must be an object"),
        ));
    };
    let role = match message.get("role") {
        Some(Value::String(role)) => role.as_str(),
        _ => {
            return Err(Invalid::new(
                "messages",
                format!("messages[{at}].role is required and must be a string"),
            ))
        }
    };
    match role {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => {
            let calls = ["tool_calls", "function_call"]
                .iter()
                .any(|key| match message.get(*key) {
                    None | Some(Value::Null) => false,
                    Some(Value::Array(items)) => !items.is_empty(),
                    Some(_) => true,
                });
            if calls {
                return Err(Invalid::new(
                    "messages",
                    format!(
                        "messages[{at}]: assistant tool calls are not supported for this model yet"
                    ),
                ));
            }
            Ok(Role::Model)
        }
        "tool" | "function" => Err(Invalid::new(
            "messages",
            format!("messages[{at}]: role \"{role}\" is not supported for this model yet"),
        )),
        other => Err(Invalid::new(
            "messages",
            format!(
                "messages[{at}].role \"{other}\" is not one of system, developer, user, assistant"
            ),
        )),
    }
}

/// The text pieces of a message's content: a string, or an array of `text` parts.
fn texts_of(message: &Value, at: usize) -> Result<Vec<String>, Invalid> {
    match message.get("content") {
        Some(Value::String(text)) => Ok(vec![text.clone()]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(p, part)| text_part(part, at, p))
            .collect(),
        None | Some(Value::Null) => Err(Invalid::new(
            "messages",
            format!("messages[{at}].content is required"),
        )),
        Some(_) => Err(Invalid::new(
            "messages",
            format!("messages[{at}].content must be a string or an array of content parts"),
        )),
    }
}

fn text_part(part: &Value, at: usize, p: usize) -> Result<String, Invalid> {
    let kind = part.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => match part.get("text") {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(Invalid::new(
                "messages",
                format!("messages[{at}].content[{p}].text must be a string"),
            )),
        },
        Some(kind @ ("image_url" | "input_audio" | "file")) => Err(Invalid::new(
            "messages",
            format!("messages[{at}].content[{p}]: \"{kind}\" parts are not supported for this model yet"),
        )),
        Some(kind) => Err(Invalid::new(
            "messages",
            format!("messages[{at}].content[{p}]: unknown content part type \"{kind}\""),
        )),
        None => Err(Invalid::new(
            "messages",
            format!("messages[{at}].content[{p}].type is required"),
        )),
    }
}

/// The OpenAI sampling parameters in Gemini's `generationConfig` terms. `null` means absent.
fn generation_config(body: &Map<String, Value>) -> Result<Map<String, Value>, Invalid> {
    let get = |key: &str| body.get(key).filter(|value| !value.is_null());
    let mut config = Map::new();

    for (param, field) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(value) = get(param) {
            if !value.is_number() {
                return Err(Invalid::new(param, format!("{param} must be a number")));
            }
            config.insert(field.into(), value.clone());
        }
    }

    // `max_completion_tokens` supersedes the deprecated `max_tokens` when both are sent.
    let max = ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|param| get(param).map(|value| (param, value)));
    if let Some((param, value)) = max {
        let tokens = value.as_u64().ok_or_else(|| {
            Invalid::new(param, format!("{param} must be a non-negative integer"))
        })?;
        config.insert("maxOutputTokens".into(), json!(tokens));
    }

    if let Some(stop) = get("stop") {
        let sequences: Vec<Value> = match stop {
            Value::String(sequence) => vec![Value::String(sequence.clone())],
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(_) => Ok(item.clone()),
                    _ => Err(Invalid::new(
                        "stop",
                        "stop must be a string or an array of strings",
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(Invalid::new(
                    "stop",
                    "stop must be a string or an array of strings",
                ))
            }
        };
        if !sequences.is_empty() {
            config.insert("stopSequences".into(), Value::Array(sequences));
        }
    }

    if let Some(n) = get("n") {
        let n = n
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Invalid::new("n", "n must be a positive integer"))?;
        config.insert("candidateCount".into(), json!(n));
    }

    if let Some(seed) = get("seed") {
        // Gemini's seed is an int32.
        let seed = seed
            .as_i64()
            .and_then(|seed| i32::try_from(seed).ok())
            .ok_or_else(|| {
                Invalid::new(
                    "seed",
                    "seed must be an integer within the 32-bit signed range",
                )
            })?;
        config.insert("seed".into(), json!(seed));
    }

    if let Some(format) = get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                return Err(Invalid::new(
                    "response_format",
                    "response_format json_schema is not supported for this model yet",
                ))
            }
            _ => {
                return Err(Invalid::new(
                    "response_format",
                    "response_format.type must be one of text, json_object",
                ))
            }
        }
    }

    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// Response helpers
// ---------------------------------------------------------------------------------------------

fn candidates(gemini: &Value) -> &[Value] {
    gemini
        .get("candidates")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn candidate_index(candidate: &Value, position: usize) -> u64 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

/// The candidate's answer text: its text parts, concatenated, without thought summaries.
fn text_of(candidate: &Value) -> String {
    candidate
        .get("content")
        .and_then(|content| content.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|part| part.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

fn choice(index: u64, content: String, reason: &str) -> Value {
    json!({
        "index": index,
        "message": { "role": "assistant", "content": content },
        "finish_reason": reason,
    })
}

/// Gemini `usageMetadata` in OpenAI terms; thinking tokens count as completion tokens.
fn usage_of(meta: &Value) -> Usage {
    let count = |key: &str| meta.get(key).and_then(Value::as_u64).unwrap_or(0);
    let prompt_tokens = count("promptTokenCount");
    let completion_tokens =
        count("candidatesTokenCount").saturating_add(count("thoughtsTokenCount"));
    let total_tokens = meta
        .get("totalTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| prompt_tokens.saturating_add(completion_tokens));
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: Value) -> Invalid {
        match request(&body) {
            Err(invalid) => invalid,
            Ok(out) => panic!("expected Invalid, got {out}"),
        }
    }

    #[test]
    fn system_messages_become_the_instruction_and_turns_alternate() {
        let body = json!({
            "model": "gemini-2.5-flash",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "Hi" },
                { "role": "developer", "content": "Answer in French." },
                { "role": "user", "content": "How are you?" },
                { "role": "assistant", "content": "Bien." },
                { "role": "assistant", "content": "Et toi ?" },
                { "role": "user", "content": "Good." },
            ],
        });
        let out = request(&body).unwrap();
        assert_eq!(
            out,
            json!({
                "systemInstruction": { "parts": [{ "text": "Be brief.\n\nAnswer in French." }] },
                "contents": [
                    { "role": "user", "parts": [{ "text": "Hi" }, { "text": "How are you?" }] },
                    { "role": "model", "parts": [{ "text": "Bien." }, { "text": "Et toi ?" }] },
                    { "role": "user", "parts": [{ "text": "Good." }] },
                ],
            })
        );
    }

    #[test]
    fn without_system_or_parameters_only_contents_are_sent() {
        let out = request(&json!({
            "messages": [{ "role": "user", "content": "Hi" }],
            "stream": true,
            "temperature": null,
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({ "contents": [{ "role": "user", "parts": [{ "text": "Hi" }] }] })
        );
    }

    #[test]
    fn generation_config_maps_every_parameter() {
        let out = request(&json!({
            "messages": [{ "role": "user", "content": "Hi" }],
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 256,
            "stop": ["END", "STOP"],
            "n": 2,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "seed": 42,
            "response_format": { "type": "json_object" },
        }))
        .unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({
                "temperature": 0.2,
                "topP": 0.9,
                "maxOutputTokens": 256,
                "stopSequences": ["END", "STOP"],
                "candidateCount": 2,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
                "seed": 42,
                "responseMimeType": "application/json",
            })
        );
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let out = request(&json!({
            "messages": [{ "role": "user", "content": "Hi" }],
            "max_tokens": 10,
            "max_completion_tokens": 20,
        }))
        .unwrap();
        assert_eq!(out["generationConfig"], json!({ "maxOutputTokens": 20 }));
    }

    #[test]
    fn stop_as_a_string_becomes_a_one_element_array() {
        let out = request(&json!({
            "messages": [{ "role": "user", "content": "Hi" }],
            "stop": "\n\n",
            "response_format": { "type": "text" },
        }))
        .unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({ "stopSequences": ["\n\n"] })
        );
    }

    #[test]
    fn array_content_takes_the_text_parts() {
        let out = request(&json!({
            "messages": [
                { "role": "system", "content": [{ "type": "text", "text": "Rule one." }, { "type": "text", "text": "Rule two." }] },
                { "role": "user", "content": [{ "type": "text", "text": "Look:" }, { "type": "text", "text": "two parts" }] },
            ],
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({
                "systemInstruction": { "parts": [{ "text": "Rule one.\n\nRule two." }] },
                "contents": [
                    { "role": "user", "parts": [{ "text": "Look:" }, { "text": "two parts" }] },
                ],
            })
        );
    }

    #[test]
    fn invalid_messages_are_refused() {
        for body in [
            json!({}),
            json!({ "messages": [] }),
            json!({ "messages": null }),
            json!({ "messages": "Hi" }),
            json!({ "messages": [{ "role": "system", "content": "only a system prompt" }] }),
            json!({ "messages": [{ "content": "no role" }] }),
            json!({ "messages": [{ "role": 1, "content": "numeric role" }] }),
            json!({ "messages": [{ "role": "user" }] }),
            json!({ "messages": [{ "role": "user", "content": 5 }] }),
            json!({ "messages": [{ "role": "user", "content": [{ "text": "no type" }] }] }),
        ] {
            assert_eq!(invalid(body).param, "messages");
        }
    }

    #[test]
    fn image_parts_are_refused() {
        let refused = invalid(json!({
            "messages": [{
                "role": "user",
                "content": [
                    { "type": "text", "text": "What is this?" },
                    { "type": "image_url", "image_url": { "url": "https://example.com/a.png" } },
                ],
            }],
        }));
        assert_eq!(refused.param, "messages");
        assert!(refused.message.contains("image_url"), "{}", refused.message);
    }

    #[test]
    fn tool_roles_and_tool_calls_are_refused() {
        for role in ["tool", "function"] {
            let refused = invalid(json!({
                "messages": [
                    { "role": "user", "content": "Hi" },
                    { "role": role, "content": "42", "tool_call_id": "call_1", "name": "f" },
                ],
            }));
            assert_eq!(refused.param, "messages");
            assert!(refused.message.contains(role), "{}", refused.message);
        }
        let refused = invalid(json!({
            "messages": [
                { "role": "user", "content": "Hi" },
                { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function" }] },
            ],
        }));
        assert_eq!(refused.param, "messages");
        let refused = invalid(json!({
            "messages": [{ "role": "user", "content": "Hi" }],
            "tools": [{ "type": "function", "function": { "name": "f" } }],
        }));
        assert_eq!(refused.param, "tools");
    }

    #[test]
    fn unknown_roles_are_refused() {
        let refused = invalid(json!({ "messages": [{ "role": "narrator", "content": "Once" }] }));
        assert_eq!(refused.param, "messages");
        assert!(refused.message.contains("narrator"), "{}", refused.message);
    }

    #[test]
    fn ill_typed_parameters_name_the_parameter() {
        let hi = json!([{ "role": "user", "content": "Hi" }]);
        for (param, value) in [
            ("temperature", json!("hot")),
            ("max_tokens", json!(-1)),
            ("max_completion_tokens", json!(1.5)),
            ("stop", json!([1])),
            ("n", json!(0)),
            ("seed", json!(1_i64 << 40)),
            ("response_format", json!({ "type": "json_schema" })),
        ] {
            let mut body = json!({ "messages": hi });
            body[param] = value;
            assert_eq!(invalid(body).param, param);
        }
    }

    #[test]
    fn a_response_becomes_a_chat_completion_with_usage() {
        let gemini = json!({
            "candidates": [{
                "content": {
                    "role": "model",
                    "parts": [{ "text": "thinking...", "thought": true }, { "text": "Hello" }, { "text": ", world" }],
                },
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": {
                "promptTokenCount": 7,
                "candidatesTokenCount": 3,
                "thoughtsTokenCount": 5,
                "totalTokenCount": 15,
            },
            "modelVersion": "gemini-2.5-flash",
        });
        let (body, usage) = response(
            &gemini,
            "chatcmpl-1",
            1_700_000_000,
            "google/gemini-2.5-flash",
        );
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 7,
                completion_tokens: 8,
                total_tokens: 15
            }
        );
        assert_eq!(
            body,
            json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "google/gemini-2.5-flash",
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": "Hello, world" },
                    "finish_reason": "stop",
                }],
                "usage": { "prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15 },
            })
        );
    }

    #[test]
    fn several_candidates_become_several_choices_and_total_defaults_to_the_sum() {
        let gemini = json!({
            "candidates": [
                { "content": { "parts": [{ "text": "a" }] }, "finishReason": "MAX_TOKENS" },
                { "content": { "parts": [{ "text": "b" }] }, "finishReason": "STOP" },
            ],
            "usageMetadata": { "promptTokenCount": 4, "candidatesTokenCount": 2 },
        });
        let (body, usage) = response(&gemini, "id", 1, "m");
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 4,
                completion_tokens: 2,
                total_tokens: 6
            }
        );
        assert_eq!(body["choices"][0]["index"], 0);
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["choices"][1]["index"], 1);
        assert_eq!(body["choices"][1]["message"]["content"], "b");
    }

    #[test]
    fn a_blocked_prompt_is_one_empty_content_filter_choice() {
        let gemini = json!({
            "promptFeedback": { "blockReason": "SAFETY", "safetyRatings": [] },
            "usageMetadata": { "promptTokenCount": 9, "totalTokenCount": 9 },
        });
        let (body, usage) = response(&gemini, "id", 1, "m");
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 9,
                completion_tokens: 0,
                total_tokens: 9
            }
        );
        assert_eq!(
            body["choices"],
            json!([{
                "index": 0,
                "message": { "role": "assistant", "content": "" },
                "finish_reason": "content_filter",
            }])
        );
    }

    #[test]
    fn a_blocked_candidate_without_content_is_empty() {
        let gemini = json!({ "candidates": [{ "finishReason": "SAFETY", "index": 0 }] });
        let (body, usage) = response(&gemini, "id", 1, "m");
        assert_eq!(usage, Usage::default());
        assert_eq!(body["choices"][0]["message"]["content"], "");
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn the_first_stream_chunk_carries_the_role() {
        let gemini = json!({
            "candidates": [{ "content": { "role": "model", "parts": [{ "text": "Hel" }] }, "index": 0 }],
            "usageMetadata": { "promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6 },
        });
        let (chunks, usage) = stream_chunk(&gemini, "chatcmpl-1", 10, "m", true);
        assert_eq!(
            chunks,
            vec![json!({
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 10,
                "model": "m",
                "choices": [{
                    "index": 0,
                    "delta": { "role": "assistant", "content": "Hel" },
                    "finish_reason": null,
                }],
            })]
        );
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 1,
                total_tokens: 6
            })
        );

        let (later, _) = stream_chunk(&gemini, "chatcmpl-1", 10, "m", false);
        assert_eq!(later[0]["choices"][0]["delta"], json!({ "content": "Hel" }));
    }

    #[test]
    fn the_last_stream_chunk_finishes_with_cumulative_usage() {
        let gemini = json!({
            "candidates": [{ "content": { "parts": [{ "text": "lo" }] }, "finishReason": "MAX_TOKENS", "index": 0 }],
            "usageMetadata": { "promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 10 },
        });
        let (chunks, usage) = stream_chunk(&gemini, "id", 10, "m", false);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({ "content": "lo" }));
        assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[1]["object"], "chat.completion.chunk");
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 5,
                total_tokens: 10
            })
        );
    }

    #[test]
    fn stream_chunks_without_text_or_usage_emit_nothing() {
        let (chunks, usage) = stream_chunk(
            &json!({ "candidates": [{ "content": { "parts": [{ "text": "" }] } }] }),
            "id",
            1,
            "m",
            false,
        );
        assert!(chunks.is_empty());
        assert_eq!(usage, None);

        let (chunks, usage) = stream_chunk(
            &json!({ "usageMetadata": { "promptTokenCount": 3, "candidatesTokenCount": 4 } }),
            "id",
            1,
            "m",
            false,
        );
        assert!(chunks.is_empty());
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7
            })
        );
    }

    #[test]
    fn a_blocked_prompt_in_a_stream_finishes_with_content_filter() {
        let gemini = json!({ "promptFeedback": { "blockReason": "PROHIBITED_CONTENT" } });
        let (chunks, _) = stream_chunk(&gemini, "id", 1, "m", true);
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({ "role": "assistant", "content": "" })
        );
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn finish_reasons_map_to_openai_terms() {
        for (gemini, openai) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("OTHER", "stop"),
            ("FINISH_REASON_UNSPECIFIED", "stop"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("", "stop"),
        ] {
            assert_eq!(finish_reason(gemini), openai, "{gemini}");
        }
    }

    #[test]
    fn streams_go_to_stream_generate_content_with_the_key_header_and_end_with_a_usage_chunk() {
        let provider = ProviderConfig {
            name: "gemini".into(),
            base_url: "https://generativelanguage.googleapis.com".into(),
            api_key: "AIza".into(),
        };
        let body = json!({ "messages": [{ "role": "user", "content": "Hi" }] });
        let request = Gemini
            .request(&provider, "gemini-1.5-flash", &body, true)
            .unwrap();
        assert_eq!(
            request.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(request.auth, Auth::Header("x-goog-api-key", "AIza".into()));
        assert_eq!(request.body, super::request(&body).unwrap());
        let refused = Gemini.request(&provider, "m", &json!({ "messages": [] }), false);
        assert_eq!(refused.unwrap_err().param, "messages");

        let reply = Reply {
            id: "chatcmpl-1".into(),
            created: 10,
            model: "gemini-1.5-flash".into(),
        };
        let usage = Usage {
            prompt_tokens: 5,
            completion_tokens: 2,
            total_tokens: 7,
        };
        assert_eq!(
            Gemini.usage_chunk(usage, &reply),
            Some(json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 10,
                "model": "gemini-1.5-flash", "choices": [],
                "usage": { "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7 },
            }))
        );
        assert_eq!(Gemini.usage(&json!({ "usageMetadata": null })), None);
    }
}
