//! `aihub models sync` end to end: the real binary imports a fake OpenRouter's model list (its
//! exact wire shape), records what changed as one `catalog.synced` event on the topic, the
//! catalog read model holds the exact prices, and the gateway routes and bills imported models.

use std::process::Output;
use std::time::Duration;

use e2e::upstream::{openrouter_model, Behavior, Upstream};
use e2e::{aihub_binary, kafka, wait_for, Env, Tenant};
use events::Actor;
use platform::config::ProviderConfig;
use rdkafka::Message;
use serde_json::{json, Value};

const KEY: &str = "or-sync-test";

/// The first list: a priced model per tier, a name the configured catalog also has, and a
/// variable-priced router that cannot be imported.
fn first_list() -> Value {
    json!({"data": [
        openrouter_model("openai/gpt-4o", 128_000, "0.0000025", "0.00001"),
        openrouter_model("mistralai/mistral-7b-instruct", 32_768, "0.0000009", "0.000001"),
        openrouter_model("meta-llama/llama-3.1-8b-instruct", 131_072, "0.00000002", "0.00000005"),
        openrouter_model("anthropic/claude-3-opus", 200_000, "0.000015", "0.000075"),
        openrouter_model("openrouter/auto", 2_000_000, "-1", "-1"),
    ]})
}

/// Runs the real binary against `base_url` (OpenRouter unconfigured when `None`).
async fn sync(env: &Env, base_url: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(aihub_binary());
    env.connect_command(command.as_std_mut());
    command
        .args(["models", "sync"])
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("OPENROUTER_BASE_URL")
        .env("AIHUB_UPSTREAM_TIMEOUT_MS", "5000");
    if let Some(url) = base_url {
        command
            .env("OPENROUTER_API_KEY", KEY)
            .env("OPENROUTER_BASE_URL", url);
    }
    command.output().await.expect("aihub models sync runs")
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "models sync failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The `data` of every catalog.synced in the journal, in version order.
async fn recorded(env: &Env) -> Vec<Value> {
    let rows = env
        .db()
        .await
        .query(
            "SELECT envelope::text FROM journal WHERE event_type = 'catalog.synced' ORDER BY stream_version",
            &[],
        )
        .await
        .expect("journal");
    rows.iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).expect("json"))
        .collect()
}

async fn catalog_rows(env: &Env) -> Vec<Value> {
    env.dump("read.catalog_models", "name").await
}

fn row(name: &str, context: i64, input: i64, output: i64, tier: &str, version: i64) -> Value {
    json!({"provider": "openrouter", "name": name, "upstream_model": name, "context_length": context,
           "input_micros_per_mtok": input, "output_micros_per_mtok": output, "tier": tier, "version": version})
}

/// The read model without its timestamps.
fn without_time(rows: Vec<Value>) -> Vec<Value> {
    rows.into_iter()
        .map(|mut r| {
            r.as_object_mut().map(|o| o.remove("synced_at"));
            r
        })
        .collect()
}

struct Gateway {
    env: Env,
    app: aihub::Running,
    admin: e2e::Api,
    tenant: Tenant,
    openrouter: Upstream,
}

/// A running AI Hub whose gateway refreshes the imported catalog every 200 ms, with a
/// configured catalog that has its own entry for one name the import also lists.
async fn gateway() -> Gateway {
    let openrouter = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = json!([
        {"name": "gpt-4o", "tier": "basic", "context_length": 128000, "input_micros_per_mtok": 2500000,
         "output_micros_per_mtok": 10000000, "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o"}]},
        {"name": "meta-llama/llama-3.1-8b-instruct", "tier": "basic", "context_length": 8192,
         "input_micros_per_mtok": 700000, "output_micros_per_mtok": 800000,
         "deployments": [{"provider": "openrouter", "upstream_model": "configured/llama"}]}
    ]);
    let file = std::env::temp_dir().join(format!("aihub-models-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: openrouter.openai_base_url(),
        api_key: KEY.into(),
    }];
    env.config.gateway.catalog_refresh = Duration::from_millis(200);
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "models").await;
    Gateway {
        env,
        app,
        admin,
        tenant,
        openrouter,
    }
}

