//! The chat gateway end to end: OpenAI-compatible answers from local servers that speak
//! OpenRouter's and Gemini's wire formats, failover, the circuit breaker, billing of abandoned
//! streams, one event per call, and the official OpenAI Python SDK.

use std::time::Duration;

use e2e::upstream::{Behavior, Upstream};
use e2e::{admin_key, wait_for, Api, Env, Tenant};
use platform::config::ProviderConfig;
use serde_json::{json, Value};

struct Chat {
    env: Env,
    app: aihub::Running,
    admin: Api,
    key: String,
    caller: Api,
    primary: Upstream,
    secondary: Upstream,
    tenant: Tenant,
}

/// Prices used by the test catalog, in millionths of a dollar per million tokens.
const INPUT_PRICE: i64 = 2_500_000;
const OUTPUT_PRICE: i64 = 10_000_000;

async fn chat_env() -> Chat {
    let primary = Upstream::start().await;
    let secondary = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = json!([
        {"name": "gpt-4o", "tier": "basic", "context_length": 128000, "input_micros_per_mtok": INPUT_PRICE,
         "output_micros_per_mtok": OUTPUT_PRICE, "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o"}]},
        {"name": "failover-model", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": INPUT_PRICE,
         "output_micros_per_mtok": OUTPUT_PRICE, "deployments": [
            {"provider": "openrouter", "upstream_model": "primary/model", "priority": 0},
            {"provider": "openai", "upstream_model": "secondary/model", "priority": 1}]},
        {"name": "gemini-1.5-pro", "tier": "basic", "context_length": 2000000, "input_micros_per_mtok": 1250000,
         "output_micros_per_mtok": 5000000, "deployments": [{"provider": "gemini", "upstream_model": "gemini-1.5-pro"}]},
        {"name": "premium-model", "tier": "premium", "context_length": 1000, "input_micros_per_mtok": 1,
         "output_micros_per_mtok": 1, "deployments": [{"provider": "openrouter", "upstream_model": "premium/model"}]},
        {"name": "no-provider", "tier": "basic", "context_length": 1000, "input_micros_per_mtok": 1,
         "output_micros_per_mtok": 1, "deployments": [{"provider": "nowhere", "upstream_model": "x"}]}
    ]);
    let file = std::env::temp_dir().join(format!("aihub-models-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    let gateway = &mut env.config.gateway;
    gateway.models_file = Some(file.display().to_string());
    gateway.providers = vec![
        ProviderConfig {
            name: "openrouter".into(),
            base_url: primary.openai_base_url(),
            api_key: "or-test".into(),
        },
        ProviderConfig {
            name: "gemini".into(),
            base_url: primary.gemini_base_url(),
            api_key: "gm-test".into(),
        },
        ProviderConfig {
            name: "openai".into(),
            base_url: secondary.openai_base_url(),
            api_key: "oa-test".into(),
        },
    ];
    gateway.upstream_timeout = Duration::from_millis(1500);
    gateway.breaker_failures = 3;
    gateway.breaker_cooldown = Duration::from_secs(3);
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "chat").await;
    let key = admin_key(
        &admin,
        &tenant.org_id,
        Some(&tenant.owner_id),
        &["chat:write".into(), "models:read".into()],
    )
    .await;
    let caller = admin.with_token(&key);
    Chat {
        env,
        app,
        admin,
        key,
        caller,
        primary,
        secondary,
        tenant,
    }
}

