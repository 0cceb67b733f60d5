//! OpenAI's Chat Completions format, spoken by OpenRouter and by any OpenAI-compatible server
//! (vLLM, Ollama, OpenAI itself). The client's body goes on as it is, with the deployment's
//! upstream model id; answers come back with the public model name.

use platform::config::ProviderConfig;
use serde_json::{json, Value};

use super::{Auth, Invalid, Reply, UpstreamRequest, Usage, WireFormat};

pub struct OpenAi;

impl WireFormat for OpenAi {
    /// Usage is always asked for on streams, so every call is billed; the client's own
    /// `stream_options` only decide whether it sees the usage chunk.
    fn request(
        &self,
        provider: &ProviderConfig,
        upstream_model: &str,
        body: &Value,
        stream: bool,
    ) -> Result<UpstreamRequest, Invalid> {
        // Only the fields the gateway knows and meters (`chat::request::FORWARDED`): what the
        // request check let through, filtered again here, where the body leaves us.
        let mut upstream = Value::Object(
            body.as_object()
                .map(|fields| {
                    fields
                        .iter()
                        .filter(|(name, _)| {
                            crate::chat::request::FORWARDED.contains(&name.as_str())
                        })
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        );
        upstream["model"] = Value::String(upstream_model.to_string());
        upstream["stream"] = Value::Bool(stream);
        if stream {
            upstream["stream_options"] = json!({"include_usage": true});
        }
        Ok(UpstreamRequest {
            url: format!("{}/chat/completions", provider.base_url),
            auth: Auth::Bearer(provider.api_key.clone()),
            body: upstream,
        })
    }

    fn usage(&self, answer: &Value) -> Option<Usage> {
        let usage = answer.get("usage").filter(|u| u.is_object())?;
        let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
        let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: usage["total_tokens"]
                .as_u64()
                .unwrap_or(prompt + completion),
        })
    }

    fn response(&self, answer: Value, reply: &Reply) -> Value {
        renamed(answer, reply)
    }

    /// An event that is not a JSON object carries nothing to relay.
    fn chunks(&self, event: Value, reply: &Reply, _first: bool) -> Vec<Value> {
        if !event.is_object() {
            return Vec::new();
        }
        vec![renamed(event, reply)]
    }
}

fn renamed(mut answer: Value, reply: &Reply) -> Value {
    if let Some(object) = answer.as_object_mut() {
        object.insert("model".into(), Value::String(reply.model.clone()));
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openrouter() -> ProviderConfig {
        ProviderConfig {
            name: "openrouter".into(),
            base_url: "https://openrouter.ai/api/v1".into(),
            api_key: "sk-or".into(),
        }
    }

    fn reply() -> Reply {
        Reply {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "gpt-4o".into(),
        }
    }

    #[test]
    fn the_body_goes_on_with_the_upstream_model_and_usage_asked_for_on_streams() {
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.3, "stream_options": {"include_usage": false}});
        let request = OpenAi
            .request(&openrouter(), "openai/gpt-4o", &body, true)
            .expect("always translates");
        assert_eq!(request.url, "https://openrouter.ai/api/v1/chat/completions");
        assert_eq!(request.auth, Auth::Bearer("sk-or".into()));
        assert_eq!(
            request.body,
            json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hi"}],
                "temperature": 0.3, "stream": true, "stream_options": {"include_usage": true}})
        );
        let whole = OpenAi
            .request(&openrouter(), "openai/gpt-4o", &body, false)
            .expect("always translates");
        assert_eq!(whole.body["stream"], false);
        assert_eq!(
            whole.body["stream_options"],
            json!({"include_usage": false})
        );
    }

    #[test]
    fn usage_is_read_and_a_missing_total_is_the_sum() {
        let usage = |value: Value| OpenAi.usage(&value);
        assert_eq!(
            usage(
                json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9}})
            ),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 9
            })
        );
        assert_eq!(
            usage(json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4}})),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7
            })
        );
        assert_eq!(usage(json!({"usage": null})), None);
        assert_eq!(usage(json!({"choices": []})), None);
        assert_eq!(usage(json!([1, 2])), None);
    }

    #[test]
    fn answers_and_chunks_carry_the_public_model_name() {
        let answer = OpenAi.response(json!({"id": "x", "model": "openai/gpt-4o-2024"}), &reply());
        assert_eq!(answer, json!({"id": "x", "model": "gpt-4o"}));
        let chunks = OpenAi.chunks(
            json!({"choices": [{"delta": {"content": "Hi"}}], "model": "openai/gpt-4o"}),
            &reply(),
            true,
        );
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["model"], "gpt-4o");
        assert!(OpenAi.chunks(json!(42), &reply(), false).is_empty());
        assert_eq!(OpenAi.usage_chunk(Usage::default(), &reply()), None);
    }
}