fn ids(reply: &e2e::Reply) -> Vec<String> {
    reply.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect()
}

/// Cost in millionths of a dollar at these prices, rounded half up, computed independently.
fn cost(prompt: i64, completion: i64, input: i64, output: i64) -> i64 {
    (prompt * input + completion * output + 500_000) / 1_000_000
}

async fn chat_event(env: &Env, request_id: &str) -> Value {
    let sql = format!(
        "SELECT count(*) FROM journal WHERE event_type = 'chat.completion.succeeded' AND envelope->>'correlation_id' = '{request_id}'"
    );
    wait_for(Duration::from_secs(30), "the chat call's event", || async {
        env.count(&sql).await == 1
    })
    .await;
    let row = env
        .db()
        .await
        .query_one(
            "SELECT envelope::text FROM journal WHERE envelope->>'correlation_id' = $1 AND event_type = 'chat.completion.succeeded'",
            &[&request_id],
        )
        .await
        .expect("event");
    serde_json::from_str(row.get::<_, &str>(0)).expect("json")
}

async fn chat(g: &Gateway, model: &str, request_id: &str) -> e2e::Reply {
    g.tenant
        .owner
        .send(
            g.tenant
                .owner
                .request(reqwest::Method::POST, "/api/v1/chat/completions")
                .header("x-request-id", request_id)
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_imports_priced_models_that_the_gateway_routes_and_bills_exactly() {
    let g = gateway().await;
    g.openrouter.serve_models(&first_list());

    let stdout = succeeded(&sync(&g.env, Some(&g.openrouter.openai_base_url())).await);
    assert!(
        stdout.contains("added 4, changed 0, removed 0, skipped 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped openrouter/auto") && stdout.contains("negative"),
        "{stdout}"
    );
    let asked = g.openrouter.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/api/v1/models");
    assert!(
        asked[0]
            .headers
            .contains(&("authorization".into(), format!("Bearer {KEY}"))),
        "{:?}",
        asked[0].headers
    );

    // One platform event, keyed by its stream, with the exact prices.
    let messages = kafka::read_until(
        &g.env.config.kafka,
        &g.env.config.topic,
        Duration::from_secs(60),
        |seen| seen.iter().any(|m| kafka::key(m) == "catalog:openrouter"),
    )
    .await;
    let on_topic: Vec<Value> = messages
        .iter()
        .filter(|m| kafka::key(m) == "catalog:openrouter")
        .map(|m| serde_json::from_slice(m.payload().expect("payload")).expect("json"))
        .collect();
    assert_eq!(on_topic.len(), 1);
    let event = &on_topic[0];
    assert_eq!(event["event_type"], "catalog.synced");
    assert_eq!(event["org_id"], Value::Null);
    assert_eq!(event["stream_id"], "catalog:openrouter");
    assert_eq!(event["stream_version"], 1);
    assert_eq!(event["data"]["provider"], "openrouter");
    assert_eq!(event["data"]["added"].as_array().map(Vec::len), Some(4));
    assert_eq!(event["data"]["changed"], json!([]));
    assert_eq!(event["data"]["removed"], json!([]));
    assert_eq!(
        event["data"]["entries"][3],
        json!({"name": "openai/gpt-4o", "upstream_model": "openai/gpt-4o", "context_length": 128000,
               "input_micros_per_mtok": 2500000, "output_micros_per_mtok": 10000000, "tier": "advanced"})
    );

    // The read model, exactly.
    wait_for(
        Duration::from_secs(30),
        "catalog rows projected",
        || async {
            g.env
                .count("SELECT count(*) FROM read.catalog_models")
                .await
                == 4
        },
    )
    .await;
    assert_eq!(
        without_time(catalog_rows(&g.env).await),
        vec![
            row(
                "anthropic/claude-3-opus",
                200_000,
                15_000_000,
                75_000_000,
                "premium",
                1
            ),
            row(
                "meta-llama/llama-3.1-8b-instruct",
                131_072,
                20_000,
                50_000,
                "basic",
                1
            ),
            row(
                "mistralai/mistral-7b-instruct",
                32_768,
                900_000,
                1_000_000,
                "basic",
                1
            ),
            row(
                "openai/gpt-4o",
                128_000,
                2_500_000,
                10_000_000,
                "advanced",
                1
            ),
        ]
    );

    // The gateway lists imported models by plan tier: the Free plan sees the basic ones only.
    wait_for(
        Duration::from_secs(30),
        "the gateway sees the import",
        || async {
            ids(&g.admin.get("/api/v1/models").await)
                .contains(&"anthropic/claude-3-opus".to_string())
        },
    )
    .await;
    let listed = ids(&g.tenant.owner.get("/api/v1/models").await);
    assert!(
        listed.contains(&"mistralai/mistral-7b-instruct".to_string()),
        "{listed:?}"
    );
    assert!(
        !listed.contains(&"openai/gpt-4o".to_string()),
        "advanced is not in Free: {listed:?}"
    );
    assert!(
        !listed.contains(&"openrouter/auto".to_string()),
        "{listed:?}"
    );
    let detailed = g.tenant.owner.get("/api/v1/chat/models").await;
    let mistral = detailed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|m| m["id"] == "mistralai/mistral-7b-instruct")
        .cloned()
        .expect("mistral listed");
    assert_eq!(mistral["providers"], json!(["openrouter"]));
    assert_eq!(mistral["context_length"], 32_768);
    assert_eq!(mistral["tier"], "basic");
    let gated = chat(&g, "openai/gpt-4o", "models-sync-gated").await;
    assert_eq!(gated.assert_client_error(403)["code"], "model_not_in_plan");

    // An imported model is served by OpenRouter under its id and billed at the imported prices.
    let reply = chat(&g, "mistralai/mistral-7b-instruct", "models-sync-mistral").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["x-aihub-provider"], "openrouter");
    assert_eq!(reply.body["model"], "mistralai/mistral-7b-instruct");
    let sent = g.openrouter.requests().pop().expect("chat request");
    assert_eq!(sent.path, "/api/v1/chat/completions");
    assert_eq!(sent.body["model"], "mistralai/mistral-7b-instruct");
    let usage = &reply.body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_i64().expect("prompt"),
        usage["completion_tokens"].as_i64().expect("completion"),
    );
    let event = chat_event(&g.env, "models-sync-mistral").await;
    assert_eq!(event["data"]["provider"], "openrouter");
    assert_eq!(
        event["data"]["upstream_model"],
        "mistralai/mistral-7b-instruct"
    );
    let expected = cost(prompt, completion, 900_000, 1_000_000);
    assert!(expected > 0, "the prices make a visible cost");
    assert_eq!(event["data"]["cost_micros"], expected);

    // A configured name keeps its configured deployment and prices.
    let reply = chat(&g, "meta-llama/llama-3.1-8b-instruct", "models-sync-llama").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = g.openrouter.requests().pop().expect("chat request");
    assert_eq!(sent.body["model"], "configured/llama");
    let usage = &reply.body["usage"];
    let event = chat_event(&g.env, "models-sync-llama").await;
    assert_eq!(event["data"]["upstream_model"], "configured/llama");
    assert_eq!(
        event["data"]["cost_micros"],
        cost(
            usage["prompt_tokens"].as_i64().expect("prompt"),
            usage["completion_tokens"].as_i64().expect("completion"),
            700_000,
            800_000
        )
    );

    // The same list again records nothing.
    let stdout = succeeded(&sync(&g.env, Some(&g.openrouter.openai_base_url())).await);
    assert!(stdout.contains("no change"), "{stdout}");
    assert_eq!(recorded(&g.env).await.len(), 1);

    // A price change, a new model and a removal: one event with the change.
    g.openrouter.serve_models(&json!({"data": [
        openrouter_model("openai/gpt-4o", 128_000, "0.0000025", "0.00001"),
        openrouter_model("mistralai/mistral-7b-instruct", 32_768, "0.0000009", "0.0000008"),
        openrouter_model("meta-llama/llama-3.1-8b-instruct", 131_072, "0.00000002", "0.00000005"),
        openrouter_model("qwen/qwen-2.5-72b-instruct", 32_768, "0.00000035", "0.0000004"),
    ]}));
    let stdout = succeeded(&sync(&g.env, Some(&g.openrouter.openai_base_url())).await);
    assert!(
        stdout.contains("added 1, changed 1, removed 1, skipped 0"),
        "{stdout}"
    );
    assert!(stdout.contains("output 1 → 0.8"), "{stdout}");
    let events = recorded(&g.env).await;
    assert_eq!(events.len(), 2);
    let second = &events[1];
    assert_eq!(second["stream_version"], 2);
    assert_eq!(
        second["data"]["changed"],
        json!([{
            "before": {"name": "mistralai/mistral-7b-instruct", "upstream_model": "mistralai/mistral-7b-instruct",
                       "context_length": 32768, "input_micros_per_mtok": 900000, "output_micros_per_mtok": 1000000, "tier": "basic"},
            "after": {"name": "mistralai/mistral-7b-instruct", "upstream_model": "mistralai/mistral-7b-instruct",
                      "context_length": 32768, "input_micros_per_mtok": 900000, "output_micros_per_mtok": 800000, "tier": "basic"}
        }])
    );
    assert_eq!(
        second["data"]["removed"],
        json!(["anthropic/claude-3-opus"])
    );
    assert_eq!(
        second["data"]["added"][0]["name"],
        "qwen/qwen-2.5-72b-instruct"
    );
    wait_for(
        Duration::from_secs(30),
        "the second sync projected",
        || async {
            g.env
                .count("SELECT count(*) FROM read.catalog_models WHERE version = 2")
                .await
                == 4
        },
    )
    .await;
    assert_eq!(
        without_time(catalog_rows(&g.env).await),
        vec![
            row(
                "meta-llama/llama-3.1-8b-instruct",
                131_072,
                20_000,
                50_000,
                "basic",
                2
            ),
            row(
                "mistralai/mistral-7b-instruct",
                32_768,
                900_000,
                800_000,
                "basic",
                2
            ),
            row(
                "openai/gpt-4o",
                128_000,
                2_500_000,
                10_000_000,
                "advanced",
                2
            ),
            row(
                "qwen/qwen-2.5-72b-instruct",
                32_768,
                350_000,
                400_000,
                "basic",
                2
            ),
        ]
    );

    // The gateway bills at the new price once it has refreshed, and no longer serves the removed one.
    wait_for(
        Duration::from_secs(30),
        "the gateway drops the removed model",
        || async {
            !ids(&g.admin.get("/api/v1/models").await)
                .contains(&"anthropic/claude-3-opus".to_string())
        },
    )
    .await;
    let reply = chat(&g, "mistralai/mistral-7b-instruct", "models-sync-repriced").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let usage = &reply.body["usage"];
    let event = chat_event(&g.env, "models-sync-repriced").await;
    assert_eq!(
        event["data"]["cost_micros"],
        cost(
            usage["prompt_tokens"].as_i64().expect("prompt"),
            usage["completion_tokens"].as_i64().expect("completion"),
            900_000,
            800_000
        )
    );

    // Replay rebuilds the catalog read model identical to the live one.
    g.env.wait_until_projected(Duration::from_secs(60)).await;
    let live = catalog_rows(&g.env).await;
    let output = g
        .env
        .aihub_command(aihub_binary())
        .args(["replay", "--projection", "catalog"])
        .output()
        .await
        .expect("aihub replay runs");
    let stdout = succeeded(&output);
    assert!(stdout.contains("replay catalog"), "{stdout}");
    g.env.wait_until_projected(Duration::from_secs(60)).await;
    assert_eq!(catalog_rows(&g.env).await, live);
    g.app.stop().await;
}