fn hello() -> Value {
    json!([{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hello there, introduce yourself"}])
}

/// Words in the test conversation: what the fake upstreams count as prompt tokens.
const PROMPT_WORDS: u64 = 6;
/// Words in "Hello from <provider> <model>!": what they count as completion tokens.
const COMPLETION_WORDS: u64 = 4;

/// The `data:` payloads of an SSE body.
fn sse(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn content_of(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

async fn calls(env: &Env, n: i64) -> Vec<Value> {
    wait_for(Duration::from_secs(30), "chat calls projected", || async {
        env.count("SELECT count(*) FROM read.chat_calls").await >= n
    })
    .await;
    env.dump("read.chat_calls", "occurred_at, event_id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrouter_answers_in_openai_format_streaming_and_not() {
    let c = chat_env().await;
    let reply = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello(), "temperature": 0.7}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["x-aihub-provider"], "openrouter");
    assert_eq!(reply.body["object"], "chat.completion");
    assert_eq!(
        reply.body["model"], "gpt-4o",
        "the public model name, not the upstream id"
    );
    assert_eq!(
        reply.body["choices"][0]["message"]["content"],
        "Hello from openai openai/gpt-4o!"
    );
    assert_eq!(reply.body["usage"]["prompt_tokens"], PROMPT_WORDS);
    let sent = c.primary.requests();
    assert_eq!(sent[0].body["model"], "openai/gpt-4o");
    assert_eq!(sent[0].body["temperature"], 0.7);

    for path in ["/api/v1/chat/completions", "/api/v1/chat/stream"] {
        let response = c
            .caller
            .request(reqwest::Method::POST, path)
            .json(&json!({"model": "gpt-4o", "messages": hello(), "stream": true, "stream_options": {"include_usage": true}}))
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let events = sse(&response.text().await.expect("body"));
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(content_of(&events), "Hello from openai openai/gpt-4o!");
        let usage: Value = serde_json::from_str(&events[events.len() - 2]).expect("usage chunk");
        assert_eq!(usage["usage"]["completion_tokens"], COMPLETION_WORDS);
        assert!(events
            .iter()
            .filter(|e| *e != "[DONE]")
            .all(|e| e.contains("\"model\":\"gpt-4o\"")));
    }
    let last = c.primary.requests().pop().expect("request");
    assert_eq!(
        last.body["stream_options"]["include_usage"], true,
        "usage is always asked for upstream"
    );
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_answers_in_openai_format_with_its_usage() {
    let c = chat_env().await;
    let reply = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gemini-1.5-pro", "messages": hello(), "max_tokens": 50}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["x-aihub-provider"], "gemini");
    assert_eq!(
        reply.body["choices"][0]["message"]["content"],
        "Hello from gemini gemini-1.5-pro!"
    );
    assert_eq!(reply.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        reply.body["usage"],
        json!({"prompt_tokens": PROMPT_WORDS, "completion_tokens": COMPLETION_WORDS, "total_tokens": PROMPT_WORDS + COMPLETION_WORDS})
    );
    let sent = c.primary.requests().pop().expect("request");
    assert!(
        sent.path.ends_with("gemini-1.5-pro:generateContent"),
        "{}",
        sent.path
    );
    assert_eq!(
        sent.body["systemInstruction"]["parts"][0]["text"],
        "Be brief"
    );
    assert_eq!(sent.body["generationConfig"]["maxOutputTokens"], 50);

    let response = c
        .caller
        .request(reqwest::Method::POST, "/api/v1/chat/completions")
        .json(&json!({"model": "gemini-1.5-pro", "messages": hello(), "stream": true, "stream_options": {"include_usage": true}}))
        .send()
        .await
        .expect("stream");
    let events = sse(&response.text().await.expect("body"));
    assert_eq!(content_of(&events), "Hello from gemini gemini-1.5-pro!");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).expect("usage chunk");
    assert_eq!(
        usage["usage"]["completion_tokens"], COMPLETION_WORDS,
        "the last cumulative usageMetadata"
    );
    let rows = calls(&c.env, 2).await;
    assert!(rows.iter().all(|r| r["provider"] == "gemini"
        && r["completion_tokens"] == COMPLETION_WORDS
        && r["prompt_tokens"] == PROMPT_WORDS));
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_primary_fails_over_and_the_breaker_skips_it_until_cool_down() {
    let c = chat_env().await;
    let request = json!({"model": "failover-model", "messages": hello()});
    for behavior in [
        Behavior::Status(500),
        Behavior::Status(429),
        Behavior::DelayFirstByte(Duration::from_secs(4)),
    ] {
        c.primary.push(behavior.clone());
        let reply = c.caller.post("/api/v1/chat/completions", &request).await;
        assert_eq!(reply.status, 200, "{behavior:?}: {}", reply.body);
        assert_eq!(reply.headers["x-aihub-provider"], "openai", "{behavior:?}");
        assert_eq!(
            reply.body["choices"][0]["message"]["content"],
            "Hello from openai secondary/model!"
        );
    }
    let rows = calls(&c.env, 3).await;
    let outcomes: Vec<Value> = rows.iter().map(|r| r["attempts"].clone()).collect();
    assert_eq!(
        outcomes,
        vec![json!(2), json!(2), json!(2)],
        "each call recorded both attempts"
    );
    // The usage projection has the calls; the audit projection may still be a batch behind. Its
    // rows in chain order, the order the calls were appended (two calls may share a millisecond).
    c.env.wait_until_projected(Duration::from_secs(15)).await;
    let audit = c.env.dump("read.audit_log", "chain_seq").await;
    let attempts: Vec<Vec<String>> = audit
        .iter()
        .filter(|e| e["event_type"] == "chat.completion.succeeded")
        .map(|e| {
            // A chat call's data is its envelope's (migration 0033).
            e["envelope"]["data"]["attempts"]
                .as_array()
                .expect("attempts")
                .iter()
                .map(|a| a["outcome"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        attempts,
        vec![
            vec!["http_500", "ok"],
            vec!["http_429", "ok"],
            vec!["timeout", "ok"]
        ]
    );

    // Three failures in a row opened the primary's circuit: it is not even called now.
    let before = c.primary.requests().len();
    let reply = c.caller.post("/api/v1/chat/completions", &request).await;
    assert_eq!(reply.headers["x-aihub-provider"], "openai");
    assert_eq!(
        c.primary.requests().len(),
        before,
        "the open circuit skipped the primary"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reply = c.caller.post("/api/v1/chat/completions", &request).await;
    assert_eq!(
        reply.headers["x-aihub-provider"], "openrouter",
        "after the cool-down the primary serves again"
    );

    // Every deployment failing: 429 when all were rate limited, 502 otherwise.
    c.primary.push(Behavior::Status(429));
    c.secondary.push(Behavior::Status(429));
    let limited = c.caller.post("/api/v1/chat/completions", &request).await;
    assert_eq!(limited.assert_client_error(429)["type"], "rate_limit_error");
    c.primary.push(Behavior::Status(503));
    c.secondary.push(Behavior::Status(500));
    let failed = c.caller.post("/api/v1/chat/completions", &request).await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert!(failed.body["error"]["message"].is_string());
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_after_the_first_chunk_is_still_billed() {
    let c = chat_env().await;
    let mut response = c
        .caller
        .request(reqwest::Method::POST, "/api/v1/chat/completions")
        .json(&json!({"model": "gpt-4o", "messages": hello(), "stream": true}))
        .send()
        .await
        .expect("stream");
    let first = response
        .chunk()
        .await
        .expect("chunk")
        .expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(response);
    let rows = calls(&c.env, 1).await;
    assert_eq!(rows[0]["outcome"], "succeeded");
    assert_eq!(
        rows[0]["completion_tokens"], COMPLETION_WORDS,
        "billed for everything the upstream generated"
    );
    // The usage projection has the call; the audit projection may still be a batch behind.
    c.env.wait_until_projected(Duration::from_secs(15)).await;
    let audit = c.env.dump("read.audit_log", "occurred_at").await;
    let event = audit
        .iter()
        .find(|e| e["event_type"] == "chat.completion.succeeded")
        .expect("event");
    assert_eq!(event["data"], Value::Null, "stored once, in the envelope");
    assert_eq!(
        event["envelope"]["data"]["completion_tokens"],
        COMPLETION_WORDS
    );
    // The audit log's answers carry the call's data all the same, in the list and alone.
    let listed = c
        .tenant
        .owner
        .get("/api/v1/audit/logs?event_type=chat.completion.succeeded")
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.body["data"][0]["data"]["completion_tokens"],
        COMPLETION_WORDS
    );
    let id = event["event_id"].as_str().expect("id");
    let shown = c
        .tenant
        .owner
        .get(&format!("/api/v1/audit/logs/{id}"))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["data"]["completion_tokens"], COMPLETION_WORDS);
    assert_eq!(shown.body["envelope"]["data"], shown.body["data"]);
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_one_event_on_the_topic_with_exact_tokens_and_cost() {
    let c = chat_env().await;
    for _ in 0..3 {
        assert_eq!(
            c.caller
                .post(
                    "/api/v1/chat/completions",
                    &json!({"model": "gpt-4o", "messages": hello()})
                )
                .await
                .status,
            200
        );
    }
    c.caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "no-provider", "messages": hello()}),
        )
        .await
        .assert_client_error(503);
    let rows = calls(&c.env, 4).await;
    let succeeded: Vec<&Value> = rows
        .iter()
        .filter(|r| r["outcome"] == "succeeded")
        .collect();
    assert_eq!(succeeded.len(), 3);
    let expected_cost =
        (PROMPT_WORDS as i64 * INPUT_PRICE + COMPLETION_WORDS as i64 * OUTPUT_PRICE + 500_000)
            / 1_000_000;
    for row in &succeeded {
        assert_eq!(row["prompt_tokens"], PROMPT_WORDS);
        assert_eq!(row["completion_tokens"], COMPLETION_WORDS);
        assert_eq!(row["total_tokens"], PROMPT_WORDS + COMPLETION_WORDS);
        assert_eq!(row["cost_micros"], expected_cost);
        assert_eq!(row["org_id"], c.tenant.org_id.as_str());
    }
    assert_eq!(
        rows.iter()
            .filter(|r| r["outcome"] == "failed" && r["status"] == 503)
            .count(),
        1
    );
    // The same events, read from the topic as an integration would.
    let chat_events = e2e::kafka::read_until(
        &c.env.config.kafka,
        &c.env.config.topic,
        Duration::from_secs(60),
        |seen| seen.iter().filter(|m| is_chat(m)).count() >= 4,
    )
    .await;
    let mut total_cost = 0;
    for message in chat_events.iter().filter(|m| is_chat(m)) {
        let event: Value =
            serde_json::from_slice(rdkafka::Message::payload(message).expect("payload"))
                .expect("json");
        assert_eq!(
            rdkafka::Message::key(message).map(|k| String::from_utf8_lossy(k).into_owned()),
            Some(c.tenant.org_id.clone())
        );
        let text = event.to_string();
        assert!(
            !text.contains("introduce yourself") && !text.contains("Hello from"),
            "prompt or completion text in an event"
        );
        total_cost += event["data"]["cost_micros"].as_i64().unwrap_or(0);
    }
    assert_eq!(total_cost, 3 * expected_cost);
    // The key's last use falls out of its calls.
    wait_for(
        Duration::from_secs(30),
        "the key's last use recorded",
        || async {
            c.env
                .count("SELECT count(*) FROM read.api_keys WHERE last_used_at IS NOT NULL")
                .await
                == 1
        },
    )
    .await;
    let keys = c.tenant.owner.get("/api/v1/api-keys?limit=100").await;
    let used: Vec<&Value> = keys.body["data"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| !k["last_used_at"].is_null())
        .collect();
    assert_eq!(used.len(), 1, "{}", keys.body);
    c.app.stop().await;
}

fn is_chat(message: &rdkafka::message::OwnedMessage) -> bool {
    rdkafka::Message::headers(message)
        .and_then(|h| events::kafka::header_value(h, "ce_type"))
        .is_some_and(|t| t.starts_with("chat.completion."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chat_input_gets_4xx_in_the_openai_error_shape() {
    let c = chat_env().await;
    let post = |body: Value| {
        let caller = c.caller.clone();
        async move { caller.post("/api/v1/chat/completions", &body).await }
    };
    assert_eq!(
        post(json!({"model": "gpt-4o"}))
            .await
            .assert_client_error(400)["param"],
        "messages"
    );
    assert_eq!(
        post(json!({"model": "gpt-4o", "messages": []}))
            .await
            .assert_client_error(400)["param"],
        "messages"
    );
    assert_eq!(
        post(json!({"messages": hello()}))
            .await
            .assert_client_error(400)["param"],
        "model"
    );
    assert_eq!(
        post(json!({"model": "gpt-5-imaginary", "messages": hello()}))
            .await
            .assert_client_error(404)["code"],
        "model_not_found"
    );
    assert_eq!(
        post(json!({"model": "gpt-4o", "messages": hello(), "n": 10}))
            .await
            .assert_client_error(400)["param"],
        "n"
    );
    assert_eq!(
        post(json!({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}))
            .await
            .assert_client_error(400)["param"],
        "messages"
    );
    let huge = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(10 * 1024 * 1024)}]});
    post(huge).await.assert_client_error(413);
    c.admin
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello()}),
        )
        .await
        .assert_client_error(403);
    let no_chat = admin_key(&c.admin, &c.tenant.org_id, None, &["models:read".into()]).await;
    c.admin
        .with_token(&no_chat)
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello()}),
        )
        .await
        .assert_client_error(403);
    c.admin
        .with_token("aihub-sk-nope")
        .get("/api/v1/models")
        .await
        .assert_client_error(401);
    // A model above the organization's plan (Free serves basic models only).
    let above = post(json!({"model": "premium-model", "messages": hello()})).await;
    assert_eq!(above.assert_client_error(403)["code"], "model_not_in_plan");
    assert!(above.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("Free")));
    assert!(
        c.primary.requests().is_empty(),
        "bad input never reached a provider"
    );
    c.app.stop().await;
}

