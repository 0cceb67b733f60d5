//! Figures for the event pipeline (issue: the event pipeline, end to end):
//! - journal appends per second (the write path alone, no broker involved);
//! - latency from `POST /organizations` to "readable by GET", p50 and p99, over N commands.
//!
//! Run: `cargo run --release -p benches --bin pipeline -- [commands] [clients]`
//! (defaults 1000 and 4) with Postgres and the broker up (`infra/local/up.sh` or `test.sh`
//! starts them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{machine, percentiles};
use command_api::Journal;
use e2e::{unique_slug, Env};
use events::organization::OrganizationCreated;
use events::{Actor, EventEnvelope, EventPayload};
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let commands: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    println!("machine: {}", machine());
    println!("broker: {}", e2e::brokers());

    journal_appends(commands.max(2000), clients).await;
    post_to_readable(commands, clients).await;
}

async fn journal_appends(appends: usize, writers: usize) {
    let env = Env::new().await;
    let pool = env.config.database.pool(writers).expect("pool");
    let journal = Journal::new(pool);
    let started = Instant::now();
    let per_writer = appends / writers;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let journal = journal.clone();
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let id = Uuid::now_v7();
                    let event = EventEnvelope::new(
                        EventPayload::OrganizationCreated(OrganizationCreated {
                            name: "Bench".into(),
                            slug: format!("bench-{}", id.simple()),
                            owner_email: None,
                        }),
                        Some(id),
                        events::StreamId::organization(id.into()),
                        1,
                        Actor::system(),
                        "bench".into(),
                    );
                    journal.append(&[event], &[]).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let elapsed = started.elapsed();
    let total = per_writer * writers;
    println!(
        "journal appends: {total} single-event appends by {writers} writers in {:.2}s = {:.0} appends/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}

async fn post_to_readable(commands: usize, clients: usize) {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    // Warm up: consumer groups join and the first fetches happen.
    api.create_org(&unique_slug("warm")).await;
    let api = Arc::new(api);
    let started = Instant::now();
    let per_client = commands / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_client);
                let mut accepted = 0usize;
                for _ in 0..per_client {
                    let t0 = Instant::now();
                    let reply = api
                        .post(
                            "/api/v1/organizations",
                            &serde_json::json!({"name": "Bench", "slug": unique_slug("b")}),
                        )
                        .await;
                    let id = reply.body["id"].as_str().expect("id").to_string();
                    if reply.status == 202 {
                        accepted += 1;
                    }
                    loop {
                        if api.get(&format!("/api/v1/organizations/{id}")).await.status == 200 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    samples.push(t0.elapsed());
                }
                (samples, accepted)
            })
        })
        .collect();
    let mut samples = Vec::new();
    let mut accepted = 0;
    for task in tasks {
        let (s, a) = task.await.expect("client");
        samples.extend(s);
        accepted += a;
    }
    let elapsed = started.elapsed();
    let (p50, p99, max) = percentiles(&mut samples);
    println!(
        "POST → readable by GET: {} commands by {clients} clients in {:.2}s ({:.0} commands/s); p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; {accepted} answered 202",
        samples.len(),
        elapsed.as_secs_f64(),
        samples.len() as f64 / elapsed.as_secs_f64()
    );
    app.stop().await;
}
