//! How many concurrent streaming chat calls one gateway process holds, and its memory.
//!
//! Three processes: this one (the clients), a slow local upstream (this binary again, with
//! `--upstream`: every stream sends one chunk every `gap` seconds for `hold` seconds) and the
//! gateway (`aihub command-api`, no projectors). Clients open streams at a steady pace, each
//! counting as open once its first chunk arrived, and read them to the end. Every second the
//! benchmark prints the open streams on both sides and the gateway's RSS and open files.
//!
//! The upstream speaks TLS with HTTP/2 by ALPN, as OpenRouter and Gemini do (a private CA the
//! gateway trusts through `AIHUB_UPSTREAM_CA_FILE`): the gateway's streams to it share one
//! connection, so N streams cost it N + a few dozen open files. With `plain` the upstream speaks
//! HTTP/1.1 without TLS, one connection per stream: 2N open files.
//!
//! Run: `cargo run --release -p benches --bin streams -- [streams] [hold seconds] [opened per second] [tls|plain]`
//! (defaults 10000, 60, 1000, tls) with Postgres and the broker up.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use benches::{fd_limit, load_average, machine, open_fds, rss_mib};
use e2e::{admin_key, Env, Tenant};
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--upstream") {
        let port: u16 = args[2].parse().expect("port");
        let hold: u64 = args[3].parse().expect("hold");
        let tls = args.get(4).zip(args.get(5));
        return serve_upstream(port, Duration::from_secs(hold), tls).await;
    }
    let streams: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let hold: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60);
    let pace: f64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000.0);
    let tls = args.get(4).map(String::as_str) != Some("plain");
    println!(
        "machine: {}; load average before: {}; open files allowed here: {}",
        machine(),
        load_average(),
        fd_limit(std::process::id())
    );

    let upstream_port = benches::free_port();
    let mut upstream_args = vec![
        "--upstream".to_string(),
        upstream_port.to_string(),
        hold.to_string(),
    ];
    let mut gateway_env = vec![];
    let upstream_base = if tls {
        let files = e2e::tls::private_ca();
        upstream_args.extend([files.cert, files.key]);
        gateway_env.push(("AIHUB_UPSTREAM_CA_FILE", files.ca));
        format!("https://127.0.0.1:{upstream_port}/api/v1")
    } else {
        format!("http://127.0.0.1:{upstream_port}/api/v1")
    };
    println!(
        "upstream: {}",
        if tls {
            "TLS, HTTP/2 by ALPN"
        } else {
            "plain HTTP/1.1"
        }
    );
    let mut upstream = tokio::process::Command::new(std::env::current_exe().expect("exe"))
        .args(&upstream_args)
        .kill_on_drop(true)
        .spawn()
        .expect("upstream starts");

    let env = Env::new().await;
    let (setup, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "streams").await;
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

    let catalog = json!([{"name": "bench", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1,
        "output_micros_per_mtok": 1, "deployments": [{"provider": "openrouter", "upstream_model": "bench/slow"}]}]);
    let file =
        std::env::temp_dir().join(format!("aihub-streams-models-{}.json", std::process::id()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    let port = benches::free_port();
    let mut gateway = benches::spawn_aihub(
        "command-api",
        &env.config,
        Some(port),
        &[
            ("OPENROUTER_API_KEY", "bench".to_string()),
            ("OPENROUTER_BASE_URL", upstream_base),
            ("AIHUB_MODELS_FILE", file.display().to_string()),
            ("RUST_LOG", "warn".to_string()),
        ]
        .into_iter()
        .chain(gateway_env)
        .collect::<Vec<_>>(),
        &std::env::temp_dir().join("aihub-bench-streams-gateway.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    benches::wait_healthy(&base).await;
    let pid = gateway.id().expect("pid");
    let idle_rss = rss_mib(pid);
    println!(
        "gateway pid {pid}: idle RSS {idle_rss:.1} MiB, {} open files, limit {}",
        open_fds(pid),
        fd_limit(pid)
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(hold + 120))
        .build()
        .expect("client");
    let url = format!("{base}/api/v1/chat/completions");
    let body = json!({"model": "bench", "messages": [{"role": "user", "content": "keep talking"}], "stream": true});
    let open = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));

    let started = Instant::now();
    let monitor = {
        let (open, completed, failed) = (open.clone(), completed.clone(), failed.clone());
        tokio::spawn(async move {
            let mut peak = (0usize, 0.0f64, 0usize);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now_open = open.load(Ordering::Relaxed);
                let (rss, fds) = (rss_mib(pid), open_fds(pid));
                if now_open >= peak.0 {
                    peak = (now_open, rss, fds);
                }
                println!(
                    "{:>4.0} s: {now_open} open, {} completed, {} failed | gateway RSS {rss:.1} MiB, {fds} open files",
                    started.elapsed().as_secs_f64(),
                    completed.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                );
                if completed.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) >= streams {
                    return peak;
                }
            }
        })
    };

    let interval = Duration::from_secs_f64(1.0 / pace);
    for i in 0..streams {
        tokio::time::sleep_until((started + interval.mul_f64(i as f64)).into()).await;
        let (http, url, key, body) = (http.clone(), url.clone(), key.clone(), body.clone());
        let (open, completed, failed, first_error) = (
            open.clone(),
            completed.clone(),
            failed.clone(),
            first_error.clone(),
        );
        tokio::spawn(async move {
            let outcome = async {
                let mut response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("send: {e:?}"))?;
                if !response.status().is_success() {
                    return Err(format!("status {}", response.status()));
                }
                let mut counted = false;
                let mut done = false;
                while let Some(chunk) = response.chunk().await.map_err(|e| format!("read: {e}"))? {
                    if !counted {
                        counted = true;
                        open.fetch_add(1, Ordering::Relaxed);
                    }
                    done |= chunk.windows(6).any(|w| w == b"[DONE]");
                }
                if counted {
                    open.fetch_sub(1, Ordering::Relaxed);
                }
                done.then_some(())
                    .ok_or_else(|| "ended without [DONE]".to_string())
            }
            .await;
            match outcome {
                Ok(()) => completed.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        });
    }
    let (peak, rss, fds) = monitor.await.expect("monitor");
    println!(
        "RESULT: {streams} streams asked, {peak} open at once; gateway RSS {rss:.1} MiB at the peak \
         ({idle_rss:.1} MiB idle, {:.1} KiB per open stream), {fds} open files; {} completed, {} failed{}; load average after: {}",
        if peak > 0 { (rss - idle_rss) * 1024.0 / peak as f64 } else { 0.0 },
        completed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| format!(" (first failure: {e})"))
            .unwrap_or_default(),
        load_average(),
    );
    let _ = gateway.kill().await;
    let _ = upstream.kill().await;
}

