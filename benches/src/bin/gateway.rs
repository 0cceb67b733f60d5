//! Figures for the chat gateway: requests/s and the latency it adds over calling the upstream
//! directly, in the same run, non-streaming and streaming, against a local upstream that answers
//! at once (the test upstream of `tests/src/upstream.rs`, which spaces stream chunks 5 ms apart).
//!
//! Run: `cargo run --release -p benches --bin gateway -- [requests] [concurrency]`
//! (defaults 2000 and 16) with Postgres and the broker up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{machine, percentiles};
use e2e::upstream::Upstream;
use e2e::{admin_key, Env, Tenant};
use platform::config::ProviderConfig;
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    println!("machine: {}", machine());

    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = json!([{"name": "bench", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1,
        "output_micros_per_mtok": 1, "deployments": [{"provider": "openrouter", "upstream_model": "bench/model"}]}]);
    let file = std::env::temp_dir().join("aihub-bench-models.json");
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "bench".into(),
    }];
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "bench").await;
    // Unlimited tokens, so the quota never refuses a benchmark call (it is still reserved and settled).
    let upgraded = admin
        .put(
            &format!("/api/v1/subscriptions/{}/upgrade", tenant.org_id),
            &json!({"plan": "enterprise"}),
        )
        .await;
    assert_eq!(upgraded.status, 200, "{}", upgraded.body);
    let key = admin_key(&admin, &tenant.org_id, None, &["chat:write".into()]).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()
        .expect("client");

    let gateway_url = format!("{}/api/v1/chat/completions", admin.base);
    let direct_url = format!("{}/chat/completions", upstream.openai_base_url());
    for stream in [false, true] {
        let body = json!({"model": "bench", "messages": [{"role": "user", "content": "Hello benchmark"}], "stream": stream});
        let direct_body = json!({"model": "bench/model", "messages": [{"role": "user", "content": "Hello benchmark"}], "stream": stream});
        // Warm both paths (connections, caches) before measuring.
        run(&http, &direct_url, "bench", &direct_body, 100, concurrency).await;
        run(&http, &gateway_url, &key, &body, 100, concurrency).await;
        let (mut direct, direct_rate) = run(
            &http,
            &direct_url,
            "bench",
            &direct_body,
            requests,
            concurrency,
        )
        .await;
        let (mut through, gateway_rate) =
            run(&http, &gateway_url, &key, &body, requests, concurrency).await;
        let (d50, d99, _) = percentiles(&mut direct);
        let (g50, g99, _) = percentiles(&mut through);
        let kind = if stream { "streaming" } else { "non-streaming" };
        println!(
            "{kind}: {requests} requests, {concurrency} concurrent | direct {direct_rate:.0} req/s p50 {d50:.2} ms p99 {d99:.2} ms \
             | gateway {gateway_rate:.0} req/s p50 {g50:.2} ms p99 {g99:.2} ms | added p50 {:.2} ms p99 {:.2} ms",
            g50 - d50,
            g99 - d99
        );
    }
    println!("gateway process RSS after the run: {} MiB", rss_mib());
    app.stop().await;
}

/// Sends `total` requests, `concurrency` at a time, each read to its end; returns latencies and req/s.
async fn run(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
    total: usize,
    concurrency: usize,
) -> (Vec<Duration>, f64) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, token, body, next) = (
                http.clone(),
                url.to_string(),
                token.to_string(),
                body.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    let t0 = Instant::now();
                    let response = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .expect("request");
                    assert!(
                        response.status().is_success(),
                        "status {}",
                        response.status()
                    );
                    response.bytes().await.expect("body");
                    samples.push(t0.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(total);
    for worker in workers {
        samples.extend(worker.await.expect("worker"));
    }
    let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
    (samples, rate)
}

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}
