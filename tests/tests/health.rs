//! `GET /monitoring/health` (issue 11) and the operators' Prometheus metrics: a component turns
//! red when it stops (a broker, the projectors, a provider) and green when it returns; a real
//! Prometheus (Debian's) scrapes `aihub` and a series comes back through its HTTP API.

use std::time::Duration;

use aihub::Roles;
use e2e::broker::Broker;
use e2e::upstream::{Behavior, Upstream};
use e2e::{admin_key, free_port, one_model_catalog, wait_for, Api, Env, Tenant};
use platform::config::ProviderConfig;
use serde_json::{json, Value};

fn component<'a>(health: &'a Value, name: &str) -> Option<&'a Value> {
    health["components"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
}

fn projections_ok(health: &Value) -> bool {
    let projections: Vec<&Value> = health["components"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|c| {
                    c["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("projection:"))
                })
                .collect()
        })
        .unwrap_or_default();
    !projections.is_empty() && projections.iter().all(|c| c["status"] == "ok")
}

async fn health(api: &Api) -> Value {
    let reply = api.get("/api/v1/monitoring/health").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_component_turns_red_when_it_stops_and_green_when_it_returns() {
    let mut broker = Broker::start().await;
    let upstream = Upstream::start().await;
    let mut env = Env::with_brokers(&broker.address()).await;
    env.config.gateway.models_file = Some(one_model_catalog(1, 1).display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "or-test".into(),
    }];
    env.config.gateway.breaker_failures = 2;
    env.config.gateway.breaker_cooldown = Duration::from_secs(2);
    let apis = env
        .start(Roles {
            command_api: true,
            read_api: true,
            projectors: false,
        })
        .await;
    let mut projectors = env
        .start(Roles {
            projectors: true,
            ..Roles::none()
        })
        .await;
    let admin = env.api(&apis);
    let tenant = Tenant::create_on(&admin, "health", "developer").await;
    let (_, developer) = tenant.member_with_role(&admin, "developer").await;
    let developer = admin.with_token(&developer);

    let first = health(&developer).await;
    assert_eq!(first["object"], "monitoring.health");
    assert_eq!(
        component(&first, "postgres").expect("postgres")["status"],
        "ok"
    );
    let kafka = format!("kafka:{}", broker.address());
    assert_eq!(
        component(&first, &kafka).expect("the broker")["status"],
        "ok"
    );
    assert!(component(&first, "relay").is_some());
    wait_for(
        Duration::from_secs(30),
        "every projection caught up",
        || {
            let developer = developer.clone();
            async move { projections_ok(&health(&developer).await) }
        },
    )
    .await;

    // The projectors stop; writes go on: the projections fall behind and turn red.
    projectors.stop().await;
    for n in 0..3 {
        let reply = admin
            .post(
                "/api/v1/users",
                &json!({"org_id": tenant.org_id, "email": format!("late-{n}@health.example")}),
            )
            .await;
        assert!(reply.status == 201 || reply.status == 202, "{}", reply.body);
    }
    wait_for(
        Duration::from_secs(60),
        "the tenancy projection shows red",
        || {
            let developer = developer.clone();
            async move {
                let health = health(&developer).await;
                let tenancy = component(&health, "projection:tenancy")
                    .cloned()
                    .unwrap_or_default();
                tenancy["status"] == "down"
                    && tenancy["figures"]["lag_events"].as_i64().unwrap_or(0) >= 3
                    && health["status"] == "degraded"
            }
        },
    )
    .await;
    projectors = env
        .start(Roles {
            projectors: true,
            ..Roles::none()
        })
        .await;
    wait_for(
        Duration::from_secs(60),
        "green again once the projectors return",
        || {
            let developer = developer.clone();
            async move { projections_ok(&health(&developer).await) }
        },
    )
    .await;

    // A provider that fails opens its circuit: red, with its last error.
    let caller =
        admin.with_token(&admin_key(&admin, &tenant.org_id, None, &["chat:write".into()]).await);
    for _ in 0..2 {
        upstream.push(Behavior::Status(500));
        let reply = caller
            .post("/api/v1/chat/completions", &json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert!(reply.status >= 500, "{}", reply.body);
    }
    let now = health(&developer).await;
    let provider = component(&now, "provider:openrouter/openai/gpt-4o")
        .unwrap_or_else(|| panic!("no provider component in {now}"));
    assert_eq!(provider["status"], "down", "{provider}");
    assert_eq!(provider["figures"]["circuit"], "open");
    assert!(
        provider["figures"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{provider}"
    );
    wait_for(Duration::from_secs(20), "the provider recovers after its cool-down", || {
        let (developer, caller) = (developer.clone(), caller.clone());
        async move {
            let _ = caller
                .post("/api/v1/chat/completions", &json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
                .await;
            let health = health(&developer).await;
            component(&health, "provider:openrouter/openai/gpt-4o").is_some_and(|c| c["status"] == "ok")
        }
    })
    .await;

    // The broker dies: its component and the platform are down; back, and both are green.
    broker.kill();
    wait_for(Duration::from_secs(30), "the broker shows red", || {
        let (developer, kafka) = (developer.clone(), kafka.clone());
        async move {
            let health = health(&developer).await;
            component(&health, &kafka).is_some_and(|c| c["status"] == "down")
                && health["status"] == "down"
        }
    })
    .await;
    broker.resume().await;
    wait_for(
        Duration::from_secs(90),
        "the broker and everything after it green again",
        || {
            let (developer, kafka) = (developer.clone(), kafka.clone());
            async move {
                let health = health(&developer).await;
                component(&health, &kafka).is_some_and(|c| c["status"] == "ok")
                    && projections_ok(&health)
            }
        },
    )
    .await;

    // Who may look: not a role without monitoring:read, not an organization on Free.
    let (_, billing) = tenant.member_with_role(&admin, "billing_manager").await;
    let reply = admin
        .with_token(&billing)
        .get("/api/v1/monitoring/health")
        .await;
    assert_eq!(reply.assert_client_error(403)["code"], "missing_permission");
    let free = Tenant::create(&admin, "health-free").await;
    let reply = free.owner.get("/api/v1/monitoring/health").await;
    assert_eq!(
        reply.assert_client_error(403)["code"],
        "plan_feature_required"
    );
    projectors.stop().await;
    apis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_scrapes_aihub_and_reads_a_chat_series_back() {
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    env.route_one_model_to(&upstream, 1_000_000, 1_000_000);
    env.config.ops_listen = Some("127.0.0.1:0".into());
    let (app, admin) = env.app().await;
    let ops = app.ops_addr.expect("an operator port");
    let tenant = Tenant::create_on(&admin, "scraped", "developer").await;
    let caller =
        admin.with_token(&admin_key(&admin, &tenant.org_id, None, &["chat:write".into()]).await);
    let reply = caller
        .post("/api/v1/chat/completions", &json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let dir = std::env::temp_dir().join(format!("aihub-prometheus-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: aihub\n    static_configs:\n      - targets: ['{ops}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let port = free_port();
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let _prometheus = tokio::process::Command::new(&binary)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} does not start ({e}): infra/local/test.sh installs it (ensure_deploy_tools)"));
    let http = reqwest::Client::new();
    let query = |q: &'static str| {
        let http = http.clone();
        async move {
            let reply = http
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            let body: Value = reply.json().await.ok()?;
            body["data"]["result"].as_array().cloned()
        }
    };
    wait_for(
        Duration::from_secs(60),
        "Prometheus has scraped the chat call",
        || async {
            query("aihub_chat_calls_total{model=\"gpt-4o\",provider=\"openrouter\",outcome=\"ok\"}")
                .await
                .is_some_and(|r| r.first().is_some_and(|s| s["value"][1] == "1"))
        },
    )
    .await;
    let tokens = query("sum(aihub_chat_tokens_total{model=\"gpt-4o\"})")
        .await
        .expect("tokens");
    let billed: f64 = tokens[0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("a number");
    assert_eq!(
        billed as u64,
        reply.body["usage"]["total_tokens"].as_u64().expect("usage")
    );
    let lag = query("aihub_projection_lag_events").await.expect("lag");
    assert!(lag.len() >= 4, "a lag per projection: {lag:?}");
    assert!(query(
        "aihub_upstream_request_duration_seconds_count{provider=\"openrouter\",outcome=\"ok\"}"
    )
    .await
    .is_some_and(|r| !r.is_empty()));
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
