//! Custom metrics end to end (issue 11): a meter defined after 1,000 chat events exist is
//! back-filled from the first event and then keeps counting new ones exactly, with another
//! organization's events never counted; a rebuild of the metrics projection gives identical
//! tables; pushed points round-trip and a point sent twice counts once; weak keys, other
//! organizations and plans without custom metrics are refused.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::upstream::Upstream;
use e2e::{wait_for, Api, Env, Tenant};
use events::chat::{ChatCall, ChatCompletionFailed, ChatCompletionSucceeded};
use events::{Actor, EventEnvelope, EventPayload, StreamId};
use serde_json::{json, Value};
use uuid::Uuid;

/// A chat call's event as the gateway writes it, for `org`, of `model` with `tokens` tokens.
fn chat_event(org: Uuid, model: &str, tokens: u64, failed: bool) -> EventEnvelope {
    let call = ChatCall {
        request_id: format!("req-{}", Uuid::now_v7()),
        api_key_id: None,
        team_id: None,
        user_id: None,
        model: model.into(),
        streamed: false,
        attempts: vec![],
        latency_ms: 10 + tokens,
    };
    let payload = if failed {
        EventPayload::ChatCompletionFailed(ChatCompletionFailed {
            call,
            status: 502,
            error_code: "upstream_error".into(),
        })
    } else {
        EventPayload::ChatCompletionSucceeded(ChatCompletionSucceeded {
            call,
            provider: "openrouter".into(),
            upstream_model: "openai/gpt-4o".into(),
            prompt_tokens: tokens,
            completion_tokens: 1,
            total_tokens: tokens + 1,
            cost_micros: 1,
            time_to_first_token_ms: None,
            client_disconnected: false,
            usage_estimated: false,
        })
    };
    EventEnvelope::new(
        payload,
        Some(org),
        StreamId::chat(Uuid::now_v7()),
        1,
        Actor::system(),
        "meters-test".into(),
    )
}

/// What a batch of events adds up to, computed here from the events' own fields.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    succeeded: f64,
    tokens_by_model: BTreeMap<String, f64>,
}

impl Tally {
    fn add(&mut self, events: &[EventEnvelope], org: Uuid) {
        for e in events {
            if let (Some(o), EventPayload::ChatCompletionSucceeded(s)) = (e.org_id, &e.payload) {
                if o == org {
                    self.succeeded += 1.0;
                    *self
                        .tokens_by_model
                        .entry(s.call.model.clone())
                        .or_default() += s.total_tokens as f64;
                }
            }
        }
    }
}

async fn append(env: &Env, events: &[EventEnvelope]) {
    let pool = env.config.database.pool(2).expect("pool");
    let journal = command_api::Journal::new(pool);
    for chunk in events.chunks(250) {
        journal.append(chunk, &[]).await.expect("append");
    }
}

fn batch(org: Uuid, n: usize, seed: u64) -> Vec<EventEnvelope> {
    (0..n)
        .map(|i| {
            let model = if i % 3 == 0 { "m-a" } else { "m-b" };
            chat_event(org, model, seed + i as u64 % 7, i % 10 == 9)
        })
        .collect()
}

const WIDE: &str = "from=2020-01-01&to=2030-01-01&step=1d";

