//! Figures for usage ingestion: chat usage events (`chat.completion.succeeded`) per second from
//! the journal append, through the outbox relay and the topic, to the usage read model
//! (`read.chat_calls`). Events are appended in batches of up to 500, as the gateway's appender
//! does, spread over 100 organizations (so over every partition); every projection of the
//! process reads every event, as in production.
//!
//! Run: `cargo run --release -p benches --bin usage_ingest -- [events]` (default 100000) with
//! Postgres and the broker up.

use std::time::{Duration, Instant};

use benches::{load_average, machine, usage_event};
use command_api::Journal;
use e2e::Env;
use events::EventEnvelope;
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    println!("machine: {}", machine());
    println!("broker: {}", e2e::brokers());
    println!("load average before: {}", load_average());

    let env = Env::new().await;
    let (app, _admin) = env.app().await;
    let pool = env.config.database.pool(4).expect("pool");
    let journal = Journal::new(pool);
    let orgs: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    // Warm up: the consumer groups join and fetch before the clock starts.
    journal
        .append(&[usage_event(orgs[0], 0)], &[])
        .await
        .expect("append");
    wait_for_rows(&env, 1, Duration::from_secs(60)).await;

    let started = Instant::now();
    let mut appended = 0;
    while appended < total {
        let batch: Vec<EventEnvelope> = (appended..total.min(appended + 500))
            .map(|i| usage_event(orgs[i % orgs.len()], i))
            .collect();
        journal.append(&batch, &[]).await.expect("append");
        appended += batch.len();
    }
    let append_time = started.elapsed();
    wait_for_rows(&env, total as i64 + 1, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    println!(
        "{total} usage events: appended to the journal in {:.2}s ({:.0} events/s); in read.chat_calls after {:.2}s = {:.0} events/s end to end",
        append_time.as_secs_f64(),
        total as f64 / append_time.as_secs_f64(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
    );
    let projections = projectors::all().len();
    println!(
        "{projections} projections each consume every event (those that do not read chat events skip them undecoded): the broker served {} records to consumers, {:.0} records/s",
        projections * total,
        (projections * total) as f64 / elapsed.as_secs_f64()
    );
    println!("load average after: {}", load_average());
    app.stop().await;
}

async fn wait_for_rows(env: &Env, rows: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while env.count("SELECT count(*) FROM read.chat_calls").await < rows {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {rows} rows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
