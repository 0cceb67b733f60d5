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

/// The gauge of events spooled that the journal does not have yet, from `/metrics`.
async fn pending(admin: &Api) -> Option<u64> {
    admin
        .metrics()
        .await
        .lines()
        .find(|l| l.starts_with("aihub_spool_pending_events"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The chat events of an organization in the journal: their ids and request ids.
async fn chat_events(db: &tokio_postgres::Client, org: uuid::Uuid) -> Vec<(uuid::Uuid, String)> {
    db.query(
        "SELECT event_id, envelope->>'correlation_id' FROM journal
         WHERE org_id = $1 AND event_type LIKE 'chat.completion.%'",
        &[&org],
    )
    .await
    .expect("journal")
    .iter()
    .map(|r| (r.get::<_, uuid::Uuid>(0), r.get::<_, String>(1)))
    .collect()
}

/// Issue 17: a burst the journal cannot take waits in the spool, not in memory, and no call is
/// refused for it until the spool holds `AIHUB_SPOOL_BACKLOG` events. The journal is stalled
/// (its chain heads locked) under a queue of 8 events and a backlog bound of 40: the first 40
/// calls are answered, the 41st gets 503 `overloaded`; once the lock goes, every answered call's
/// event is in the journal exactly once, and calls are queued again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_the_journal_cannot_take_waits_in_the_spool_and_every_answered_call_is_billed_once()
{
    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let file = e2e::one_model_catalog(1, 1);
    let spool = std::env::temp_dir().join(format!("aihub-spool-{}", uuid::Uuid::now_v7()));
    let port = free_port();
    let _serving = env
        .serve_command(port, &file, &upstream.openai_base_url())
        .env("AIHUB_SPOOL_DIR", &spool)
        .env("AIHUB_EVENT_QUEUE", "8")
        .env("AIHUB_SPOOL_BACKLOG", "40")
        .env("AIHUB_BILLING_CLOSE_EVERY_MS", "0")
        .env("AIHUB_CONSISTENCY_TIMEOUT_MS", "15000")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("aihub serve starts");
    let admin = env.serving_at(port).await;
    let tenant = Tenant::create_on(&admin, "backlog", "pro").await;
    let key = admin_key(
        &admin,
        &tenant.org_id,
        Some(&tenant.owner_id),
        &["chat:write".into()],
    )
    .await;
    let caller = admin.with_token(&key);
    assert!(completed(&caller, false).await.expect("answers").is_some());
    let db = env.db().await;
    let org: uuid::Uuid = tenant.org_id.parse().expect("org id");
    // The first call's event in, nothing pending: the stall starts from a clean state.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while chat_events(&db, org).await.len() != 1 || pending(&admin).await != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first call's event never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The journal stalls: its appends wait on the chain heads this transaction locks.
    let mut stall = env.db().await;
    let lock = stall.transaction().await.expect("begins");
    lock.execute("LOCK TABLE audit_chain_heads IN EXCLUSIVE MODE", &[])
        .await
        .expect("locks");
    let mut answered = Vec::new();
    for n in 0..40 {
        let id = completed(&caller, n % 2 == 0).await.expect("answers");
        answered.push(id.unwrap_or_else(|| panic!("call {n} was not answered")));
    }
    assert_eq!(
        pending(&admin).await,
        Some(40),
        "all 40 wait, 8 at most in memory"
    );
    let refused = caller
        .request(reqwest::Method::POST, "/api/v1/chat/completions")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "One more"}]}))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(
        chat_events(&db, org).await.len(),
        1,
        "the journal was stalled"
    );

    // The stall ends: every answered call's event goes in, once.
    lock.rollback().await.expect("releases");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events = chat_events(&db, org).await;
        if events.len() > answered.len() && pending(&admin).await == Some(0) {
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} events in the journal",
            events.len().saturating_sub(1),
            answered.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: HashSet<uuid::Uuid> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), events.len(), "no event twice");
    assert_eq!(
        events.len(),
        answered.len() + 1,
        "no event twice, none lost"
    );
    let billed: HashSet<&str> = events.iter().map(|(_, r)| r.as_str()).collect();
    for id in &answered {
        assert!(billed.contains(id.as_str()), "call {id} was not billed");
    }
    // The backlog read to its end, calls are queued (and appended) again.
    let next = completed(&caller, false)
        .await
        .expect("answers")
        .expect("answered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !chat_events(&db, org).await.iter().any(|(_, r)| *r == next) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the next call's event never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
