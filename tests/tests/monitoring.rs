//! Monitoring end to end: chat calls through the gateway against the fake providers, some
//! failing, some failing over, one refused by the quota; then every built-in metric's series, at
//! every step and for every grouping, equals what the `chat.completion.*` events on the topic
//! add up to; a rebuild of the metrics projection gives the same rows; and a hostile or careless
//! caller gets 4xx in the OpenAI shape, never another organization's figures.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use e2e::upstream::{Behavior, Upstream};
use e2e::{admin_key, wait_for, Api, Env, Tenant};
use events::{EventEnvelope, EventPayload};
use platform::config::ProviderConfig;
use platform::sketch::Sketch;
use rdkafka::message::Message;
use serde_json::{json, Value};

struct Monitoring {
    env: Env,
    app: aihub::Running,
    admin: Api,
    primary: Upstream,
    /// Kept so it keeps serving.
    _secondary: Upstream,
    tenant: Tenant,
}

async fn monitoring_env(plan: &str) -> Monitoring {
    let primary = Upstream::start().await;
    let secondary = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = json!([
        {"name": "gpt-4o", "tier": "basic", "context_length": 1000000, "input_micros_per_mtok": 2500000,
         "output_micros_per_mtok": 10000000, "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o"}]},
        {"name": "failover-model", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1000000,
         "output_micros_per_mtok": 3000000, "deployments": [
            {"provider": "openrouter", "upstream_model": "primary/model", "priority": 0},
            {"provider": "openai", "upstream_model": "secondary/model", "priority": 1}]}
    ]);
    let file = std::env::temp_dir().join(format!("aihub-models-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    let gateway = &mut env.config.gateway;
    gateway.models_file = Some(file.display().to_string());
    gateway.providers = vec![
        ProviderConfig {
            name: "openrouter".into(),
            base_url: primary.openai_base_url(),
            api_key: "or-test".into(),
        },
        ProviderConfig {
            name: "openai".into(),
            base_url: secondary.openai_base_url(),
            api_key: "oa-test".into(),
        },
    ];
    // Failures are spread out so no breaker opens: every call's path is the one asked for.
    gateway.breaker_failures = 10;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "monitoring", plan).await;
    // The monthly quota's refusal is counted here, not the rate limits': the admin lifts them.
    let lifted = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 100_000, "tokens_per_minute": 10_000_000}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    Monitoring {
        env,
        app,
        admin,
        primary,
        _secondary: secondary,
        tenant,
    }
}

fn hello() -> Value {
    json!([{"role": "user", "content": "Hello there, how are you"}])
}

async fn chat(caller: &Api, model: &str, stream: bool) -> u16 {
    let reply = caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": model, "messages": hello(), "stream": stream, "max_tokens": 20}),
        )
        .await;
    reply.status
}

/// The chat events on the test's topic once `wanted` of them are there.
async fn chat_events(env: &Env, wanted: usize) -> Vec<EventEnvelope> {
    let is_chat = |m: &rdkafka::message::OwnedMessage| {
        m.payload()
            .and_then(|p| EventEnvelope::decode(p).ok())
            .filter(|e| e.event_type().starts_with("chat.completion."))
    };
    let messages = e2e::kafka::read_until(
        &env.config.kafka,
        &env.config.topic,
        Duration::from_secs(60),
        |seen| seen.iter().filter_map(is_chat).count() >= wanted,
    )
    .await;
    messages.iter().filter_map(is_chat).collect()
}

/// What one event says, read off the event itself (not through the projection's code).
struct Call {
    at: DateTime<Utc>,
    dims: BTreeMap<&'static str, Option<String>>,
    counters: BTreeMap<&'static str, f64>,
    latency_ms: f64,
    ttft_ms: Option<f64>,
}

