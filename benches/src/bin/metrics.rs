//! Figures for monitoring (issue 11):
//!
//! 1. **Projection throughput**: a topic preloaded with chat events of 100 organizations (5 keys,
//!    3 models, 2 providers each; latencies and times to first token spread from 20 ms to 6 s;
//!    one in twenty failed; times spread over the last 6 hours) is applied from the beginning by
//!    the `metrics` projection alone, timed until its stored offsets reach the end.
//! 2. **Series query**: one organization with 30 days of one-minute buckets (a row a minute for
//!    each of its 3 models, each latency sketch holding 40 values) in `read.chat_metrics`, and
//!    their rollup (a row a minute, the three merged, with their percentiles) in
//!    `read.chat_metrics_rollup`, as the projection writes them; then
//!    `GET /monitoring/metrics/{id}/data` over those 30 days at step 1m asked 200 times for a
//!    counter and for a percentile, through HTTP to a running read API; p50, p99 and max.
//!
//! Run: `cargo build --release -p benches --bin metrics && target/release/metrics [events] [case]`
//! (default 200,000 events; `case` keeps one series case, named as printed: `0 chat.requests`
//! profiles the counter series alone) with Postgres and the broker up (`KAFKA_BROKERS`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{load_average, machine, percentiles};
use e2e::{Env, Tenant};
use events::chat::{Attempt, ChatCall, ChatCompletionFailed, ChatCompletionSucceeded};
use events::{Actor, EventEnvelope, EventPayload, Timestamp};
use platform::sketch::Sketch;
use uuid::Uuid;

/// A cheap deterministic spread of `i` over `0..n`.
fn spread(i: usize, salt: usize, n: usize) -> usize {
    (i.wrapping_mul(2_654_435_761)
        .wrapping_add(salt.wrapping_mul(40_503))
        >> 7)
        % n
}