fn failed_with(output: &Output, wanted: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(wanted), "wanted {wanted:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_unreachable_or_garbage_openrouter_fails_clearly_and_records_nothing() {
    let env = Env::new().await;
    let openrouter = Upstream::start().await;

    failed_with(&sync(&env, None).await, "OpenRouter is not configured");

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    failed_with(
        &sync(&env, Some(&format!("http://{closed}/api/v1"))).await,
        "OpenRouter is unreachable",
    );

    openrouter.push(Behavior::Status(503));
    failed_with(
        &sync(&env, Some(&openrouter.openai_base_url())).await,
        "OpenRouter answered HTTP 503",
    );

    for garbage in [
        "<html><body>502 Bad Gateway</body></html>",
        r#"{"error": {"message": "nope"}}"#,
        r#"{"data": []}"#,
        r#"{"data": [{"id": "openrouter/auto", "context_length": 1, "pricing": {"prompt": "-1", "completion": "-1"}}]}"#,
    ] {
        openrouter.serve_models_text(garbage);
        failed_with(
            &sync(&env, Some(&openrouter.openai_base_url())).await,
            "is not a model list",
        );
    }
    assert!(recorded(&env).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_syncs_record_one_event_and_a_stale_decision_conflicts() {
    let env = Env::new().await;
    let openrouter = Upstream::start().await;
    let pool = env.config.database.pool(2).expect("pool");
    let journal = command_api::Journal::new(pool);
    use command_api::catalog::{aggregate, sync as catalog_sync};
    use command_api::command::Aggregate;
    use gateway::import::openrouter as list;

    // A decision made at version 0 cannot be appended once another sync wrote version 1.
    let stale = catalog_sync::load(&journal).await.expect("load");
    assert_eq!(stale.version, 0);
    openrouter.serve_models(&first_list());
    succeeded(&sync(&env, Some(&openrouter.openai_base_url())).await);
    let other = list::parse(
        &json!({"data": [openrouter_model("x/other", 4096, "0.000001", "0.000002")]}).to_string(),
    )
    .expect("parses");
    let Ok(decision) = stale.state.decide(aggregate::Import {
        provider: "openrouter".into(),
        entries: other.entries.clone(),
    });
    assert!(!decision.is_empty(), "differs from empty");
    let lost = catalog_sync::append(&journal, &stale, decision, &Actor::system(), "stale").await;
    assert!(
        matches!(
            lost,
            Err(command_api::journal::JournalError::VersionConflict)
        ),
        "{lost:?}"
    );
    // Deciding again from the journal succeeds, on top of the winner.
    let (event, version) = catalog_sync::import(&journal, other.entries, &Actor::system(), "retry")
        .await
        .expect("import");
    assert_eq!(version, 2);
    assert!(event.is_some());

    // Two syncs of one new list at once: both succeed, exactly one records it.
    openrouter.serve_models(&first_list());
    let url = openrouter.openai_base_url();
    let (a, b) = tokio::join!(sync(&env, Some(&url)), sync(&env, Some(&url)));
    let outputs = [succeeded(&a), succeeded(&b)];
    let recorded_by: Vec<_> = outputs
        .iter()
        .filter(|o| o.contains("recorded catalog.synced"))
        .collect();
    assert_eq!(recorded_by.len(), 1, "{outputs:?}");
    assert_eq!(
        outputs.iter().filter(|o| o.contains("no change")).count(),
        1,
        "{outputs:?}"
    );
    let events = recorded(&env).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["stream_version"], 3);
    assert_eq!(events[2]["data"]["removed"], json!(["x/other"]));
}

/// `aihub models sync` reaches an OpenRouter behind a private CA through the same client as the
/// gateway: it trusts `AIHUB_UPSTREAM_CA_FILE`, and without it the certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_trusts_the_configured_upstream_ca() {
    let env = Env::new().await;
    let (openrouter, ca_file) = Upstream::start_tls().await;
    openrouter.serve_models(&first_list());
    failed_with(
        &sync(&env, Some(&openrouter.openai_base_url())).await,
        "OpenRouter is unreachable",
    );
    let mut command = tokio::process::Command::new(aihub_binary());
    env.connect_command(command.as_std_mut());
    let output = command
        .args(["models", "sync"])
        .env("AIHUB_UPSTREAM_TIMEOUT_MS", "5000")
        .env("AIHUB_UPSTREAM_CA_FILE", &ca_file)
        .env("OPENROUTER_API_KEY", KEY)
        .env("OPENROUTER_BASE_URL", openrouter.openai_base_url())
        .output()
        .await
        .expect("aihub models sync runs");
    succeeded(&output);
    assert_eq!(recorded(&env).await.len(), 1, "one catalog.synced");
}