/// The official `openai` Python package, pointed at the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_works_unchanged() {
    let c = chat_env().await;
    let script = r#"
import json, sys, openai
base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
out = {}
r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello SDK"}])
out["content"] = r.choices[0].message.content
out["prompt_tokens"] = r.usage.prompt_tokens
out["streamed"] = "".join((ch.choices[0].delta.content or "") for ch in client.chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "Hello SDK"}], stream=True) if ch.choices)
out["models"] = sorted(m.id for m in client.models.list())
try:
    openai.OpenAI(base_url=base, api_key="aihub-sk-wrong", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    out["bad_key"] = "no error"
except openai.AuthenticationError:
    out["bad_key"] = "AuthenticationError"
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    out["bad_model"] = "no error"
except openai.NotFoundError:
    out["bad_model"] = "NotFoundError"
print(json.dumps(out))
"#;
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("{}/api/v1", c.caller.base))
        .arg(&c.key)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the SDK script failed (is `openai` installed? test.sh installs it): {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_str(stdout.trim()).expect("json from the script");
    assert_eq!(out["content"], "Hello from openai openai/gpt-4o!");
    assert_eq!(out["prompt_tokens"], 2);
    assert_eq!(out["streamed"], "Hello from openai openai/gpt-4o!");
    assert_eq!(
        out["models"],
        json!(["failover-model", "gemini-1.5-pro", "gpt-4o"])
    );
    assert_eq!(out["bad_key"], "AuthenticationError");
    assert_eq!(out["bad_model"], "NotFoundError");
    c.app.stop().await;
}

