//! Figures for the chat gateway: the latency it adds over calling the upstream directly, at a
//! fixed offered rate (open loop: requests are sent on a schedule, whether or not earlier ones
//! have answered) and at its maximum throughput (closed loop), non-streaming and streaming,
//! direct and through the gateway in the same run.
//!
//! The gateway is the real binary (`aihub command-api`: chat routes, authentication, journal
//! appends, the outbox relay) in a process of its own; the load client and the local upstream
//! (`tests/src/upstream.rs`: answers at once, spaces stream chunks 5 ms apart) share this process.
//! The projectors run in a third process (`BENCH_PROJECTORS=process`, the default) or not at all
//! during the measurement (`BENCH_PROJECTORS=off`). `AIHUB_*` variables reach the gateway.
//!
//! Run: `cargo run --release -p benches --bin gateway -- [rate] [seconds] [concurrency]`
//! (defaults 1000 req/s, 10 s, 32) with Postgres and the broker up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{cpu_time, load_average, machine, percentiles, rss_mib};
use e2e::upstream::Upstream;
use e2e::{admin_key, Env, Tenant};
use serde_json::{json, Value};

struct Run {
    latencies: Vec<Duration>,
    rate: f64,
    errors: usize,
    /// How far the sender fell behind its schedule (open loop only).
    lag: Duration,
}

impl Run {
    fn summary(&mut self) -> (f64, f64, f64) {
        percentiles(&mut self.latencies)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000.0);
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let concurrency: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(32);
    let projectors = std::env::var("BENCH_PROJECTORS").unwrap_or_else(|_| "process".into());
    println!(
        "machine: {}; load average before: {}",
        machine(),
        load_average()
    );

    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let catalog = json!([{"name": "bench", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1,
        "output_micros_per_mtok": 1, "deployments": [{"provider": "openrouter", "upstream_model": "bench/model"}]}]);
    let file = std::env::temp_dir().join(format!("aihub-bench-models-{}.json", std::process::id()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");

    // Set-up through an in-process instance with every role, so the key is projected.
    let (setup, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "bench").await;
    // Unlimited tokens: the quota is not part of this measurement.
    let upgraded = admin
        .put(
            &format!("/api/v1/subscriptions/{}/upgrade", tenant.org_id),
            &json!({"plan": "enterprise"}),
        )
        .await;
    assert_eq!(upgraded.status, 200, "{}", upgraded.body);
    // Limits far above the offered load: the rate limiter is on the measured path, and admits.
    let limited = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 1_000_000_000u64, "tokens_per_minute": 1_000_000_000_000u64, "concurrent_streams": 1_000_000}),
        )
        .await;
    assert_eq!(limited.status, 200, "{}", limited.body);
    let key = admin_key(&admin, &tenant.org_id, None, &["chat:write".into()]).await;
    setup.stop().await;

    let port = benches::free_port();
    let log_dir = std::env::temp_dir();
    let gateway_env = [
        ("OPENROUTER_API_KEY", "bench".to_string()),
        ("OPENROUTER_BASE_URL", upstream.openai_base_url()),
        ("AIHUB_MODELS_FILE", file.display().to_string()),
    ];
    let mut gateway = benches::spawn_aihub(
        "command-api",
        &env.config,
        Some(port),
        &gateway_env,
        &log_dir.join("aihub-bench-gateway.log"),
    );
    let mut projector_process = (projectors == "process").then(|| {
        benches::spawn_aihub(
            "projectors",
            &env.config,
            None,
            &[],
            &log_dir.join("aihub-bench-projectors.log"),
        )
    });
    let base = format!("http://127.0.0.1:{port}");
    benches::wait_healthy(&base).await;
    let pid = gateway.id().expect("gateway pid");
    println!(
        "gateway: aihub command-api, pid {pid}; projectors: {}",
        match projectors.as_str() {
            "process" => "a separate aihub projectors process on the same cores",
            _ => "not running",
        }
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let gateway_url = format!("{base}/api/v1/chat/completions");
    let direct_url = format!("{}/chat/completions", upstream.openai_base_url());

    for stream in [false, true] {
        let kind = if stream { "streaming" } else { "non-streaming" };
        let body = json!({"model": "bench", "messages": [{"role": "user", "content": "Hello benchmark"}], "stream": stream});
        // The gateway asks the upstream for usage on streams; so does the direct call, so both
        // read the same chunks.
        let mut direct_body = json!({"model": "bench/model", "messages": [{"role": "user", "content": "Hello benchmark"}], "stream": stream});
        if stream {
            direct_body["stream_options"] = json!({"include_usage": true});
        }
        let direct = Target {
            url: &direct_url,
            token: "bench",
            body: &direct_body,
        };
        let through = Target {
            url: &gateway_url,
            token: &key,
            body: &body,
        };
        // Warm both paths (connections, the key cache) before measuring.
        closed_loop(&http, &direct, 200, concurrency).await;
        closed_loop(&http, &through, 200, concurrency).await;

        let mut d = open_loop(&http, &direct, rate, seconds).await;
        let cpu = cpu_time(pid);
        let mut g = open_loop(&http, &through, rate, seconds).await;
        let cpu_per_call = (cpu_time(pid) - cpu).as_secs_f64() * 1e6 / g.latencies.len() as f64;
        let (d50, d99, dmax) = d.summary();
        let (g50, g99, gmax) = g.summary();
        println!(
            "{kind}, open loop at {rate:.0}/s for {seconds:.0} s | direct {:.0} req/s p50 {d50:.2} p99 {d99:.2} max {dmax:.2} ms \
             | gateway {:.0} req/s p50 {g50:.2} p99 {g99:.2} max {gmax:.2} ms, {} errors \
             | added p50 {:.2} ms p99 {:.2} ms | gateway CPU {cpu_per_call:.0} µs per call | sender lag max {:.2} ms / {:.2} ms",
            d.rate,
            g.rate,
            d.errors + g.errors,
            g50 - d50,
            g99 - d99,
            d.lag.as_secs_f64() * 1e3,
            g.lag.as_secs_f64() * 1e3,
        );

        let total = (rate * seconds) as usize;
        let mut d = closed_loop(&http, &direct, total, concurrency).await;
        let mut g = closed_loop(&http, &through, total, concurrency).await;
        let (d50, d99, dmax) = d.summary();
        let (g50, g99, gmax) = g.summary();
        println!(
            "{kind}, closed loop, {concurrency} concurrent, {total} calls | direct {:.0} req/s p50 {d50:.2} p99 {d99:.2} max {dmax:.2} ms \
             | gateway {:.0} req/s p50 {g50:.2} p99 {g99:.2} max {gmax:.2} ms, {} errors",
            d.rate,
            g.rate,
            d.errors + g.errors
        );
    }
    println!(
        "gateway process RSS after the run: {:.0} MiB; load average after: {}",
        rss_mib(pid),
        load_average()
    );
    let _ = gateway.kill().await;
    if let Some(p) = projector_process.as_mut() {
        let _ = p.kill().await;
    }
}

