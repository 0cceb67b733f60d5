//! Issue 13, item 4: no answered chat call goes unbilled. The real binary is killed with SIGKILL
//! under load; every call whose answer completed has its event on the topic once the next
//! process has started (it appends what the dead one spooled).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::upstream::Upstream;
use e2e::{admin_key, free_port, Api, Env, Tenant};
use serde_json::{json, Value};

/// One call read to its end: its request id when the answer completed.
async fn completed(caller: &Api, stream: bool) -> Result<Option<String>, ()> {
    let response = caller
        .request(reqwest::Method::POST, "/api/v1/chat/completions")
        .json(&json!({"model": "gpt-4o", "stream": stream,
            "messages": [{"role": "user", "content": "Hello there"}]}))
        .send()
        .await
        .map_err(|_| ())?;
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ok = response.status() == 200;
    let Ok(body) = response.text().await else {
        return Ok(None);
    };
    let whole = if stream {
        body.ends_with("data: [DONE]\n\n")
    } else {
        serde_json::from_str::<Value>(&body).is_ok_and(|b| b["choices"][0]["message"].is_object())
    };
    Ok(if ok && whole { id } else { None })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_under_load_loses_no_event_of_an_answered_call() {
    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let file = e2e::one_model_catalog(1, 1);
    let spool = std::env::temp_dir().join(format!("aihub-spool-{}", uuid::Uuid::now_v7()));
    let start = |port: u16| {
        env.serve_command(port, &file, &upstream.openai_base_url())
            .env("AIHUB_SPOOL_DIR", &spool)
            .env("AIHUB_BILLING_CLOSE_EVERY_MS", "0")
            .env("AIHUB_CONSISTENCY_TIMEOUT_MS", "15000")
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("aihub serve starts")
    };
    let port = free_port();
    let mut first = start(port);
    let admin = env.serving_at(port).await;
    let tenant = Tenant::create_on(&admin, "sigkill", "pro").await;
    let key = admin_key(
        &admin,
        &tenant.org_id,
        Some(&tenant.owner_id),
        &["chat:write".into()],
    )
    .await;
    let caller = admin.with_token(&key);

    // Eight clients call until the process is gone.
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (caller, answered, stop) = (caller.clone(), answered.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                match completed(&caller, (client + n).is_multiple_of(2)).await {
                    Ok(Some(id)) => answered.lock().unwrap_or_else(|p| p.into_inner()).push(id),
                    Ok(None) => {}
                    Err(()) => break,
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = first.id().expect("running");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = first.wait().await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("client");
    }
    let answered: Vec<String> = answered.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        answered.len() >= 20,
        "under load: {} answered",
        answered.len()
    );

    // The next process appends what the killed one spooled, and the relay publishes it.
    let port = free_port();
    let _second = start(port);
    env.serving_at(port).await;
    let wanted: HashSet<String> = answered.iter().cloned().collect();
    let messages = e2e::kafka::read_until(
        &env.config.kafka,
        &env.config.topic,
        Duration::from_secs(90),
        |seen| {
            let on_topic: HashSet<String> = seen
                .iter()
                .filter_map(|m| rdkafka::Message::payload(m))
                .filter_map(|p| serde_json::from_slice::<Value>(p).ok())
                .filter(|e| {
                    e["event_type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("chat.completion."))
                })
                .filter_map(|e| e["correlation_id"].as_str().map(str::to_owned))
                .collect();
            wanted.is_subset(&on_topic)
        },
    )
    .await;
    let events: Vec<Value> = messages
        .iter()
        .filter_map(|m| rdkafka::Message::payload(m))
        .filter_map(|p| serde_json::from_slice::<Value>(p).ok())
        .filter(|e| e["event_type"] == "chat.completion.succeeded")
        .filter(|e| {
            e["correlation_id"]
                .as_str()
                .is_some_and(|id| wanted.contains(id))
        })
        .collect();
    let distinct: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(
        distinct.len(),
        answered.len(),
        "every answered call has exactly one billed event on the topic"
    );
    let leftover: Vec<_> = std::fs::read_dir(&spool)
        .map(|dirs| {
            dirs.flatten()
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                .map(|f| f.path())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftover
            .iter()
            .all(|f| f.extension().and_then(|e| e.to_str()) == Some("jsonl")),
        "{leftover:?}"
    );
}