/// For any filter, the usage API's sums equal the export's and the events' on the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_sums_match_the_export_and_the_events() {
    let c = chat_env().await;
    for model in ["gpt-4o", "gpt-4o", "gemini-1.5-pro"] {
        assert_eq!(
            c.caller
                .post(
                    "/api/v1/chat/completions",
                    &json!({"model": model, "messages": hello()})
                )
                .await
                .status,
            200
        );
    }
    c.caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "no-provider", "messages": hello()}),
        )
        .await
        .assert_client_error(503);
    calls(&c.env, 4).await;
    let reader = admin_key(&c.admin, &c.tenant.org_id, None, &["usage:read".into()]).await;
    let reader = c.admin.with_token(&reader);

    // The events, as an integration reads them.
    let messages = e2e::kafka::read_until(
        &c.env.config.kafka,
        &c.env.config.topic,
        Duration::from_secs(60),
        |seen| seen.iter().filter(|m| is_chat(m)).count() >= 4,
    )
    .await;
    let events: Vec<Value> = messages
        .iter()
        .filter(|m| is_chat(m))
        .map(|m| {
            serde_json::from_slice(rdkafka::Message::payload(m).expect("payload")).expect("json")
        })
        .collect();
    let event_tokens: i64 = events
        .iter()
        .map(|e| e["data"]["total_tokens"].as_i64().unwrap_or(0))
        .sum();
    let event_cost: i64 = events
        .iter()
        .map(|e| e["data"]["cost_micros"].as_i64().unwrap_or(0))
        .sum();

    for group_by in ["", "day", "model", "api_key", "team", "user"] {
        let usage = reader
            .get(&format!("/api/v1/billing/usage?group_by={group_by}"))
            .await;
        assert_eq!(usage.status, 200, "{}", usage.body);
        let totals = &usage.body["totals"];
        assert_eq!(totals["requests"], 4, "{group_by}");
        assert_eq!(totals["failed_requests"], 1);
        assert_eq!(totals["total_tokens"], event_tokens, "{group_by}");
        assert_eq!(totals["cost_micros"], event_cost, "{group_by}");
        let summed: i64 = usage.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| r["total_tokens"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(
            summed, event_tokens,
            "groups add up to the totals for {group_by}"
        );
    }
    let by_model = reader.get("/api/v1/billing/usage?group_by=model").await;
    let keys: Vec<&str> = by_model.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    assert_eq!(keys, ["gemini-1.5-pro", "gpt-4o", "no-provider"]);

    let csv = reader
        .http
        .get(reader.url("/api/v1/billing/usage/export?format=csv"))
        .bearer_auth(&reader.token)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.expect("body");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let total_at = header
        .iter()
        .position(|h| *h == "total_tokens")
        .expect("column");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows.iter()
            .map(|r| r[total_at].parse::<i64>().expect("number"))
            .sum::<i64>(),
        event_tokens
    );
    let jsonl = reader
        .http
        .get(reader.url("/api/v1/billing/usage/export?format=jsonl"))
        .bearer_auth(&reader.token)
        .send()
        .await
        .expect("jsonl");
    let jsonl = jsonl.text().await.expect("body");
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines
            .iter()
            .map(|l| l["cost_micros"].as_i64().unwrap_or(0))
            .sum::<i64>(),
        event_cost
    );

    // A window with nothing in it, and bad filters.
    let empty = reader
        .get("/api/v1/billing/usage?from=2020-01-01&to=2020-02-01")
        .await;
    assert_eq!(empty.body["totals"]["requests"], 0);
    reader
        .get("/api/v1/billing/usage?group_by=planet")
        .await
        .assert_client_error(400);
    reader
        .get("/api/v1/billing/usage?from=yesterday")
        .await
        .assert_client_error(400);
    reader
        .get("/api/v1/billing/usage?from=2026-12-01&to=2026-11-01")
        .await
        .assert_client_error(400);
    reader
        .get("/api/v1/billing/usage/export?format=xml")
        .await
        .assert_client_error(400);
    c.caller
        .get("/api/v1/billing/usage")
        .await
        .assert_client_error(403);
    c.app.stop().await;
}