/// An OpenAI-compatible upstream whose streams stay open `hold`, one chunk every 2 s.
async fn serve_upstream(port: u16, hold: Duration, tls: Option<(&String, &String)>) {
    let app = Router::new().route(
        "/api/v1/chat/completions",
        post(move || async move {
            let gap = Duration::from_secs(2);
            let chunks = (hold.as_secs() / 2).max(1) as u32;
            let stream = futures::stream::unfold(0u32, move |i| async move {
                if i > chunks + 1 {
                    return None;
                }
                if i > 0 && i <= chunks {
                    tokio::time::sleep(gap).await;
                }
                let line = if i < chunks {
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "bench/slow",
                        "choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": null}]})
                        .to_string()
                } else if i == chunks {
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "bench/slow", "choices": [],
                        "usage": {"prompt_tokens": 2, "completion_tokens": chunks, "total_tokens": chunks + 2}})
                        .to_string()
                } else {
                    "[DONE]".to_string()
                };
                Some((Ok::<_, Infallible>(format!("data: {line}\n\n")), i + 1))
            });
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/event-stream"),
            );
            response
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind upstream");
    let Some((cert, key)) = tls else {
        axum::serve(listener, app).await.expect("upstream serves");
        return;
    };
    e2e::tls::serve(listener, e2e::tls::acceptor(cert, key), app, |app| app).await;
}