struct Target<'a> {
    url: &'a str,
    token: &'a str,
    body: &'a Value,
}

/// One call read to its end; its latency, or `None` for a failure.
async fn call(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Option<Duration> {
    let t0 = Instant::now();
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .ok()?;
    let ok = response.status().is_success();
    response.bytes().await.ok()?;
    ok.then(|| t0.elapsed())
}

/// Starts one call every `1 / rate` seconds for `seconds`, each in its own task, so a slow
/// answer never delays the next send.
async fn open_loop(http: &reqwest::Client, target: &Target<'_>, rate: f64, seconds: f64) -> Run {
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut lag = Duration::ZERO;
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        lag = lag.max(Instant::now().saturating_duration_since(due));
        let (http, url, token, body) = (
            http.clone(),
            target.url.to_string(),
            target.token.to_string(),
            target.body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            call(&http, &url, &token, &body).await
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for task in tasks {
        match task.await.ok().flatten() {
            Some(latency) => latencies.push(latency),
            None => errors += 1,
        }
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Run {
        latencies,
        rate,
        errors,
        lag,
    }
}

/// Sends `total` calls, `concurrency` at a time: the most the path serves.
async fn closed_loop(
    http: &reqwest::Client,
    target: &Target<'_>,
    total: usize,
    concurrency: usize,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, token, body, next) = (
                http.clone(),
                target.url.to_string(),
                target.token.to_string(),
                target.body.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let (mut samples, mut errors) = (Vec::new(), 0);
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    match call(&http, &url, &token, &body).await {
                        Some(latency) => samples.push(latency),
                        None => errors += 1,
                    }
                }
                (samples, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::with_capacity(total), 0);
    for worker in workers {
        let (samples, failed) = worker.await.expect("worker");
        latencies.extend(samples);
        errors += failed;
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Run {
        latencies,
        rate,
        errors,
        lag: Duration::ZERO,
    }
}