/// The real providers are https: the gateway reaches them over TLS (here a private CA it is
/// told to trust) and speaks HTTP/2 with them, streaming and not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_over_tls_answers_through_the_gateway_on_http2() {
    let (upstream, ca_file) = Upstream::start_tls().await;
    let mut env = Env::new().await;
    let catalog = json!([{"name": "gpt-4o", "tier": "basic", "context_length": 128000,
        "input_micros_per_mtok": INPUT_PRICE, "output_micros_per_mtok": OUTPUT_PRICE,
        "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o"}]}]);
    let file = std::env::temp_dir().join(format!("aihub-models-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.upstream_ca_file = Some(ca_file);
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "or-test".into(),
    }];
    assert!(upstream.openai_base_url().starts_with("https://"));
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "tls").await;
    let key = admin_key(&admin, &tenant.org_id, None, &["chat:write".into()]).await;
    let caller = admin.with_token(&key);

    let reply = caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello()}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["choices"][0]["message"]["content"],
        "Hello from openai openai/gpt-4o!"
    );
    let response = caller
        .request(reqwest::Method::POST, "/api/v1/chat/stream")
        .json(&json!({"model": "gpt-4o", "messages": hello()}))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let events = sse(&response.text().await.expect("body"));
    assert_eq!(content_of(&events), "Hello from openai openai/gpt-4o!");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.version == "HTTP/2.0"), "{seen:?}");
    app.stop().await;
}

