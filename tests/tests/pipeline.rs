//! The event pipeline's guarantees: duplicates are harmless, restarts lose and repeat nothing,
//! replay rebuilds the same read models, and a broker outage delays events without losing them.

use std::time::Duration;

use aihub::Roles;
use e2e::upstream::{Behavior, Upstream};
use e2e::{broker, unique_slug, wait_for, Api, Env, Reply, Tenant};
use serde_json::{json, Value};

/// Every read model: the organizations and the audit log, then the access tables.
async fn read_models(env: &Env) -> (Vec<Value>, Vec<Value>, Vec<Vec<Value>>) {
    let mut access = Vec::new();
    for (table, order) in [
        ("read.users", "id"),
        ("read.role_assignments", "user_id, role, team_id"),
        ("read.teams", "id"),
        ("read.team_members", "team_id, user_id"),
        ("read.api_keys", "id"),
        ("read.subscriptions", "id"),
    ] {
        access.push(env.dump(table, order).await);
    }
    (
        env.dump("read.organizations", "id").await,
        env.dump("read.audit_log", "event_id").await,
        access,
    )
}

/// Creates, renames and deletes a few organizations; returns their ids.
async fn some_history(api: &Api, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = api
            .create_org(&unique_slug(&format!("hist{i}")))
            .await
            .to_string();
        let path = format!("/api/v1/organizations/{id}");
        assert_eq!(
            api.put(&path, &json!({"name": format!("Renamed {i}")}))
                .await
                .status,
            200
        );
        if i % 3 == 1 {
            let team = api
                .post("/api/v1/teams", &json!({"org_id": id, "name": "Core"}))
                .await;
            assert_eq!(team.status, 201, "{}", team.body);
            let team_id = team.body["id"].as_str().expect("team").to_string();
            let member = api
                .post(
                    &format!("/api/v1/teams/{team_id}/members"),
                    &json!({"email": format!("m{i}@x.example")}),
                )
                .await;
            assert_eq!(member.status, 200, "{}", member.body);
            let user_id = member.body["members"][0]
                .as_str()
                .expect("member")
                .to_string();
            let role = api
                .post(
                    &format!("/api/v1/users/{user_id}/roles"),
                    &json!({"role": "developer", "team_id": team_id}),
                )
                .await;
            assert_eq!(role.status, 200, "{}", role.body);
            let key = api.post("/api/v1/api-keys", &json!({"org_id": id, "name": "k", "permissions": ["teams:read"], "team_id": team_id})).await;
            assert_eq!(key.status, 201, "{}", key.body);
        }
        if i % 3 == 2 {
            assert_eq!(api.delete(&path).await.status, 204);
        }
        ids.push(id);
    }
    ids
}