/// A metric's series as group → total over every bucket.
async fn totals(api: &Api, id: &str, query: &str) -> BTreeMap<String, f64> {
    let reply = api
        .get(&format!("/api/v1/monitoring/metrics/{id}/data?{query}"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut out = BTreeMap::new();
    for series in reply.body["series"].as_array().expect("series") {
        let group = series["group"].to_string();
        let sum: f64 = series["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["value"].as_f64().expect("value"))
            .sum();
        out.insert(group, sum);
    }
    out
}

async fn total(api: &Api, id: &str) -> f64 {
    totals(api, id, WIDE).await.values().sum()
}

async fn define(api: &Api, body: Value) -> Value {
    let reply = api.post("/api/v1/monitoring/metrics", &body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_is_back_filled_from_the_first_event_then_counts_new_ones_exactly() {
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    env.route_one_model_to(&upstream, 1_000_000, 1_000_000);
    let (app, admin) = env.app().await;
    let a = Tenant::create_on(&admin, "meters", "pro").await;
    let b = Tenant::create_on(&admin, "intruder", "pro").await;
    let a_org: Uuid = a.org_id.parse().expect("org");
    let b_org: Uuid = b.org_id.parse().expect("org");

    // 1,000 chat events of A before any meter, and B's events interleaved with them.
    let before = batch(a_org, 1_000, 20);
    let theirs = batch(b_org, 300, 1_000);
    let mut expected = Tally::default();
    expected.add(&before, a_org);
    let mut mixed = Vec::new();
    for (i, e) in before.iter().enumerate() {
        mixed.push(e.clone());
        if i % 3 == 0 {
            if let Some(t) = theirs.get(i / 3) {
                mixed.push(t.clone());
            }
        }
    }
    append(&env, &mixed).await;
    env.wait_until_projected(Duration::from_secs(120)).await;

    let owner = &a.owner;
    let count = define(
        owner,
        json!({"name": "answered calls", "kind": "meter", "event_type": "chat.completion.succeeded",
               "aggregation": "count"}),
    )
    .await;
    assert_eq!(count["kind"], "meter");
    assert_eq!(count["backfill"]["status"], "pending");
    let tokens = define(
        owner,
        json!({"name": "tokens by model", "kind": "meter", "event_type": "chat.completion.succeeded",
               "aggregation": "sum", "value": "$.total_tokens", "group_by": ["model"],
               "filter": {"provider": "openrouter"}, "unit": "tokens"}),
    )
    .await;
    let count_id = count["id"].as_str().expect("id").to_string();
    let tokens_id = tokens["id"].as_str().expect("id").to_string();

    // New events while the back-fills run: the live projection counts them, the back-fill not.
    let after = batch(a_org, 200, 40);
    expected.add(&after, a_org);
    append(&env, &after).await;
    append(&env, &batch(b_org, 100, 2_000)).await;

    wait_for(Duration::from_secs(120), "both back-fills done", || async {
        let mut done = true;
        for id in [&count_id, &tokens_id] {
            let m = owner.get(&format!("/api/v1/monitoring/metrics/{id}")).await;
            done &= m.body["backfill"]["status"] == "done";
        }
        done
    })
    .await;
    env.wait_until_projected(Duration::from_secs(60)).await;
    let shown = owner
        .get(&format!("/api/v1/monitoring/metrics/{count_id}"))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    // The back-fill counted exactly the 900 answered calls of A before the definition.
    let before_succeeded = before
        .iter()
        .filter(|e| e.event_type() == "chat.completion.succeeded")
        .count();
    assert_eq!(before_succeeded, 900);
    assert_eq!(shown.body["backfill"]["events_done"], 900, "{}", shown.body);

    assert_eq!(total(owner, &count_id).await, expected.succeeded);
    let by_model = totals(owner, &tokens_id, &format!("{WIDE}&group_by=model")).await;
    let wanted: BTreeMap<String, f64> = expected
        .tokens_by_model
        .iter()
        .map(|(m, t)| (json!({"model": m}).to_string(), *t))
        .collect();
    assert_eq!(by_model, wanted);
    let only_a = totals(owner, &tokens_id, &format!("{WIDE}&filter=model:m-a")).await;
    assert_eq!(
        only_a.values().sum::<f64>(),
        expected.tokens_by_model["m-a"]
    );

    // Real calls through the gateway count live too.
    for _ in 0..3 {
        let reply = owner
            .post(
                "/api/v1/chat/completions",
                &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    wait_for(Duration::from_secs(60), "the calls counted", || async {
        total(owner, &count_id).await == expected.succeeded + 3.0
    })
    .await;

    // Listed beside the built-in metrics, with the meter's definition.
    let listed = owner.get("/api/v1/monitoring/metrics?limit=1000").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&count_id.as_str()) && ids.contains(&"chat.requests"),
        "{ids:?}"
    );

    // The other organization: sees none of A's metrics, and its own meter counts only its own.
    let theirs_meter = define(
        &b.owner,
        json!({"name": "mine", "kind": "meter", "event_type": "chat.completion.succeeded", "aggregation": "count"}),
    )
    .await;
    for path in [
        format!("/api/v1/monitoring/metrics/{count_id}"),
        format!("/api/v1/monitoring/metrics/{count_id}/data?{WIDE}"),
    ] {
        let reply = b.owner.get(&path).await;
        assert_eq!(
            reply.assert_client_error(404)["type"],
            "invalid_request_error"
        );
    }
    let deleted = b
        .owner
        .delete(&format!("/api/v1/monitoring/metrics/{count_id}"))
        .await;
    deleted.assert_client_error(404);
    let b_listed = b.owner.get("/api/v1/monitoring/metrics?limit=1000").await;
    assert!(!b_listed.body.to_string().contains(&count_id));
    let theirs_id = theirs_meter["id"].as_str().expect("id").to_string();
    wait_for(Duration::from_secs(120), "B's back-fill", || async {
        let m = b
            .owner
            .get(&format!("/api/v1/monitoring/metrics/{theirs_id}"))
            .await;
        m.body["backfill"]["status"] == "done"
    })
    .await;
    let b_total = total(&b.owner, &theirs_id).await;
    // 300 + 100 of B's events, a tenth of them failed: 360 answered, none of A's.
    assert_eq!(b_total, 360.0);

    // `aihub replay` of the metrics projection: identical tables, back-fills included.
    let tables = [
        ("read.custom_metrics", "metric_id"),
        (
            "read.custom_metric_values",
            "metric_id, step, bucket, groups",
        ),
        (
            "read.custom_metric_distinct",
            "metric_id, step, bucket, groups, value",
        ),
        ("read.meter_backfill_applied", "metric_id, event_id"),
    ];
    let mut live = Vec::new();
    for (table, order) in tables {
        live.push(env.dump(table, order).await);
    }
    assert!(live[1].len() > 6, "{:?}", live[1]);
    app.stop().await;
    let output = env
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
    for ((table, order), before) in tables.iter().zip(live) {
        assert_eq!(env.dump(table, order).await, before, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_points_round_trip_once_and_weak_keys_other_orgs_and_plans_are_refused() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let a = Tenant::create_on(&admin, "pusher", "enterprise").await;
    let b = Tenant::create_on(&admin, "neighbour", "pro").await;
    let owner = &a.owner;
    let gauge = define(
        owner,
        json!({"name": "queue depth", "kind": "gauge", "unit": "jobs"}),
    )
    .await;
    assert_eq!(gauge["aggregation"], "avg");
    let counter = define(owner, json!({"name": "jobs done", "kind": "counter"})).await;
    let counter_id = counter["id"].as_str().expect("id").to_string();
    let gauge_id = gauge["id"].as_str().expect("id").to_string();
    let data = |id: &str| format!("/api/v1/monitoring/metrics/{id}/data");

    let first = owner
        .post(
            &data(&counter_id),
            &json!({"points": [
                {"id": "p-1", "t": "2026-11-20T10:00:05Z", "value": 2.5, "labels": {"host": "a"}},
                {"id": "p-2", "t": "2026-11-20T10:00:40Z", "value": 4, "labels": {"host": "b"}},
                {"id": "p-1", "t": "2026-11-20T10:00:05Z", "value": 2.5, "labels": {"host": "a"}}
            ]}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        (
            first.body["recorded"].as_u64(),
            first.body["duplicates"].as_u64()
        ),
        (Some(2), Some(1))
    );
    // A retry of the same request, and one more point.
    let again = owner
        .post(
            &data(&counter_id),
            &json!({"points": [
                {"id": "p-2", "t": "2026-11-20T10:00:40Z", "value": 4, "labels": {"host": "b"}},
                {"id": "p-3", "t": "2026-11-20T10:01:10Z", "value": 0.25, "labels": {"host": "a"}}
            ]}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        (
            again.body["recorded"].as_u64(),
            again.body["duplicates"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let recorded = env
        .count("SELECT count(*) FROM journal WHERE event_type = 'metric.recorded'")
        .await;
    assert_eq!(recorded, 3);

    let range = "from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z";
    let minutes = owner
        .get(&format!("{}?{range}&step=1m", data(&counter_id)))
        .await;
    assert_eq!(minutes.status, 200, "{}", minutes.body);
    let points: Vec<(String, f64)> = minutes.body["series"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["t"].as_str().expect("t")[..16].to_string(),
                p["value"].as_f64().expect("value"),
            )
        })
        .collect();
    assert_eq!(
        points,
        vec![
            ("2026-11-20T10:00".to_string(), 6.5),
            ("2026-11-20T10:01".to_string(), 0.25)
        ]
    );
    let by_host = totals(
        owner,
        &counter_id,
        &format!("{range}&step=1h&group_by=host"),
    )
    .await;
    assert_eq!(
        by_host,
        BTreeMap::from([
            (json!({"host": "a"}).to_string(), 2.75),
            (json!({"host": "b"}).to_string(), 4.0)
        ])
    );
    let host_b = totals(
        owner,
        &counter_id,
        &format!("{range}&step=1d&filter=host:b"),
    )
    .await;
    assert_eq!(host_b.values().sum::<f64>(), 4.0);
    let unknown = owner
        .get(&format!("{}?{range}&group_by=region", data(&counter_id)))
        .await;
    assert_eq!(unknown.assert_client_error(400)["param"], "group_by");

    // A gauge averages its points.
    let pushed = owner
        .post(
            &data(&gauge_id),
            &json!({"points": [
                {"id": "g1", "t": "2026-11-20T10:00:01Z", "value": 10},
                {"id": "g2", "t": "2026-11-20T10:00:02Z", "value": 20}
            ]}),
        )
        .await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    assert_eq!(total(owner, &gauge_id).await, 15.0);

    // Bad input: 4xx in the OpenAI shape, naming the field.
    for (body, param) in [
        (
            json!({"name": "x", "kind": "meter", "event_type": "chat.nope", "aggregation": "count"}),
            "event_type",
        ),
        (
            json!({"name": "x", "kind": "meter", "event_type": "chat.completion.succeeded", "aggregation": "median"}),
            "aggregation",
        ),
        (
            json!({"name": "x", "kind": "meter", "event_type": "chat.completion.succeeded", "aggregation": "sum", "value": "total tokens"}),
            "value",
        ),
        (
            json!({"name": "x", "kind": "meter", "event_type": "chat.completion.succeeded", "aggregation": "sum"}),
            "value",
        ),
        (
            json!({"name": "x", "kind": "meter", "event_type": "chat.completion.succeeded", "aggregation": "count", "group_by": ["a..b"]}),
            "group_by",
        ),
        (json!({"name": "x", "kind": "histogram"}), "kind"),
        (
            json!({"name": "x", "kind": "gauge", "event_type": "chat.completion.succeeded"}),
            "event_type",
        ),
        (json!({"name": "", "kind": "gauge"}), "name"),
    ] {
        let reply = owner.post("/api/v1/monitoring/metrics", &body).await;
        let error = reply.assert_client_error(400);
        assert_eq!(error["param"], param, "{body}: {error}");
        assert_eq!(error["type"], "invalid_request_error");
    }
    for points in [
        json!([]),
        json!([{"id": "bad id!", "t": "2026-11-20T10:00:00Z", "value": 1}]),
        json!([{"id": "p", "t": "yesterday", "value": 1}]),
    ] {
        let reply = owner
            .post(&data(&counter_id), &json!({"points": points}))
            .await;
        reply.assert_client_error(400);
    }

    // Weak roles cannot define metrics or push points; they may read them.
    for role in ["viewer", "developer"] {
        let (_, key) = a.member_with_role(&admin, role).await;
        let weak = admin.with_token(&key);
        let refused = weak
            .post(
                "/api/v1/monitoring/metrics",
                &json!({"name": "x", "kind": "gauge"}),
            )
            .await;
        assert_eq!(
            refused.assert_client_error(403)["code"],
            "missing_permission",
            "{role}"
        );
        let push = weak
            .post(
                &data(&counter_id),
                &json!({"points": [{"id": "w", "t": "2026-11-20T10:00:00Z", "value": 100}]}),
            )
            .await;
        push.assert_client_error(403);
        let delete = weak
            .delete(&format!("/api/v1/monitoring/metrics/{counter_id}"))
            .await;
        delete.assert_client_error(403);
        let read = weak
            .get(&format!("/api/v1/monitoring/metrics/{counter_id}"))
            .await;
        assert_eq!(read.status, 200, "{role}: {}", read.body);
    }

    // Another organization: 404 for every one of A's metrics, and its pushes count nowhere.
    let push = b
        .owner
        .post(
            &data(&counter_id),
            &json!({"points": [{"id": "b1", "t": "2026-11-20T10:00:00Z", "value": 100}]}),
        )
        .await;
    push.assert_client_error(404);
    b.owner
        .get(&format!("{}?{range}", data(&counter_id)))
        .await
        .assert_client_error(404);
    assert_eq!(total(owner, &counter_id).await, 6.75);

    // Free and Developer plans have no custom metrics.
    for plan in ["free", "developer"] {
        let t = match plan {
            "free" => Tenant::create(&admin, plan).await,
            _ => Tenant::create_on(&admin, plan, plan).await,
        };
        let refused = t
            .owner
            .post(
                "/api/v1/monitoring/metrics",
                &json!({"name": "x", "kind": "gauge"}),
            )
            .await;
        assert_eq!(
            refused.assert_client_error(403)["code"],
            "plan_feature_required",
            "{plan}"
        );
    }

    // Deleted: gone, its values too.
    let gone = owner
        .delete(&format!("/api/v1/monitoring/metrics/{counter_id}"))
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    owner
        .get(&format!("/api/v1/monitoring/metrics/{counter_id}"))
        .await
        .assert_client_error(404);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM read.custom_metric_values WHERE metric_id = '{counter_id}'"
        ))
        .await,
        0
    );
    owner
        .post(
            &data(&counter_id),
            &json!({"points": [{"id": "late", "t": "2026-11-20T10:00:00Z", "value": 1}]}),
        )
        .await
        .assert_client_error(404);
}