/// Text in any script reaches the client whole, however the provider's bytes are cut: the fake
/// writes its stream one byte per write, so each character and each `\r\n` is split across
/// network writes, through both wire formats, both chat endpoints and the official SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_text_split_across_network_writes_arrives_whole() {
    let c = chat_env().await;
    let texts = ["你好，世界。", "👋🏽 héllo, мир — مرحبا"];
    let mut streamed = 0;
    for text in texts {
        for model in ["gpt-4o", "gemini-1.5-pro"] {
            for path in ["/api/v1/chat/completions", "/api/v1/chat/stream"] {
                for crlf in [false, true] {
                    c.primary.push(Behavior::Say {
                        text: text.into(),
                        crlf,
                    });
                    let response = c
                        .caller
                        .request(reqwest::Method::POST, path)
                        .json(&json!({"model": model, "messages": hello(), "stream": true}))
                        .send()
                        .await
                        .expect("stream");
                    assert_eq!(response.status(), 200, "{model} {path}");
                    let events = sse(&response.text().await.expect("body"));
                    assert_eq!(
                        content_of(&events),
                        text,
                        "{model} via {path}, crlf {crlf}: {events:?}"
                    );
                    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
                    streamed += 1;
                }
            }
        }
    }
    // Every one of those calls is billed once.
    assert_eq!(calls(&c.env, streamed).await.len() as i64, streamed);

    let script = r#"
import json, sys, openai
base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
out = []
for model in ["gpt-4o", "gemini-1.5-pro"]:
    out.append("".join((ch.choices[0].delta.content or "") for ch in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello SDK"}], stream=True) if ch.choices))
print(json.dumps(out, ensure_ascii=True))
"#;
    for _ in 0..2 {
        c.primary.push(Behavior::Say {
            text: texts[0].into(),
            crlf: true,
        });
    }
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("{}/api/v1", c.caller.base))
        .arg(&c.key)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the SDK script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Vec<String> = serde_json::from_slice(&output.stdout).expect("json from the script");
    assert_eq!(out, [texts[0], texts[0]]);
    c.app.stop().await;
}

