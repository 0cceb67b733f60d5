//! SIGTERM under load: the real binary stops accepting, lets the calls under way finish, ends
//! the ones that would outlast its bound (their clients told, each billed), flushes the chat
//! events and quota leases, and exits within the bound. Nothing answered goes missing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::upstream::{Behavior, Upstream};
use e2e::{admin_key, wait_for, Api, Env, Tenant};
use serde_json::{json, Value};

const DRAIN: Duration = Duration::from_secs(8);

/// What a client saw of one call.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// A whole answer, or a stream to its `[DONE]`.
    Answered,
    /// A stream ended by an error event with this code.
    EndedWith(String),
    /// An HTTP error status with this code.
    Refused(u16, String),
}

struct Calls {
    /// By request id (`x-request-id`, which is the events' correlation id).
    seen: Mutex<HashMap<String, Seen>>,
}

impl Calls {
    fn record(&self, request_id: String, seen: Seen) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id, seen);
    }

    fn all(&self) -> HashMap<String, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One chat call, read to its end. `None` when it never reached the server.
async fn call(caller: &Api, stream: bool) -> Option<(String, Seen)> {
    let response = caller
        .request(reqwest::Method::POST, "/api/v1/chat/completions")
        .json(&json!({"model": "gpt-4o", "stream": stream,
            "messages": [{"role": "user", "content": "Hello there, introduce yourself"}]}))
        .send()
        .await
        .ok()?;
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("every response names its request");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let seen = if status != 200 {
        let error: Value = serde_json::from_str(&body).unwrap_or_default();
        Seen::Refused(
            status,
            error["error"]["code"].as_str().unwrap_or_default().into(),
        )
    } else if !stream {
        let answer: Value = serde_json::from_str(&body).expect("a whole answer is JSON");
        assert!(answer["choices"][0]["message"]["content"].is_string());
        Seen::Answered
    } else {
        let events: Vec<&str> = body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        match events.last() {
            Some(&"[DONE]") => Seen::Answered,
            Some(last) => {
                let error: Value = serde_json::from_str(last).expect("an error event is JSON");
                Seen::EndedWith(error["error"]["code"].as_str().unwrap_or_default().into())
            }
            None => Seen::EndedWith(String::new()),
        }
    };
    Some((request_id, seen))
}

