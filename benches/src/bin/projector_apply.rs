//! Figures for the projectors reading at Kafka speed: a topic preloaded with chat usage events
//! (`chat.completion.succeeded`, the platform's bulk) is applied from the beginning by every
//! projection of a projector process, each in its own consumer group; then `aihub replay --all`
//! rebuilds every read model from the same topic and is timed.
//!
//! Run: `cargo build --release -p aihub -p benches && target/release/projector_apply [events]
//! [partitions]` (defaults 1,000,000 and 12) with Postgres and the broker up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aihub::Roles;
use benches::{load_average, machine, usage_event};
use e2e::Env;
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let partitions: i32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(12);
    println!("machine: {}", machine());
    println!("broker: {}", e2e::brokers());
    println!("load average before: {}", load_average());

    let mut env = Env::new().await;
    env.config.topic = format!("aihub.bench.{}", Uuid::now_v7().simple());
    env.config.topic_partitions = partitions;
    events::kafka::ensure_topic(&env.config.kafka, &env.config.topic, partitions, 1)
        .await
        .expect("topic");

    let started = Instant::now();
    let orgs: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
    benches::preload(
        &env,
        (0..total).map(|i| usage_event(orgs[i % orgs.len()], i)),
    )
    .await;
    let produced = started.elapsed();
    println!(
        "preloaded {total} events on {partitions} partitions in {:.1}s ({:.0} events/s produced)",
        produced.as_secs_f64(),
        total as f64 / produced.as_secs_f64()
    );

    let projections = projectors::all();
    let started = Instant::now();
    let process = env
        .start(Roles {
            projectors: true,
            ..Roles::none()
        })
        .await;
    let mut done: HashMap<String, Duration> = HashMap::new();
    let mut last_report = Instant::now();
    while done.len() < projections.len() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let rows = env
            .db()
            .await
            .query(
                // Offsets, not applied marks: a projection that does not read chat events
                // skips them unread and marks none.
                "SELECT projection, COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets
                 WHERE topic = $1 GROUP BY projection",
                &[&env.config.topic],
            )
            .await
            .expect("applied");
        for row in rows {
            let (name, applied): (String, i64) = (row.get(0), row.get(1));
            if applied as usize >= total && !done.contains_key(&name) {
                done.insert(name, started.elapsed());
            }
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let applied = env
                .count("SELECT COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets")
                .await;
            println!(
                "  {:.0}s: {applied} of {} events consumed",
                started.elapsed().as_secs_f64(),
                total * projections.len()
            );
        }
    }
    let all = started.elapsed();
    process.stop().await;
    let mut finished: Vec<_> = done.into_iter().collect();
    finished.sort_by_key(|(_, t)| *t);
    for (name, time) in &finished {
        println!(
            "projection {name}: {total} events in {:.1}s = {:.0} events/s",
            time.as_secs_f64(),
            total as f64 / time.as_secs_f64()
        );
    }
    println!(
        "all {} projections together: {} applications in {:.1}s = {:.0} events/s per projection, {:.0} applications/s in all",
        projections.len(),
        total * projections.len(),
        all.as_secs_f64(),
        total as f64 / all.as_secs_f64(),
        (total * projections.len()) as f64 / all.as_secs_f64()
    );
    println!(
        "read.chat_calls rows: {}",
        env.count("SELECT count(*) FROM read.chat_calls").await
    );

    let started = Instant::now();
    let output = env
        .aihub_command(benches::aihub_binary())
        .args(["replay", "--all"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("aihub replay runs");
    let replay = started.elapsed();
    print!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "aihub replay --all of {total} events: {:.1}s",
        replay.as_secs_f64()
    );
    println!("load average after: {}", load_average());
}