fn call_of(event: &EventEnvelope) -> Call {
    let (call, provider, mut counters, ttft) = match &event.payload {
        EventPayload::ChatCompletionSucceeded(e) => (
            &e.call,
            Some(e.provider.clone()),
            BTreeMap::from([
                ("chat.errors", 0.0),
                ("chat.quota_refusals", 0.0),
                ("chat.prompt_tokens", e.prompt_tokens as f64),
                ("chat.completion_tokens", e.completion_tokens as f64),
                ("chat.total_tokens", e.total_tokens as f64),
                ("chat.cost_micros", e.cost_micros as f64),
            ]),
            e.time_to_first_token_ms.map(|t| t as f64),
        ),
        EventPayload::ChatCompletionFailed(e) => (
            &e.call,
            e.call.attempts.last().map(|a| a.provider.clone()),
            BTreeMap::from([
                ("chat.errors", 1.0),
                (
                    "chat.quota_refusals",
                    if e.error_code == "insufficient_quota" {
                        1.0
                    } else {
                        0.0
                    },
                ),
                ("chat.prompt_tokens", 0.0),
                ("chat.completion_tokens", 0.0),
                ("chat.total_tokens", 0.0),
                ("chat.cost_micros", 0.0),
            ]),
            None,
        ),
        _ => unreachable!("only chat events"),
    };
    counters.insert("chat.requests", 1.0);
    counters.insert(
        "chat.failovers",
        call.attempts.len().saturating_sub(1) as f64,
    );
    let id = |u: Option<uuid::Uuid>| u.map(|u| u.to_string());
    Call {
        at: *event.occurred_at,
        dims: BTreeMap::from([
            ("model", Some(call.model.clone())),
            ("provider", provider),
            ("api_key", id(call.api_key_id)),
            ("team", id(call.team_id)),
            ("user", id(call.user_id)),
        ]),
        counters,
        latency_ms: call.latency_ms as f64,
        ttft_ms: ttft,
    }
}

fn bucket(at: DateTime<Utc>, step: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp() - at.timestamp().rem_euclid(step), 0).expect("time")
}

type Group = Vec<Option<String>>;
type Expected = BTreeMap<Group, BTreeMap<DateTime<Utc>, f64>>;