fn chat_event(
    orgs: &[(Uuid, Vec<Uuid>)],
    i: usize,
    total: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> EventEnvelope {
    let (org, keys) = &orgs[i % orgs.len()];
    let key = keys[spread(i, 1, keys.len())];
    let model = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"][spread(i, 2, 3)];
    let provider = ["openrouter", "gemini"][spread(i, 3, 2)];
    let latency_ms = 20 + spread(i, 4, 6_000) as u64;
    let call = ChatCall {
        request_id: format!("bench-{i}"),
        api_key_id: Some(key),
        team_id: None,
        user_id: Some(key),
        model: model.into(),
        streamed: i.is_multiple_of(2),
        attempts: vec![Attempt {
            provider: provider.into(),
            upstream_model: "bench/model".into(),
            outcome: "ok".into(),
            latency_ms,
        }],
        latency_ms,
    };
    let payload = if i.is_multiple_of(20) {
        EventPayload::ChatCompletionFailed(ChatCompletionFailed {
            call,
            status: 502,
            error_code: "upstream_error".into(),
        })
    } else {
        EventPayload::ChatCompletionSucceeded(ChatCompletionSucceeded {
            call,
            provider: provider.into(),
            upstream_model: "bench/model".into(),
            prompt_tokens: 30,
            completion_tokens: 70,
            total_tokens: 100,
            cost_micros: 450,
            time_to_first_token_ms: Some(latency_ms / 3),
            client_disconnected: false,
            usage_estimated: false,
        })
    };
    let mut event = EventEnvelope::new(
        payload,
        Some(*org),
        events::StreamId::chat(Uuid::now_v7()),
        1,
        Actor::system(),
        format!("bench-{i}"),
    );
    // Six hours of calls, in order.
    let six_hours = 6 * 3_600_000_i64;
    let into = i as i64 * six_hours / total.max(1) as i64;
    event.occurred_at = Timestamp(now - chrono::Duration::milliseconds(six_hours - into));
    event
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!("machine: {}", machine());
    println!("load average before: {}", load_average());

    let mut env = Env::new().await;
    env.config.topic = format!("aihub.bench.{}", Uuid::now_v7().simple());
    env.config.topic_partitions = 12;
    events::kafka::ensure_topic(&env.config.kafka, &env.config.topic, 12, 1)
        .await
        .expect("topic");
    let orgs: Vec<(Uuid, Vec<Uuid>)> = (0..100)
        .map(|_| (Uuid::now_v7(), (0..5).map(|_| Uuid::now_v7()).collect()))
        .collect();
    let now = chrono::Utc::now();
    let started = Instant::now();
    benches::preload(&env, (0..total).map(|i| chat_event(&orgs, i, total, now))).await;
    println!(
        "preloaded {total} chat events on 12 partitions in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The metrics projection alone, as `aihub projectors` runs it.
    let pool = env.config.database.pool(8).expect("pool");
    let config = projectors::ProjectorConfig {
        kafka: env.config.kafka.clone(),
        topic: env.config.topic.clone(),
        group_prefix: env.config.consumer_group_prefix.clone(),
        linger: std::time::Duration::ZERO,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let runner = tokio::spawn(projectors::runner::run(
        Arc::new(projectors::projections::metrics::Metrics),
        pool.clone(),
        config,
        Arc::new(projectors::ProjectorStatus::default()),
        stop.clone(),
    ));
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = env
            .count("SELECT COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets WHERE projection = 'metrics'")
            .await;
        if done as usize >= total {
            break;
        }
    }
    let took = started.elapsed();
    stop.cancel();
    let _ = runner.await;
    println!(
        "metrics projection: {total} chat events in {:.1}s = {:.0} events/s; {} rows in read.chat_metrics, {} in read.chat_metrics_rollup",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        env.count("SELECT count(*) FROM read.chat_metrics").await,
        env.count("SELECT count(*) FROM read.chat_metrics_rollup").await
    );

    // A month of minutes for one organization, then its series through HTTP: a platform of its
    // own, whose projectors need not read the topic above first.
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "bench", "pro").await;
    let org: Uuid = tenant.org_id.parse().expect("org id");
    let mut sketch = Sketch::new();
    for v in 0..40 {
        sketch.add(f64::from(200 + v * 37));
    }
    let bytes = sketch.encode();
    let db = env.db().await;
    let inserted = db
        .execute(
            "INSERT INTO read.chat_metrics (org_id, step, bucket, model, provider, api_key_id, team_id, user_id,
                requests, errors, prompt_tokens, completion_tokens, total_tokens, cost_micros, quota_refusals,
                failovers, latency_ms, ttft_ms)
             SELECT $1, 60, b, m, 'openrouter', NULL, NULL, NULL, 40, 1, 1200, 2800, 4000, 18000, 0, 0, $2, $2
             FROM generate_series(date_trunc('minute', now()) - interval '30 days', date_trunc('minute', now()), interval '1 minute') AS b,
                  unnest(ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet']) AS m",
            &[&org, &bytes],
        )
        .await
        .expect("month of minutes");
    let mut merged = Sketch::new();
    for _ in 0..3 {
        merged.merge(&sketch);
    }
    // With each bucket's percentiles beside its sketches, as the projection writes them.
    let quantiles: Vec<Option<f64>> = projectors::projections::metrics::ROLLUP_QUANTILES
        .iter()
        .map(|q| merged.quantile(*q))
        .collect();
    let rolled = db
        .execute(
            "INSERT INTO read.chat_metrics_rollup (org_id, step, bucket, requests, errors, prompt_tokens,
                completion_tokens, total_tokens, cost_micros, quota_refusals, failovers, latency_ms, ttft_ms,
                latency_p50, latency_p95, latency_p99, ttft_p50, ttft_p95, ttft_p99)
             SELECT $1, 60, b, 120, 3, 3600, 8400, 12000, 54000, 0, 0, $2, $2, $3, $4, $5, $3, $4, $5
             FROM generate_series(date_trunc('minute', now()) - interval '30 days', date_trunc('minute', now()), interval '1 minute') AS b",
            &[&org, &merged.encode(), &quantiles[0], &quantiles[1], &quantiles[2]],
        )
        .await
        .expect("month of rolled-up minutes");
    // What autovacuum does to rows that no longer change (its insert threshold is crossed many
    // times over by a month of minutes): their pages marked all-visible, statistics taken.
    db.batch_execute("VACUUM ANALYZE read.chat_metrics, read.chat_metrics_rollup")
        .await
        .expect("vacuum");
    println!(
        "one organization: {inserted} one-minute rows over 30 days (3 models), {rolled} rollup rows"
    );
    let from = (chrono::Utc::now() - chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // The ungrouped series (the rollup's rows), then one grouped by model (the detailed rows,
    // summed per model: three series, fewer rounds). Timed until the whole body has arrived; the
    // client's own JSON parsing is left out.
    let cases = [
        ("chat.requests", "", 200),
        ("chat.latency_ms.p99", "", 200),
        ("chat.requests", "&group_by=model", 20),
    ];
    // A second argument keeps one case, named as printed (`chat.requests&group_by=model`).
    let only = std::env::args().nth(2);
    for (metric, extra, rounds) in cases {
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{metric}{extra}"))
        {
            continue;
        }
        let path =
            format!("/api/v1/monitoring/metrics/{metric}/data?step=1m&from={from}&to={to}{extra}");
        let first = tenant.owner.get(&path).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let series = first.body["series"].as_array().cloned().unwrap_or_default();
        let points: usize = series
            .iter()
            .map(|s| s["points"].as_array().map(Vec::len).unwrap_or(0))
            .sum();
        if metric == "chat.requests" {
            let each = if extra.is_empty() { 120.0 } else { 40.0 };
            assert!(series
                .iter()
                .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
                .all(|p| p["value"].as_f64() == Some(each)));
        }
        let mut samples = Vec::new();
        let mut bytes = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let reply = tenant
                .owner
                .request(reqwest::Method::GET, &path)
                .send()
                .await
                .expect("sent");
            assert_eq!(reply.status(), 200);
            bytes = reply.bytes().await.expect("body").len();
            samples.push(t.elapsed());
        }
        let (p50, p99, max) = percentiles(&mut samples);
        println!(
            "GET {metric}{extra} 30 days at 1m ({} series, {points} points, {} KiB): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({rounds} rounds)",
            series.len(),
            bytes / 1024
        );
    }
    app.stop().await;
    println!("load average after: {}", load_average());
}