/// A provider that stops sending mid-stream does not hang the client: the gateway ends the
/// stream with an error event after `AIHUB_STREAM_IDLE_MS`, and bills what the provider reported
/// (Gemini reports usage as it goes; an OpenAI-format stream reports it only at its end, so that
/// call is recorded as failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_ends_with_an_error_event_and_bills_what_was_reported() {
    let mut c = chat_env().await;
    c.app.stop().await;
    c.env.config.gateway.stream_idle = Duration::from_millis(700);
    let (app, admin) = c.env.app().await;
    let caller = admin.with_token(&c.key);
    // Gemini reports usage as it goes: billed as reported. An OpenAI-format provider reports it
    // only at the end: billed by the gateway's estimate of the prompt and of the text relayed.
    for (model, reports_usage) in [("gemini-1.5-pro", true), ("gpt-4o", false)] {
        c.primary.push(Behavior::StallAfterChunks(2));
        let started = std::time::Instant::now();
        let request = json!({"model": model, "messages": hello()});
        let response = tokio::time::timeout(
            Duration::from_secs(30),
            caller
                .request(reqwest::Method::POST, "/api/v1/chat/stream")
                .json(&request)
                .send(),
        )
        .await
        .expect("headers")
        .expect("stream");
        assert_eq!(response.status(), 200);
        let body = tokio::time::timeout(Duration::from_secs(30), response.text())
            .await
            .expect("the stream ends instead of hanging")
            .expect("body");
        assert!(started.elapsed() >= Duration::from_millis(700), "{model}");
        let events = sse(&body);
        let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
        assert_eq!(last["error"]["code"], "upstream_timeout", "{model}: {body}");
        let relayed = content_of(&events);
        assert!(!relayed.is_empty(), "{model}: what came is relayed");
        wait_for(Duration::from_secs(30), "the call recorded", || async {
            c.env
                .count(&format!(
                    "SELECT count(*) FROM read.chat_calls WHERE model = '{model}' AND outcome = 'succeeded'"
                ))
                .await
                == 1
        })
        .await;
        let db = c.env.db().await;
        let row = db
            .query_one(
                "SELECT (envelope->'data'->>'prompt_tokens')::bigint, \
                        (envelope->'data'->>'completion_tokens')::bigint, \
                        COALESCE((envelope->'data'->>'usage_estimated')::boolean, false) \
                 FROM journal WHERE event_type = 'chat.completion.succeeded' \
                   AND envelope->'data'->>'model' = $1",
                &[&model],
            )
            .await
            .expect("the call's event");
        let (prompt, completion, estimated): (i64, i64, bool) =
            (row.get(0), row.get(1), row.get(2));
        if reports_usage {
            assert_eq!(completion, 2, "Gemini's cumulative usage after two chunks");
            assert!(!estimated);
        } else {
            assert!(estimated, "{model}: the usage is marked as estimated");
            assert_eq!(
                completion as u64,
                gateway::wire::estimate_tokens(&relayed),
                "{model}: the text relayed, estimated"
            );
            assert_eq!(
                prompt as u64,
                gateway::wire::estimate_prompt_tokens(&request),
                "{model}: the prompt, estimated"
            );
        }
    }
    app.stop().await;
}

/// Issue 13, item 2: a provider's own extensions never reach it (OpenRouter's paid `plugins`,
/// its `models`/`route` fallbacks billed at another model's price); OpenAI's platform fields
/// are dropped; known fields pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_openai_fields_reach_the_provider() {
    let c = chat_env().await;
    let before = c.primary.requests().len();
    for (field, value, code) in [
        ("plugins", json!([{"id": "web"}]), "unknown_parameter"),
        (
            "models",
            json!(["anthropic/claude-3-opus"]),
            "unknown_parameter",
        ),
        ("route", json!("fallback"), "unknown_parameter"),
        (
            "provider",
            json!({"order": ["OpenAI"]}),
            "unknown_parameter",
        ),
        ("web_search_options", json!({}), "unsupported_parameter"),
    ] {
        let mut body = json!({"model": "gpt-4o", "messages": hello()});
        body[field] = value;
        let refused = c.caller.post("/api/v1/chat/completions", &body).await;
        let error = refused.assert_client_error(400);
        assert_eq!(
            (error["code"].as_str(), error["param"].as_str()),
            (Some(code), Some(field))
        );
    }
    assert_eq!(
        c.primary.requests().len(),
        before,
        "nothing reached the provider"
    );
    let answered = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello(), "store": true, "metadata": {"a": "b"},
                    "service_tier": "priority", "seed": 7, "user": "end-user-1", "temperature": 0.1}),
        )
        .await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    let sent = c.primary.requests().pop().expect("request").body;
    for dropped in ["store", "metadata", "service_tier"] {
        assert!(
            sent.get(dropped).is_none(),
            "{dropped} was forwarded: {sent}"
        );
    }
    assert_eq!(
        (sent["seed"].as_i64(), sent["user"].as_str()),
        (Some(7), Some("end-user-1"))
    );
    c.app.stop().await;
}