#[tokio::test]
async fn sigterm_under_load_drains_within_its_bound_and_loses_no_answered_call() {
    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let file = e2e::one_model_catalog(2_500_000, 10_000_000);
    let port = e2e::free_port();
    let mut child = env
        .serve_command(port, &file, &upstream.openai_base_url())
        .env("AIHUB_SHUTDOWN_TIMEOUT_MS", DRAIN.as_millis().to_string())
        // Without the drain's cut-off, a stalled stream would hold the process for minutes.
        .env("AIHUB_STREAM_IDLE_MS", "300000")
        .env("AIHUB_CHAT_DEADLINE_MS", "300000")
        .env("AIHUB_CONSISTENCY_TIMEOUT_MS", "15000")
        .env("AIHUB_BILLING_CLOSE_EVERY_MS", "0")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("aihub serve starts");
    let admin = env.serving_at(port).await;
    let tenant = Tenant::create_on(&admin, "drain", "pro").await;
    let key = admin_key(
        &admin,
        &tenant.org_id,
        Some(&tenant.owner_id),
        &["chat:write".into()],
    )
    .await;
    let caller = admin.with_token(&key);
    let calls = Arc::new(Calls {
        seen: Mutex::new(HashMap::new()),
    });

    // Calls that will still be under way at the bound: streams whose provider goes quiet.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        upstream.push(Behavior::StallAfterChunks(1));
        let arrived = upstream.requests().len();
        let caller = caller.clone();
        let calls = calls.clone();
        stalled.push(tokio::spawn(async move {
            if let Some((id, seen)) = call(&caller, true).await {
                calls.record(id, seen);
            }
        }));
        wait_for(
            Duration::from_secs(10),
            "the stream reaches the provider",
            || {
                let n = upstream.requests().len();
                async move { n > arrived }
            },
        )
        .await;
    }
    // Calls that finish during the drain: the provider answers after a second and a half.
    let before = upstream.requests().len();
    let mut slow = Vec::new();
    for _ in 0..4 {
        upstream.push(Behavior::DelayFirstByte(Duration::from_millis(1500)));
    }
    for i in 0..4 {
        let caller = caller.clone();
        let calls = calls.clone();
        slow.push(tokio::spawn(async move {
            if let Some((id, seen)) = call(&caller, i % 2 == 0).await {
                calls.record(id, seen);
            }
        }));
    }
    wait_for(
        Duration::from_secs(10),
        "the slow calls reach the provider",
        || {
            let n = upstream.requests().len();
            async move { n >= before + 4 }
        },
    )
    .await;
    // And a steady load from eight clients until the server stops accepting.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for client in 0..8 {
        let caller = caller.clone();
        let calls = calls.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                match call(&caller, (client + n) % 2 == 0).await {
                    Some((id, seen)) => calls.record(id, seen),
                    None => break,
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let pid = child.id().expect("running");
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    // Generous slack over the bound, yet far below the five minutes a stalled stream would hold
    // a process that did not cut it off.
    let exited = tokio::time::timeout(DRAIN + Duration::from_secs(20), child.wait())
        .await
        .expect("the process exits within its shutdown bound")
        .expect("exit status");
    let took = signalled.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert!(exited.success(), "exit status {exited:?}");
    for task in stalled.into_iter().chain(slow).chain(load) {
        task.await.expect("client task");
    }

    let seen = calls.all();
    let answered = seen.values().filter(|s| **s == Seen::Answered).count();
    let cut: Vec<_> = seen
        .values()
        .filter(|s| matches!(s, Seen::EndedWith(_)))
        .collect();
    assert!(
        answered >= 10,
        "under load: {answered} answered of {seen:?}"
    );
    assert_eq!(
        cut,
        vec![&Seen::EndedWith("server_shutting_down".into()); 3],
        "the stalled streams end with an error event at the bound"
    );
    assert!(
        took >= DRAIN * 3 / 4 - Duration::from_millis(500),
        "the stalled streams were waited for until the bound neared ({took:?})"
    );

    // Every call the provider saw, and every call a client saw, is in the journal once.
    let db = env.db().await;
    let rows = db
        .query(
            "SELECT envelope->>'correlation_id', event_type, \
                    COALESCE((envelope->'data'->>'total_tokens')::bigint, 0) \
             FROM journal WHERE event_type LIKE 'chat.completion.%'",
            &[],
        )
        .await
        .expect("chat events");
    let mut events: HashMap<String, (String, i64)> = HashMap::new();
    for row in &rows {
        let previous = events.insert(row.get(0), (row.get(1), row.get(2)));
        assert!(
            previous.is_none(),
            "two events for {:?}",
            row.get::<_, String>(0)
        );
    }
    let chat_requests = upstream
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count();
    assert_eq!(
        events.len(),
        chat_requests,
        "one event per call the provider served"
    );
    for (request_id, seen) in &seen {
        let (event_type, tokens) = events
            .get(request_id)
            .unwrap_or_else(|| panic!("{request_id} ({seen:?}) has no event"));
        if matches!(seen, Seen::Answered | Seen::EndedWith(_)) {
            assert_eq!(event_type, "chat.completion.succeeded", "{request_id}");
            assert!(*tokens > 0, "{request_id} is billed");
        }
    }
    // The quota ledger holds what was billed, and nothing stays reserved: leases given back.
    let billed: i64 = events.values().map(|(_, tokens)| tokens).sum();
    let ledger = db
        .query_one(
            "SELECT COALESCE(sum(used), 0)::bigint, COALESCE(sum(reserved), 0)::bigint \
             FROM quota_usage WHERE org_id = $1",
            &[&uuid::Uuid::parse_str(&tenant.org_id).expect("org id")],
        )
        .await
        .expect("ledger");
    assert_eq!(
        ledger.get::<_, i64>(0),
        billed,
        "the ledger holds the usage billed"
    );
    assert_eq!(ledger.get::<_, i64>(1), 0, "no tokens left reserved");
}