/// Forgets that anything of the `journal` rows was published, so the relay sends every row
/// again; returns once every projection has consumed the copies (its offsets cover the topic,
/// twice the journal).
async fn republish_everything(env: &Env, journal: i64) {
    env.db()
        .await
        .execute(
            "INSERT INTO journal_outbox SELECT global_position FROM journal ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .expect("reset");
    let target = journal * 2 * projectors::all().len() as i64;
    wait_for(Duration::from_secs(60), "duplicates consumed", || async {
        env.count("SELECT count(*) FROM journal_outbox").await == 0
            && env
                .count("SELECT COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets")
                .await
                == target
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishing_the_same_rows_twice_leaves_read_models_unchanged() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    some_history(&api, 6).await;
    env.wait_until_projected(Duration::from_secs(60)).await;
    let before = read_models(&env).await;
    let journal = env.count("SELECT count(*) FROM journal").await;
    republish_everything(&env, journal).await;

    assert_eq!(
        read_models(&env).await,
        before,
        "duplicates changed a read model"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM read.audit_log").await,
        journal
    );
    app.stop().await;
}

/// Every read model a chat call reaches, in a stable order.
async fn chat_read_models(env: &Env) -> Vec<Vec<Value>> {
    let mut models = Vec::new();
    for (table, order) in [
        ("read.chat_calls", "event_id"),
        ("read.audit_log", "event_id"),
        ("read.api_keys", "id"),
        (
            "read.chat_metrics",
            "org_id, step, bucket, model, provider, api_key_id, team_id, user_id",
        ),
        ("read.chat_metrics_rollup", "org_id, step, bucket"),
    ] {
        models.push(env.dump(table, order).await);
    }
    models
}

/// Three projections keep no mark of a chat call (their rows are idempotent by event id, to
/// spare the database a write per call each); the metrics' counters do. Either way, the calls
/// published a second time change nothing, and every call is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_calls_published_twice_leave_every_read_model_unchanged() {
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    env.route_one_model_to(&upstream, 1_000_000, 2_000_000);
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "dupchat", "pro").await;
    upstream.push(Behavior::Status(500));
    let mut answered = Vec::new();
    for i in 0..6 {
        answered.push(chat(&tenant, i).await.status);
    }
    assert_eq!(
        answered,
        [502, 200, 200, 200, 200, 200],
        "one failed call, five answered"
    );
    env.wait_until_projected(Duration::from_secs(60)).await;
    env.assert_every_event_applied_once().await;
    let calls = env
        .count("SELECT count(*) FROM journal WHERE event_type LIKE 'chat.completion.%'")
        .await;
    assert_eq!(calls, 6);
    assert_eq!(
        env.count("SELECT count(*) FROM read.chat_calls").await,
        calls
    );
    let unmarked = env
        .count(
            "SELECT count(*) FROM projector_applied a JOIN journal j USING (event_id)
             WHERE j.event_type LIKE 'chat.completion.%' AND a.projection <> 'metrics'",
        )
        .await;
    assert_eq!(
        unmarked, 0,
        "tenancy, audit and usage keep no mark of a call"
    );
    let metrics_marks = env
        .count(
            "SELECT count(*) FROM projector_applied a JOIN journal j USING (event_id)
             WHERE j.event_type LIKE 'chat.completion.%' AND a.projection = 'metrics'",
        )
        .await;
    assert_eq!(
        metrics_marks, calls,
        "the metrics' counters are kept exactly once by marks"
    );
    let before = chat_read_models(&env).await;
    assert!(
        before[2].iter().any(|key| !key["last_used_at"].is_null()),
        "the calls moved their key's last use"
    );
    let journal = env.count("SELECT count(*) FROM journal").await;
    republish_everything(&env, journal).await;
    assert_eq!(
        chat_read_models(&env).await,
        before,
        "the calls published twice changed a read model"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projectors_stopped_midway_and_restarted_apply_every_event_exactly_once() {
    let env = Env::new().await;
    let api_process = env
        .start(Roles {
            projectors: false,
            ..Roles::all()
        })
        .await;
    let api = env.api(&api_process);
    let projector_process = env
        .start(Roles {
            projectors: true,
            ..Roles::none()
        })
        .await;
    let early = some_history(&api, 3).await;
    projector_process.stop().await;

    // While no projector runs, commands are accepted and answered 202.
    let mut late = Vec::new();
    for i in 0..4 {
        let reply = api
            .send(
                api.request(reqwest::Method::POST, "/api/v1/organizations")
                    .header("prefer", "respond-async")
                    .json(&json!({"name": "Late", "slug": unique_slug(&format!("late{i}"))})),
            )
            .await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        late.push(reply.body["id"].as_str().expect("id").to_string());
    }
    let renamed = api
        .send(
            api.request(
                reqwest::Method::PUT,
                &format!("/api/v1/organizations/{}", early[0]),
            )
            .header("prefer", "respond-async")
            .json(&json!({"name": "While down"})),
        )
        .await;
    assert_eq!(renamed.status, 202);
    for id in &late {
        assert_eq!(
            api.get(&format!("/api/v1/organizations/{id}")).await.status,
            404,
            "nothing projects while stopped"
        );
    }

    let projector_process = env
        .start(Roles {
            projectors: true,
            ..Roles::none()
        })
        .await;
    env.wait_until_projected(Duration::from_secs(90)).await;
    for id in &late {
        assert_eq!(
            api.get(&format!("/api/v1/organizations/{id}")).await.status,
            200
        );
    }
    let org = api
        .get(&format!("/api/v1/organizations/{}", early[0]))
        .await;
    assert_eq!(org.body["name"], "While down");
    assert_eq!(org.body["version"], 3);

    // Exactly once: one audit row and one applied mark per journal event, per projection.
    env.assert_every_event_applied_once().await;
    projector_process.stop().await;
    api_process.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_rebuilds_read_models_identical_to_the_live_ones() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    some_history(&api, 6).await;
    env.wait_until_projected(Duration::from_secs(60)).await;
    let live = read_models(&env).await;
    assert!(!live.0.is_empty() && !live.1.is_empty() && live.2.iter().all(|t| !t.is_empty()));

    let output = env
        .aihub_command(e2e::aihub_binary())
        .args(["replay", "--all"])
        .output()
        .await
        .expect("aihub replay runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "replay failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("replay tenancy") && stdout.contains("replay audit"),
        "{stdout}"
    );

    // The live projectors noticed the reset too; let everything settle, then compare.
    env.wait_until_projected(Duration::from_secs(60)).await;
    assert_eq!(
        read_models(&env).await,
        live,
        "replayed read models differ from the live ones"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_killed_writes_are_accepted_and_arrive_when_it_is_back() {
    broker_outage(Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_stopped_writes_are_accepted_and_arrive_when_it_is_back() {
    broker_outage(Outage::Stop).await;
}

enum Outage {
    /// SIGKILL, as a crash or the OOM killer would.
    Kill,
    /// SIGTERM: the broker shuts down cleanly, as in a rolling restart.
    Stop,
}

/// Takes the only broker away, writes, brings it back; the write arrives exactly once and every
/// event before it too.
async fn broker_outage(outage: Outage) {
    let mut broker = broker::Broker::start().await;
    let env = Env::with_brokers(&broker.address()).await;
    let (app, api) = env.app().await;
    api.create_org(&unique_slug("before")).await;

    match outage {
        Outage::Kill => broker.kill(),
        Outage::Stop => broker.stop(),
    }
    let reply = api
        .send(
            api.http
                .post(api.url("/api/v1/organizations"))
                .bearer_auth(&api.token)
                .json(&json!({"name": "During outage", "slug": unique_slug("outage")})),
        )
        .await;
    // Waits for the projection up to the bound, then accepts.
    assert_eq!(reply.status, 202, "{}", reply.body);
    let location = reply.headers["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(
        env.count("SELECT count(*) FROM journal_outbox").await,
        2,
        "the events (organization and subscription) wait in the journal"
    );
    assert_eq!(api.get(&location).await.status, 404);

    broker.resume().await;
    wait_for(
        Duration::from_secs(120),
        "the accepted organization becomes readable after the outage",
        || {
            let api = api.clone();
            let location = location.clone();
            async move { api.get(&location).await.status == 200 }
        },
    )
    .await;
    assert_eq!(env.count("SELECT count(*) FROM journal_outbox").await, 0);
    // Nothing lost and nothing applied twice, in every projection.
    env.wait_until_projected(Duration::from_secs(120)).await;
    env.assert_every_event_applied_once().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_report_the_running_parts() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let health = api.get("/healthz").await;
    assert_eq!(health.status, 200);
    wait_for(Duration::from_secs(30), "ready", || {
        let api = api.clone();
        async move { api.get("/readyz").await.status == 200 }
    })
    .await;
    let ready = api.get("/readyz").await;
    assert_eq!(ready.body["checks"]["postgres"], true);
    assert_eq!(ready.body["checks"]["broker"], true);
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("aihub_http_request_duration_seconds"),
        "{metrics}"
    );
    app.stop().await;

    // A process whose only broker is unreachable is alive but not ready.
    let mut unreachable = Env::new().await;
    unreachable.config.kafka = unreachable.config.kafka.with_brokers("127.0.0.1:1");
    let lonely = unreachable
        .start(Roles {
            projectors: false,
            ..Roles::all()
        })
        .await;
    let api = unreachable.api(&lonely);
    assert_eq!(api.get("/healthz").await.status, 200);
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["checks"]["broker"], false);
    lonely.stop().await;
}

/// The batches a projection of the process behind `admin` has committed, from its `/metrics`.
async fn batches(admin: &Api, projection: &str) -> u64 {
    let wanted = format!("aihub_projector_batches_total{{projection=\"{projection}\"}}");
    admin
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(wanted.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// `aihub serve` on its own port with the two lingers given (ms), nothing else appending on a
/// timer, and a tenant on it: the process (dropped, it is killed) and the tenant.
async fn serve_with_lingers(
    env: &Env,
    upstream: &Upstream,
    relay: &str,
    projector: &str,
    name: &str,
) -> (tokio::process::Child, Api, Tenant) {
    let file = e2e::one_model_catalog(1, 1);
    let port = e2e::free_port();
    let serving = env
        .serve_command(port, &file, &upstream.openai_base_url())
        .env("AIHUB_RELAY_LINGER_MS", relay)
        .env("AIHUB_PROJECTOR_LINGER_MS", projector)
        // Nothing else appends while the calls are held (a checkpoint would cut it short too).
        .env("AIHUB_AUDIT_CHECKPOINT_MS", "0")
        .env("AIHUB_BILLING_CLOSE_EVERY_MS", "0")
        // A fresh broker's consumer groups take seconds to form; still far under the linger.
        .env("AIHUB_CONSISTENCY_TIMEOUT_MS", "15000")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("aihub serve starts");
    let admin = env.serving_at(port).await;
    let tenant = Tenant::create_on(&admin, name, "pro").await;
    (serving, admin, tenant)
}

/// The tenant's owner's `i`th chat call, as answered.
async fn chat(tenant: &Tenant, i: usize) -> Reply {
    tenant
        .owner
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("call {i}")}]}),
        )
        .await
}

/// One answered chat call of the tenant's owner.
async fn call(tenant: &Tenant, i: usize) {
    let reply = chat(tenant, i).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// `AIHUB_PROJECTOR_LINGER_MS`: a projection holds a batch made only of chat calls, gathering
/// more, and applies the calls with whatever comes within the linger in one transaction; an event
/// a command waits for cuts the hold short, so the command is still answered once readable (201,
/// not 202 — the linger here, 20 s, is longer than the command's 15 s wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_calls_are_applied_together_and_a_command_cuts_their_linger_short() {
    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let (_serving, admin, tenant) =
        serve_with_lingers(&env, &upstream, "0", "20000", "linger").await;
    env.wait_until_projected(Duration::from_secs(60)).await;
    let before = batches(&admin, "usage").await;
    for i in 0..5 {
        call(&tenant, i).await;
        // Each call on the topic before the next: without the linger, a batch each.
        wait_for(Duration::from_secs(30), "the call published", || async {
            env.count("SELECT count(*) FROM journal_outbox").await == 0
        })
        .await;
    }
    assert_eq!(
        env.count("SELECT count(*) FROM read.chat_calls").await,
        0,
        "the calls are held, not applied one by one"
    );
    assert_eq!(batches(&admin, "usage").await, before);

    let team = tenant
        .owner
        .post("/api/v1/teams", &json!({"name": "After the calls"}))
        .await;
    assert_eq!(team.status, 201, "{}", team.body);
    let id = team.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        tenant
            .owner
            .get(&format!("/api/v1/teams/{id}"))
            .await
            .status,
        200
    );
    // The team's event closed the batch the calls were held in, and they were applied with it;
    // under load a call can reach the consumer after the team's event, and is then held again
    // for at most the linger.
    wait_for(
        Duration::from_secs(90),
        "the held calls applied",
        || async { env.count("SELECT count(*) FROM read.chat_calls").await == 5 },
    )
    .await;
    let usage = batches(&admin, "usage").await - before;
    assert!(
        (1..=4).contains(&usage),
        "five calls and a team in {usage} batches"
    );
    env.wait_until_projected(Duration::from_secs(60)).await;
    env.assert_every_event_applied_once().await;
}

/// `AIHUB_RELAY_LINGER_MS`: the relay holds the gateway's chat calls after a publish (the
/// journal's wake-up says `chat`, migration 0032), and a command's append, which says nothing,
/// is published at once with everything waiting before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_holds_chat_calls_and_a_command_is_published_at_once() {
    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let (_serving, _admin, tenant) =
        serve_with_lingers(&env, &upstream, "60000", "0", "relay-linger").await;
    for i in 0..5 {
        call(&tenant, i).await;
    }
    // In the journal (the spool's appender runs every 20 ms), and not yet published.
    wait_for(
        Duration::from_secs(30),
        "the calls in the journal",
        || async {
            env.count("SELECT count(*) FROM journal WHERE event_type LIKE 'chat.completion.%'")
                .await
                == 5
        },
    )
    .await;
    assert_eq!(
        env.count("SELECT count(*) FROM journal_outbox").await,
        5,
        "the relay holds the calls"
    );

    let team = tenant
        .owner
        .post("/api/v1/teams", &json!({"name": "Published at once"}))
        .await;
    assert_eq!(team.status, 201, "{}", team.body);
    wait_for(
        Duration::from_secs(30),
        "the held calls published and applied",
        || async {
            env.count("SELECT count(*) FROM journal_outbox").await == 0
                && env.count("SELECT count(*) FROM read.chat_calls").await == 5
        },
    )
    .await;
    env.wait_until_projected(Duration::from_secs(60)).await;
    env.assert_every_event_applied_once().await;
}
