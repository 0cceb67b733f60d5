//! Figures for the token quota: what reserving and settling a call costs the gateway, p50 and
//! p99, with process-local leases (the default) and with the per-call ledger transactions they
//! replace, for many calls of one organization and for calls spread over many organizations.
//! Calls are reserved and settled straight through `Leases` (no HTTP, no upstream), `clients`
//! at a time, so the figures are the quota's own cost; the ledger is the real Postgres one.
//!
//! Run: `cargo run --release -p benches --bin quota -- [calls] [clients] [orgs]`
//! (defaults 20000, 16 and 1000) with Postgres up (no broker needed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{load_average, machine, percentiles};
use e2e::Env;
use gateway::quota::leases::{LeaseConfig, Leases};
use gateway::quota::{lease::Sizing, prompt_upper_bound};
use platform::plans::Plan;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Pro's allowance is 1,000,000 tokens; the benchmark's organizations get far more, so no call is
/// refused and every figure is of a granted call.
const PLAN: Plan = Plan {
    id: platform::plans::PlanId::Enterprise,
    name: "Bench",
    price_cents: Some(0),
    tokens_per_month: Some(1_000_000_000_000),
    model_tier: platform::plans::ModelTier::Premium,
    features: &[],
    rank: 0,
    requests_per_minute: u64::MAX,
    tokens_per_minute: u64::MAX,
    concurrent_streams: u32::MAX,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let orgs: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    println!("machine: {}", machine());
    println!("load average before: {}", load_average());
    let body =
        serde_json::json!({"messages": [{"role": "user", "content": "Hello quota benchmark"}]});
    let prompt = prompt_upper_bound(&body);
    for per_call in [false, true] {
        // The per-call path is two transactions a call: fewer calls keep the run short.
        let calls = if per_call { calls / 4 } else { calls };
        for orgs in [1, orgs] {
            run(per_call, calls, clients, orgs, prompt).await;
        }
    }
    println!("load average after: {}", load_average());
}

async fn run(per_call: bool, calls: usize, clients: usize, orgs: usize, prompt: i64) {
    let env = Env::new().await;
    let pool = env.config.database.pool(16).expect("pool");
    let config = LeaseConfig {
        hold: Duration::from_secs(180),
        flush: Duration::from_millis(500),
        idle: Duration::from_secs(2),
        sizing: Sizing::default(),
        per_call,
    };
    let leases = Leases::new(pool, config);
    let shutdown = CancellationToken::new();
    let upkeep = tokio::spawn(leases.clone().run(shutdown.clone()));
    let org_ids: Arc<Vec<Uuid>> = Arc::new((0..orgs).map(|_| Uuid::now_v7()).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (leases, org_ids, next) = (leases.clone(), org_ids.clone(), next.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= calls {
                        return samples;
                    }
                    let org = org_ids[i % org_ids.len()];
                    let t0 = Instant::now();
                    let reservation = leases
                        .reserve(org, &PLAN, prompt, Some(200), chrono::Utc::now())
                        .await
                        .expect("reserved");
                    leases
                        .settle(&reservation, reservation.tokens / 2)
                        .await
                        .expect("settled");
                    samples.push(t0.elapsed());
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(calls);
    for worker in workers {
        samples.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    let transactions = leases.ledger_transactions();
    shutdown.cancel();
    upkeep.await.expect("upkeep");
    let (p50, p99, max) = percentiles(&mut samples);
    let path = if per_call {
        "per-call ledger"
    } else {
        "leases"
    };
    println!(
        "{path:>15}, {orgs:>4} org(s): {calls} calls by {clients} clients in {:.2}s ({:.0} calls/s) | reserve+settle p50 {:.3} ms p99 {:.3} ms max {:.1} ms | {transactions} ledger transactions ({:.3} per call)",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
        max,
        transactions as f64 / calls as f64,
    );
    // The ledger must balance once every lease is given back: nothing held, half of each call used.
    let db = env.db().await;
    let row = db
        .query_one(
            "SELECT COALESCE(sum(reserved), 0)::bigint, COALESCE(sum(used), 0)::bigint FROM quota_usage",
            &[],
        )
        .await
        .expect("ledger");
    let (reserved, used): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(reserved, 0, "every lease given back");
    assert_eq!(
        used,
        calls as i64 * ((prompt + 200) / 2),
        "usage recorded exactly"
    );
}
