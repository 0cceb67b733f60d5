//! How soon an alert is notified (issue 11): from the chat call whose failure crosses a rule's
//! threshold (`chat.errors > 0`, `for` 0) to its notification arriving at a Slack-shaped
//! receiver. Between them: the call's event through the journal, the relay, the topic and the
//! metrics projection; the evaluator's next tick (`AIHUB_ALERT_EVAL_MS`); `alert.triggered`
//! through the relay and the alerting projection into the outbox; the notifier's next poll
//! (250 ms) and the HTTP request. Each round is a fresh Pro organization with its own rule.
//!
//! Run: `cargo build --release -p benches --bin alerts && target/release/alerts [rounds] [eval_ms]`
//! (default 10 rounds, 1000 ms) with Postgres and the broker up (`KAFKA_BROKERS`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use benches::{load_average, machine, percentiles};
use e2e::upstream::{Behavior, Upstream};
use e2e::{Env, Tenant};
use platform::config::ProviderConfig;
use serde_json::json;

type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let eval_ms: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000);
    println!("machine: {}  load: {}", machine(), load_average());

    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    let gateway = &mut env.config.gateway;
    gateway.models_file = Some(
        e2e::one_model_catalog(2_500_000, 10_000_000)
            .display()
            .to_string(),
    );
    gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "or-test".into(),
    }];
    gateway.breaker_failures = 1_000;
    env.config.alert_eval = Duration::from_millis(eval_ms);
    env.config.webhook_allow_networks = Some(platform::config::Networks(vec!["127.0.0.1/32"
        .parse()
        .expect("network")]));
    let (_app, admin) = env.app().await;

    let arrivals: Arrivals = Arc::default();
    let port = e2e::free_port();
    let recorder = arrivals.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let recorder = recorder.clone();
        async move {
            recorder
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((uri.path().to_string(), Instant::now()));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("receiver");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let mut latencies = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let tenant = Tenant::create_on(&admin, "alert-bench", "pro").await;
        let created = tenant
            .owner
            .post(
                "/api/v1/monitoring/alert-rules",
                &json!({"name": "any error", "metric": "chat.errors", "condition": ">", "threshold": 0,
                        "window_seconds": 60, "channels": [
                            {"type": "slack", "url": format!("http://127.0.0.1:{port}/round/{round}")}]}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        // Let the evaluator see the rule with nothing to report first.
        tokio::time::sleep(Duration::from_millis(eval_ms + 500)).await;
        upstream.push(Behavior::Status(500));
        let reply = tenant
            .owner
            .post(
                "/api/v1/chat/completions",
                &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        let crossed = Instant::now();
        assert_ne!(reply.status, 200, "the call fails");
        let path = format!("/round/{round}");
        let deadline = crossed + Duration::from_secs(60);
        let arrived = loop {
            let hit = arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, at)| *at);
            if let Some(at) = hit {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no notification in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let latency = arrived.saturating_duration_since(crossed);
        println!(
            "round {round}: notified {:.0} ms after the failing call",
            latency.as_secs_f64() * 1000.0
        );
        latencies.push(latency);
    }
    let (p50, p99, max) = percentiles(&mut latencies);
    println!(
        "AIHUB_ALERT_EVAL_MS={eval_ms} rounds={rounds}: crossing event → notification p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms"
    );
}