/// The metric per group and bucket, summed (or sketched) from the events.
fn expected(calls: &[Call], metric: &str, step: i64, group_by: &[&'static str]) -> Expected {
    let mut sums: BTreeMap<Group, BTreeMap<DateTime<Utc>, (f64, f64)>> = BTreeMap::new();
    let mut sketches: BTreeMap<Group, BTreeMap<DateTime<Utc>, Sketch>> = BTreeMap::new();
    for call in calls {
        let group: Vec<Option<String>> = group_by.iter().map(|d| call.dims[d].clone()).collect();
        let at = bucket(call.at, step);
        if let Some((column, _)) = quantile_of(metric) {
            let value = if column == "latency" {
                Some(call.latency_ms)
            } else {
                call.ttft_ms
            };
            if let Some(value) = value {
                sketches
                    .entry(group)
                    .or_default()
                    .entry(at)
                    .or_default()
                    .add(value);
            }
            continue;
        }
        let entry = sums
            .entry(group)
            .or_default()
            .entry(at)
            .or_insert((0.0, 0.0));
        if metric == "chat.error_rate" {
            entry.0 += call.counters["chat.errors"];
            entry.1 += 1.0;
        } else {
            entry.0 += call.counters[metric];
        }
    }
    if let Some((_, q)) = quantile_of(metric) {
        return sketches
            .into_iter()
            .map(|(g, b)| {
                let values = b
                    .into_iter()
                    .map(|(at, s)| (at, s.quantile(q).expect("values")))
                    .collect();
                (g, values)
            })
            .collect();
    }
    sums.into_iter()
        .map(|(g, b)| {
            let values = b
                .into_iter()
                .map(|(at, (n, d))| {
                    (
                        at,
                        if metric == "chat.error_rate" {
                            n / d
                        } else {
                            n
                        },
                    )
                })
                .collect();
            (g, values)
        })
        .collect()
}

fn quantile_of(metric: &str) -> Option<(&'static str, f64)> {
    let (column, q) = metric.strip_prefix("chat.")?.split_once("_ms.p")?;
    let column = match column {
        "latency" => "latency",
        "ttft" => "ttft",
        _ => return None,
    };
    Some((column, q.parse::<f64>().ok()? / 100.0))
}

/// The values as a client reads them from JSON: serde_json's default float parsing may be one
/// unit in the last place off, so the expectation goes through the same writing and reading.
fn as_on_the_wire(values: Expected) -> Expected {
    let wire = |v: f64| -> f64 {
        serde_json::from_str::<Value>(&serde_json::to_string(&v).expect("write"))
            .ok()
            .and_then(|v| v.as_f64())
            .expect("read")
    };
    values
        .into_iter()
        .map(|(g, points)| (g, points.into_iter().map(|(t, v)| (t, wire(v))).collect()))
        .collect()
}

/// The API's answer as the same map.
fn answered(body: &Value, group_by: &[&'static str]) -> Expected {
    let mut out = Expected::new();
    for series in body["series"].as_array().expect("series") {
        let group: Vec<Option<String>> = group_by
            .iter()
            .map(|d| series["group"][*d].as_str().map(str::to_owned))
            .collect();
        let points: BTreeMap<DateTime<Utc>, f64> = series["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| {
                (
                    p["t"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .expect("t")
                        .with_timezone(&Utc),
                    p["value"].as_f64().expect("value"),
                )
            })
            .collect();
        if !points.is_empty() {
            out.insert(group, points);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_series_equal_the_chat_events_for_every_grouping_and_step_and_survive_a_rebuild() {
    let m = monitoring_env("pro").await;
    let admin = &m.admin;
    let org = &m.tenant.org_id;
    let chat_only = ["chat:write".to_string(), "models:read".to_string()];
    // Three callers: the owner; a developer in a team; a key of no user.
    let owner =
        admin.with_token(&admin_key(admin, org, Some(&m.tenant.owner_id), &chat_only).await);
    let (dev_id, _) = m.tenant.member_with_role(admin, "developer").await;
    let team = admin
        .post("/api/v1/teams", &json!({"org_id": org, "name": "Search"}))
        .await;
    assert_eq!(team.status, 201, "{}", team.body);
    let team_id = team.body["id"].as_str().expect("team").to_string();
    let joined = admin
        .post(
            &format!("/api/v1/teams/{team_id}/members"),
            &json!({"user_id": dev_id}),
        )
        .await;
    assert!(joined.status < 300, "{}", joined.body);
    let dev_key = admin
        .post(
            "/api/v1/api-keys",
            &json!({"org_id": org, "user_id": dev_id, "team_id": team_id, "name": "dev", "permissions": chat_only}),
        )
        .await;
    assert_eq!(dev_key.status, 201, "{}", dev_key.body);
    let dev = admin.with_token(dev_key.body["key"].as_str().expect("key"));
    let service = admin.with_token(&admin_key(admin, org, None, &chat_only).await);

    let mut calls = 0;
    let mut statuses = Vec::new();
    for round in 0..2 {
        // Answered, whole and streamed (a time to first token).
        for stream in [false, true, false] {
            statuses.push(chat(&owner, "gpt-4o", stream).await);
        }
        // The only deployment fails: 502, an error.
        m.primary.push(Behavior::Status(500));
        statuses.push(chat(&owner, "gpt-4o", false).await);
        // The primary deployment fails, the secondary answers: a failover.
        m.primary.push(Behavior::Status(503));
        statuses.push(chat(&dev, "failover-model", round == 1).await);
        statuses.push(chat(&dev, "failover-model", false).await);
        statuses.push(chat(&service, "gpt-4o", true).await);
        calls += 7;
    }
    // More than the Pro plan's month: refused by the quota, never sent upstream.
    let refused = service
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": hello(), "max_tokens": 300000, "n": 4}),
        )
        .await;
    assert_eq!(
        refused.assert_client_error(429)["code"],
        "insufficient_quota"
    );
    calls += 1;
    assert_eq!(
        statuses.iter().filter(|s| **s != 200).count(),
        2,
        "{statuses:?}"
    );

    let events = chat_events(&m.env, calls).await;
    assert_eq!(events.len(), calls);
    let calls: Vec<Call> = events.iter().map(call_of).collect();
    assert!(calls.iter().any(|c| c.counters["chat.failovers"] > 0.0));
    assert!(calls
        .iter()
        .any(|c| c.counters["chat.quota_refusals"] > 0.0));
    assert!(calls.iter().any(|c| c.ttft_ms.is_some()));
    m.env.wait_until_projected(Duration::from_secs(60)).await;

    let reader = &m.tenant.owner;
    let listed = reader.get("/api/v1/monitoring/metrics?limit=1000").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let metrics: Vec<String> = listed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect();
    for wanted in [
        "chat.requests",
        "chat.error_rate",
        "chat.latency_ms.p99",
        "chat.ttft_ms.p50",
        "chat.quota_refusals",
        "chat.failovers",
        "chat.cost_micros",
    ] {
        assert!(
            metrics.iter().any(|m| m == wanted),
            "{wanted} not in {metrics:?}"
        );
    }
    let from = (calls.iter().map(|c| c.at).min().expect("calls") - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let to = (calls.iter().map(|c| c.at).max().expect("calls") + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let groupings: [&[&'static str]; 7] = [
        &[],
        &["model"],
        &["provider"],
        &["api_key"],
        &["team"],
        &["user"],
        &["model", "provider", "api_key", "team", "user"],
    ];
    let mut compared = 0;
    for metric in &metrics {
        for (step, seconds) in [("1m", 60), ("1h", 3_600), ("1d", 86_400)] {
            for group_by in groupings {
                let reply = reader
                    .get(&format!(
                        "/api/v1/monitoring/metrics/{metric}/data?from={from}&to={to}&step={step}&group_by={}",
                        group_by.join(",")
                    ))
                    .await;
                assert_eq!(
                    reply.status, 200,
                    "{metric} {step} {group_by:?}: {}",
                    reply.body
                );
                assert_eq!(
                    answered(&reply.body, group_by),
                    as_on_the_wire(expected(&calls, metric, seconds, group_by)),
                    "{metric} at {step} by {group_by:?}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, metrics.len() * 3 * groupings.len());

    // A filter keeps only the matching calls.
    let filtered = reader
        .get(&format!(
            "/api/v1/monitoring/metrics/chat.requests/data?from={from}&to={to}&step=1d&filter=model:failover-model,team:{team_id}"
        ))
        .await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    let total: f64 = filtered.body["series"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["value"].as_f64().expect("value"))
        .sum();
    assert_eq!(total, 4.0);

    // The ungrouped series above came from the rollup: each of its rows is the sum of the
    // bucket's detailed rows, sketches merged byte for byte.
    let db = m.env.db().await;
    let rollup_rows = rollup_equals_the_detailed_rows(&db).await;
    let buckets: usize = [60, 3_600, 86_400]
        .iter()
        .map(|step| {
            calls
                .iter()
                .map(|c| bucket(c.at, *step))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .sum();
    assert_eq!(
        rollup_rows, buckets,
        "a rollup row per minute, hour and day"
    );
    // And it is the rollup an unfiltered, ungrouped series reads: a change to it (undone
    // below) shows there and nowhere else.
    let busiest = calls
        .iter()
        .map(|c| bucket(c.at, 86_400))
        .max()
        .expect("calls");
    let day = |body: &Value| -> f64 {
        body["series"]
            .as_array()
            .expect("series")
            .iter()
            .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
            .filter(|p| {
                p["t"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    == Some(busiest.into())
            })
            .map(|p| p["value"].as_f64().expect("value"))
            .sum()
    };
    let requests = |group_by: &str| {
        format!("/api/v1/monitoring/metrics/chat.requests/data?from={from}&to={to}&step=1d&group_by={group_by}")
    };
    let (before, by_model) = (
        day(&reader.get(&requests("")).await.body),
        day(&reader.get(&requests("model")).await.body),
    );
    assert_eq!(before, by_model);
    let shift = |delta: i64| {
        let db = &db;
        let org: uuid::Uuid = org.parse().expect("org");
        async move {
            db.execute(
                "UPDATE read.chat_metrics_rollup SET requests = requests + $1 WHERE org_id = $2 AND step = 86400 AND bucket = $3",
                &[&delta, &org, &busiest],
            )
            .await
            .expect("shift")
        }
    };
    assert_eq!(shift(1_000).await, 1);
    assert_eq!(day(&reader.get(&requests("")).await.body), before + 1_000.0);
    assert_eq!(day(&reader.get(&requests("model")).await.body), by_model);
    assert_eq!(shift(-1_000).await, 1);

    // Each rollup row's percentile columns (which an ungrouped percentile series reads from the
    // key alone) are what its merged sketches give.
    let percentiles = "latency_p50, latency_p95, latency_p99, ttft_p50, ttft_p95, ttft_p99";
    for row in db
        .query(
            &format!(
                "SELECT latency_ms, ttft_ms, ARRAY[{percentiles}] FROM read.chat_metrics_rollup"
            ),
            &[],
        )
        .await
        .expect("percentile columns")
    {
        let latency = Sketch::decode(row.get::<_, &[u8]>(0)).expect("latency");
        let ttft = row
            .get::<_, Option<&[u8]>>(1)
            .map(|b| Sketch::decode(b).expect("ttft"));
        let mut wanted: Vec<Option<f64>> = [0.5, 0.95, 0.99]
            .iter()
            .map(|q| latency.quantile(*q))
            .collect();
        wanted.extend(
            [0.5, 0.95, 0.99]
                .iter()
                .map(|q| ttft.as_ref().and_then(|s| s.quantile(*q))),
        );
        assert!(wanted[0].is_some());
        assert_eq!(row.get::<_, Vec<Option<f64>>>(2), wanted);
    }
    // A row written before those columns existed (them NULL) is answered from its sketches:
    // the same series.
    let percentile_series = || async {
        let mut answers = Vec::new();
        for metric in [
            "chat.latency_ms.p50",
            "chat.latency_ms.p95",
            "chat.latency_ms.p99",
            "chat.ttft_ms.p50",
            "chat.ttft_ms.p95",
            "chat.ttft_ms.p99",
        ] {
            for step in ["1m", "1d"] {
                let reply = reader
                    .get(&format!(
                        "/api/v1/monitoring/metrics/{metric}/data?from={from}&to={to}&step={step}"
                    ))
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                answers.push(reply.body["series"].clone());
            }
        }
        answers
    };
    let from_columns = percentile_series().await;
    assert!(from_columns
        .iter()
        .all(|s| s[0]["points"].as_array().is_some_and(|p| !p.is_empty())));
    db.batch_execute(&format!(
        "CREATE TEMP TABLE saved_percentiles AS SELECT org_id, step, bucket, {percentiles} FROM read.chat_metrics_rollup;
         UPDATE read.chat_metrics_rollup SET latency_p50 = NULL, latency_p95 = NULL, latency_p99 = NULL,
             ttft_p50 = NULL, ttft_p95 = NULL, ttft_p99 = NULL"
    ))
    .await
    .expect("percentiles cleared");
    assert_eq!(percentile_series().await, from_columns);
    db.batch_execute(
        "UPDATE read.chat_metrics_rollup r SET latency_p50 = s.latency_p50, latency_p95 = s.latency_p95,
             latency_p99 = s.latency_p99, ttft_p50 = s.ttft_p50, ttft_p95 = s.ttft_p95, ttft_p99 = s.ttft_p99
         FROM saved_percentiles s WHERE (r.org_id, r.step, r.bucket) = (s.org_id, s.step, s.bucket)",
    )
    .await
    .expect("percentiles restored");

    // `aihub replay` of the metrics projection gives the same rows, sketches byte for byte.
    let order = "org_id, step, bucket, model, provider NULLS FIRST, api_key_id NULLS FIRST, team_id NULLS FIRST, user_id NULLS FIRST";
    let live = m.env.dump("read.chat_metrics", order).await;
    assert!(live.len() > 3, "{live:?}");
    let rollup_order = "org_id, step, bucket";
    let live_rollup = m.env.dump("read.chat_metrics_rollup", rollup_order).await;
    assert_eq!(live_rollup.len(), rollup_rows);
    m.app.stop().await;
    let output = m
        .env
        .aihub_command(e2e::aihub_binary())
        .args(["replay", "--projection", "metrics"])
        .output()
        .await
        .expect("aihub replay runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(m.env.dump("read.chat_metrics", order).await, live);
    assert_eq!(
        m.env.dump("read.chat_metrics_rollup", rollup_order).await,
        live_rollup
    );
    assert_eq!(rollup_equals_the_detailed_rows(&db).await, rollup_rows);
}

/// Asserts that every row of `read.chat_metrics_rollup` holds the sums of its bucket's rows in
/// `read.chat_metrics` and the merge of their sketches (and that no bucket lacks one); returns
/// how many rollup rows there are.
async fn rollup_equals_the_detailed_rows(db: &tokio_postgres::Client) -> usize {
    type Bucket = (uuid::Uuid, i32, DateTime<Utc>);
    type Sums = (Vec<i64>, Sketch, Option<Sketch>);
    let counters = "requests, errors, prompt_tokens, completion_tokens, total_tokens, cost_micros, quota_refusals, failovers";
    let read = |table: &'static str| {
        let sql = format!(
            "SELECT org_id, step, bucket, latency_ms, ttft_ms, ARRAY[{counters}] FROM {table}"
        );
        async move {
            let mut sums: BTreeMap<Bucket, Sums> = BTreeMap::new();
            for row in db.query(&sql, &[]).await.expect(table) {
                let entry = sums
                    .entry((row.get(0), row.get(1), row.get(2)))
                    .or_insert_with(|| (vec![0; 8], Sketch::new(), None));
                for (sum, value) in entry.0.iter_mut().zip(row.get::<_, Vec<i64>>(5)) {
                    *sum += value;
                }
                entry
                    .1
                    .merge(&Sketch::decode(row.get::<_, &[u8]>(3)).expect("latency"));
                if let Some(ttft) = row.get::<_, Option<&[u8]>>(4) {
                    entry
                        .2
                        .get_or_insert_with(Sketch::new)
                        .merge(&Sketch::decode(ttft).expect("ttft"));
                }
            }
            sums.into_iter()
                .map(|(k, (c, l, t))| (k, (c, l.encode(), t.map(|t| t.encode()))))
                .collect::<BTreeMap<_, _>>()
        }
    };
    let rollup = read("read.chat_metrics_rollup").await;
    let detailed = read("read.chat_metrics").await;
    assert!(!rollup.is_empty());
    assert_eq!(
        rollup.keys().collect::<Vec<_>>(),
        detailed.keys().collect::<Vec<_>>()
    );
    for (bucket, sums) in &detailed {
        assert_eq!(&rollup[bucket], sums, "rollup of {bucket:?}");
    }
    rollup.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_refuses_bad_input_other_tenants_weak_keys_and_plans_without_it() {
    let m = monitoring_env("developer").await;
    let admin = &m.admin;
    let a = &m.tenant;
    let a_chat = admin
        .with_token(&admin_key(admin, &a.org_id, Some(&a.owner_id), &["chat:write".into()]).await);
    for _ in 0..3 {
        assert_eq!(chat(&a_chat, "gpt-4o", false).await, 200);
    }
    let data = "/api/v1/monitoring/metrics/chat.requests/data";
    let sum = |body: &Value| -> f64 {
        body["series"]
            .as_array()
            .expect("series")
            .iter()
            .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
            .map(|p| p["value"].as_f64().expect("value"))
            .sum()
    };
    wait_for(Duration::from_secs(60), "three calls counted", || async {
        sum(&a.owner.get(data).await.body) == 3.0
    })
    .await;

    // Another organization on the Developer plan sees none of them, and cannot name A.
    let b = Tenant::create_on(admin, "other", "developer").await;
    let own = b.owner.get(data).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(sum(&own.body), 0.0);
    b.owner
        .get(&format!("{data}?org_id={}", a.org_id))
        .await
        .assert_client_error(404);
    // The platform admin names the organization, or is told to.
    assert_eq!(
        sum(&admin.get(&format!("{data}?org_id={}", a.org_id)).await.body),
        3.0
    );
    assert_eq!(
        admin.get(data).await.assert_client_error(400)["code"],
        "org_id_required"
    );

    // Bad input: 4xx in the OpenAI shape, naming the parameter.
    let bad = [
        ("/api/v1/monitoring/metrics/chat.nothing/data", 404, None),
        (
            "/api/v1/monitoring/metrics/0195e0d4-0000-7000-8000-000000000000/data",
            404,
            None,
        ),
        (&format!("{data}?step=5m") as &str, 400, Some("step")),
        (&format!("{data}?group_by=colour"), 400, Some("group_by")),
        (
            &format!("{data}?group_by=model,model"),
            400,
            Some("group_by"),
        ),
        (&format!("{data}?filter=model"), 400, Some("filter")),
        (
            &format!("{data}?filter=api_key:not-a-uuid"),
            400,
            Some("filter"),
        ),
        (&format!("{data}?filter=planet:mars"), 400, Some("filter")),
        (&format!("{data}?from=yesterday"), 400, Some("from")),
        (
            &format!("{data}?from=2026-11-02&to=2026-11-01"),
            400,
            Some("to"),
        ),
        (
            &format!("{data}?from=2026-01-01&to=2026-11-01&step=1m"),
            400,
            Some("from"),
        ),
        ("/api/v1/monitoring/metrics?limit=0", 400, Some("limit")),
        (
            "/api/v1/monitoring/metrics?cursor=bm9wZQ",
            400,
            Some("cursor"),
        ),
    ];
    for (path, status, param) in bad {
        let reply = a.owner.get(path).await;
        let error = reply.assert_client_error(status);
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{path}: {}", reply.body);
        }
    }

    // A key without monitoring:read, even the owner's, is refused.
    for path in ["/api/v1/monitoring/metrics", data] {
        let reply = a_chat.get(path).await;
        assert_eq!(reply.assert_client_error(403)["param"], "monitoring:read");
    }
    // A viewer reads monitoring.
    let (_, viewer) = a.member_with_role(admin, "viewer").await;
    assert_eq!(sum(&admin.with_token(&viewer).get(data).await.body), 3.0);

    // The Free plan has no monitoring.
    let free = Tenant::create(admin, "free").await;
    for path in ["/api/v1/monitoring/metrics", data] {
        let reply = free.owner.get(path).await;
        assert_eq!(
            reply.assert_client_error(403)["code"],
            "plan_feature_required",
            "{path}"
        );
    }
    m.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_list_pages_with_a_cursor() {
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "pages", "developer").await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/monitoring/metrics?limit=4".to_string();
    loop {
        let page = tenant.owner.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let data = page.body["data"].as_array().expect("data");
        assert!(data.len() <= 4);
        seen.extend(
            data.iter()
                .map(|m| m["id"].as_str().expect("id").to_string()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/monitoring/metrics?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "in id order, each once");
    assert_eq!(seen.len(), 15);
    app.stop().await;
}