/// Issue 13, item 3: the quota holds the whole request: every choice's completion budget and
/// the tool definitions, not the first choice and the messages only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_holds_every_choice_and_the_tool_definitions() {
    // The tenant is on Free: 1,000 tokens a month.
    let c = chat_env().await;
    let before = c.primary.requests().len();
    let many = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello(), "max_tokens": 300, "n": 4}),
        )
        .await;
    assert_eq!(
        many.assert_client_error(429)["code"],
        "insufficient_quota",
        "4 × 300 > 1,000"
    );
    let tools = json!([{"type": "function", "function": {"name": "lookup",
        "description": "a long tool description ".repeat(60), "parameters": {"type": "object"}}}]);
    let heavy = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello(), "max_tokens": 50, "tools": tools}),
        )
        .await;
    assert_eq!(
        heavy.assert_client_error(429)["code"],
        "insufficient_quota",
        "the tools alone"
    );
    assert_eq!(
        c.primary.requests().len(),
        before,
        "nothing reached the provider"
    );
    // One choice of the same size fits; its per-choice budget is what was asked.
    let one = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello(), "max_tokens": 300}),
        )
        .await;
    assert_eq!(one.status, 200, "{}", one.body);
    let two = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello(), "max_tokens": 100, "n": 2}),
        )
        .await;
    assert_eq!(two.status, 200, "{}", two.body);
    let sent = c.primary.requests().pop().expect("request").body;
    assert_eq!(
        (sent["n"].as_i64(), sent["max_tokens"].as_i64()),
        (Some(2), Some(100))
    );
    c.app.stop().await;
}

/// Issue 13, item 10: a client's request id outside the safe alphabet is replaced, and an export
/// cell a spreadsheet would run as a formula is neutralised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_safe_and_csv_cells_cannot_become_formulas() {
    let c = chat_env().await;
    let call = |id: &'static str| {
        c.caller.send(
            c.caller
                .request(reqwest::Method::POST, "/api/v1/chat/completions")
                .header("x-request-id", id)
                .json(&json!({"model": "gpt-4o", "messages": hello()})),
        )
    };
    let hostile = call("=HYPERLINK(\"http://evil.example\")").await;
    assert_eq!(hostile.status, 200, "{}", hostile.body);
    let replaced = hostile.headers["x-request-id"].to_str().expect("id");
    assert!(
        !replaced.contains('=') && !replaced.contains('"'),
        "{replaced}"
    );
    let plus = call("-2+3").await;
    assert_ne!(
        plus.headers["x-request-id"], "-2+3",
        "'+' is outside the safe alphabet"
    );
    let kept = call("-formula:1").await;
    assert_eq!(
        kept.headers["x-request-id"], "-formula:1",
        "a safe id is kept"
    );
    wait_for(
        Duration::from_secs(30),
        "the calls in the usage read model",
        || async { c.env.count("SELECT count(*) FROM read.chat_calls").await >= 3 },
    )
    .await;
    let export = c
        .tenant
        .owner
        .http
        .get(
            c.tenant
                .owner
                .url("/api/v1/billing/usage/export?format=csv"),
        )
        .bearer_auth(&c.tenant.owner_key)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("csv");
    assert!(export.contains("'-formula:1"), "neutralised: {export}");
    assert!(!export.contains(",-formula:1"), "{export}");
    assert!(!export.contains("=HYPERLINK"), "{export}");
    c.app.stop().await;
}

/// Issue 13, item 11: a provider's redirect is not followed (our provider key goes nowhere else),
/// and a provider's own error message is logged, not handed to the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_redirects_are_not_followed_and_provider_messages_not_relayed() {
    let c = chat_env().await;
    let elsewhere = c.secondary.requests().len();
    c.primary.push(Behavior::Redirect(format!(
        "{}/chat/completions",
        c.secondary.openai_base_url()
    )));
    let redirected = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello()}),
        )
        .await;
    assert_eq!(redirected.status, 502, "{}", redirected.body);
    assert_eq!(
        c.secondary.requests().len(),
        elsewhere,
        "the redirect target saw nothing"
    );
    let secret = "account org_4711 has 0.02 credits left; key sk-or-v1-abcdef";
    c.primary.push(Behavior::StatusSaying(400, secret.into()));
    let rejected = c
        .caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello()}),
        )
        .await;
    let error = rejected.assert_client_error(400);
    assert_eq!(error["code"], "provider_rejected");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("org_4711") && !message.contains("sk-or"),
        "{message}"
    );
    c.app.stop().await;
}
