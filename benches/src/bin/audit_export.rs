//! Figures for the audit export (issue 12, acceptance: "an export of 100,000 events streams with
//! bounded memory, and verifies offline with a small script that we ship").
//!
//! An `aihub serve` process runs against a fresh database and topic. The benchmark appends
//! N chat events (default 100,000) of one organization through `Journal::append_new` — the
//! path the gateway's chat events take, so the journal's trigger chains every one — in batches
//! of 1,000; the server's relay publishes them and its audit projection writes them into
//! `read.audit_log`. Then it asks for an export (`POST /audit/logs/export`) and downloads it,
//! JSON Lines and CSV, sampling the server's resident memory every 20 ms during each download,
//! and runs `infra/audit/verify_export.py` on each file, with the checkpoints' public key.
//!
//! Run: `cargo build --release -p aihub -p benches --bin audit_export &&
//! target/release/audit_export [events]` with Postgres and the broker up (`KAFKA_BROKERS`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{load_average, machine, rss_mib};
use command_api::Journal;
use e2e::{Api, Env, Tenant, TEST_AUDIT_SEED};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

/// Downloads `path` to `file` while sampling the server's RSS; returns (bytes, lines, seconds,
/// peak RSS MiB).
async fn download(api: &Api, path: &str, file: &std::path::Path, pid: u32) -> (u64, u64, f64, f64) {
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak.max(rss_mib(pid))
        })
    };
    let started = Instant::now();
    let response = api
        .http
        .get(api.url(path))
        .bearer_auth(&api.token)
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .expect("download starts");
    assert_eq!(response.status(), 200, "download of {path}");
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).expect("file"));
    let mut body = response.bytes_stream();
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        out.write_all(&chunk).expect("write");
    }
    out.flush().expect("flush");
    let took = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or(0.0);
    (bytes, lines, took, peak)
}

fn verify(file: &std::path::Path, public_key: &str) -> (bool, f64, String) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/audit/verify_export.py");
    let started = Instant::now();
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .args(["--public-key", public_key])
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success(),
        started.elapsed().as_secs_f64(),
        text.trim().to_string(),
    )
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    println!("machine: {}", machine());
    println!("load average before: {}", load_average());

    let env = Env::new().await;
    let port = benches::free_port();
    let log = std::env::temp_dir().join("aihub-bench-audit-export.log");
    let mut server = benches::spawn_aihub(
        "serve",
        &env.config,
        Some(port),
        &[
            ("AIHUB_AUDIT_SIGNING_KEY", TEST_AUDIT_SEED.to_string()),
            ("AIHUB_AUDIT_CHECKPOINT_MS", "5000".to_string()),
            ("RUST_LOG", "warn".to_string()),
        ],
        &log,
    );
    let base = format!("http://127.0.0.1:{port}");
    benches::wait_healthy(&base).await;
    let pid = server.id().expect("pid");
    let admin = Api {
        base,
        token: env.config.admin_token.clone().unwrap_or_default(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client"),
    };
    let tenant = Tenant::create(&admin, "audit-export").await;
    let org: Uuid = tenant.org_id.parse().expect("org id");
    println!("server pid {pid}: RSS {:.1} MiB after start", rss_mib(pid));

    // The write path of chat events: the trigger chains each row as it is inserted.
    let pool = env.config.database.pool(4).expect("pool");
    let journal = Journal::new(pool);
    let started = Instant::now();
    let mut written = 0;
    while written < total {
        let batch: Vec<_> = (written..(written + 1000).min(total))
            .map(|i| benches::usage_event(org, i))
            .collect();
        written += journal.append_new(&batch).await.expect("append") as usize;
    }
    println!(
        "appended {total} chat events through the journal's chain trigger in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    loop {
        let projected = env
            .count(&format!(
                "SELECT count(*) FROM read.audit_log WHERE org_id = '{org}'"
            ))
            .await;
        if projected as usize >= total {
            println!(
                "{projected} events of the organization in read.audit_log after {:.1}s more (relay and audit projection of the server)",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let a checkpoint be signed after the last event, so the export carries one.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let public_key = tenant.owner.get("/api/v1/audit/public-key").await.body["public_key"]
        .as_str()
        .expect("public key")
        .to_string();

    // The downloads are also served by a fresh `aihub read-api` process, whose memory is not
    // what projecting the events left resident.
    let read_port = benches::free_port();
    let mut reader = benches::spawn_aihub(
        "read-api",
        &env.config,
        Some(read_port),
        &[("RUST_LOG", "warn".to_string())],
        &std::env::temp_dir().join("aihub-bench-audit-export-read.log"),
    );
    let read_base = format!("http://127.0.0.1:{read_port}");
    benches::wait_healthy(&read_base).await;
    let read_pid = reader.id().expect("pid");
    let fresh = Api {
        base: read_base,
        ..tenant.owner.clone()
    };

    for format in ["jsonl", "csv"] {
        let asked = tenant
            .owner
            .post("/api/v1/audit/logs/export", &json!({"format": format}))
            .await;
        assert_eq!(asked.status, 202, "{}", asked.body);
        let path = asked.body["download_url"]
            .as_str()
            .expect("url")
            .to_string();
        let before = rss_mib(pid);
        let file =
            std::env::temp_dir().join(format!("aihub-bench-export-{}.{format}", Uuid::now_v7()));
        let (bytes, lines, took, peak) = download(&tenant.owner, &path, &file, pid).await;
        println!(
            "{format}: {lines} lines, {:.1} MiB in {took:.1}s ({:.0} events/s); server RSS {before:.1} MiB before, peak {peak:.1} MiB during (+{:.1} MiB)",
            bytes as f64 / 1_048_576.0,
            lines as f64 / took,
            peak - before
        );
        let before = rss_mib(read_pid);
        let again =
            std::env::temp_dir().join(format!("aihub-bench-export-{}.{format}", Uuid::now_v7()));
        let (_, fresh_lines, took, peak) = download(&fresh, &path, &again, read_pid).await;
        println!(
            "{format} from a fresh read-api process: {fresh_lines} lines in {took:.1}s; its RSS {before:.1} MiB before, peak {peak:.1} MiB during (+{:.1} MiB)",
            peak - before
        );
        let _ = std::fs::remove_file(&again);
        let (ok, seconds, said) = verify(&file, &public_key);
        println!(
            "{format}: verify_export.py {} in {seconds:.1}s: {said}",
            if ok { "verifies" } else { "FAILS" }
        );
        let _ = std::fs::remove_file(&file);
    }
    println!("load average after: {}", load_average());
    let _ = reader.kill().await;
    let _ = server.kill().await;
}
