//! Rate limits end to end (issue 13, item 8): requests per minute held across three `aihub serve`
//! processes sharing one PostgreSQL, tokens per minute counted at admission and given back, the
//! cap on open streams, the `x-ratelimit-*` headers and `retry-after` OpenAI clients read, and
//! who may set the limits.

use std::time::Duration;

use chrono::Timelike;
use e2e::upstream::{Behavior, Upstream};
use e2e::{free_port, one_model_catalog, wait_for, Api, Env, Tenant};
use platform::config::ProviderConfig;
use serde_json::{json, Value};

/// Waits for the start of the next minute when less than `room` is left of this one: the limits
/// count in UTC minutes, and a burst that straddles two would be counted against both.
async fn fresh_minute(room: Duration) {
    let now = chrono::Utc::now();
    let into = Duration::from_millis(
        u64::from(now.second()) * 1000 + u64::from(now.nanosecond() / 1_000_000),
    );
    let left = Duration::from_secs(60).saturating_sub(into);
    if left < room {
        tokio::time::sleep(left + Duration::from_millis(300)).await;
    }
}

/// A key of `tenant`'s owner, with its id.
async fn owner_key(admin: &Api, tenant: &Tenant, permissions: &[&str]) -> (String, String) {
    let reply = admin
        .post(
            "/api/v1/api-keys",
            &json!({"org_id": tenant.org_id, "user_id": tenant.owner_id, "name": "limited", "permissions": permissions}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    (
        reply.body["id"].as_str().expect("id").to_string(),
        reply.body["key"].as_str().expect("key").to_string(),
    )
}

fn header(reply: &e2e::Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_per_minute_hold_within_five_percent_across_three_gateway_processes() {
    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "rpm", "pro").await;
    const LIMIT: u64 = 150;
    // The platform admin narrows the organization's limit below Pro's 3,000.
    let set = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": LIMIT}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["requests_per_minute"], LIMIT);
    assert_eq!(set.body["overrides"]["requests_per_minute"], LIMIT);
    assert_eq!(
        set.body["tokens_per_minute"], 500_000,
        "Pro's default stays"
    );

    let file = one_model_catalog(1, 1);
    let mut processes = Vec::new();
    let mut gateways = Vec::new();
    for n in 0..3 {
        let port = free_port();
        let spool = std::env::temp_dir().join(format!("aihub-limits-spool-{}-{n}", env.database));
        processes.push(
            env.serve_command(port, &file, &upstream.openai_base_url())
                .env("AIHUB_SPOOL_DIR", &spool)
                .spawn()
                .expect("aihub serve starts"),
        );
        gateways.push(env.serving_at(port).await.with_token(&tenant.owner_key));
    }
    fresh_minute(Duration::from_secs(25)).await;

    // Twice the limit, spread over the three processes, eight at a time each.
    let mut tasks = Vec::new();
    for gateway in gateways.clone() {
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for _ in 0..(2 * LIMIT as usize / 3) / 8 + 1 {
                let batch =
                    futures::future::join_all((0..8).map(|_| gateway.get("/api/v1/models"))).await;
                replies.extend(batch);
            }
            replies
        }));
    }
    let mut ok = 0u64;
    let mut refused = Vec::new();
    for task in tasks {
        for reply in task.await.expect("task") {
            match reply.status {
                200 => {
                    ok += 1;
                    assert_eq!(
                        header(&reply, "x-ratelimit-limit-requests").as_deref(),
                        Some("150")
                    );
                    let remaining: u64 = header(&reply, "x-ratelimit-remaining-requests")
                        .expect("remaining")
                        .parse()
                        .expect("a number");
                    assert!(remaining < LIMIT);
                    assert!(header(&reply, "x-ratelimit-reset-requests").is_some());
                }
                429 => refused.push(reply),
                other => panic!("unexpected {other}: {}", reply.body),
            }
        }
    }
    println!(
        "{ok} of {} calls admitted, limit {LIMIT}, across three processes",
        ok + refused.len() as u64
    );
    assert!(
        ok <= LIMIT && ok as f64 >= LIMIT as f64 * 0.95,
        "{ok} calls admitted for a limit of {LIMIT} across three processes"
    );
    assert!(!refused.is_empty());
    let first = &refused[0];
    let error = first.assert_client_error(429);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
    let retry: u64 = header(first, "retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        header(first, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );

    // Another organization is not held back by this one's limit.
    let other = Tenant::create(&admin, "rpm-other").await;
    let reply = gateways[0]
        .with_token(&other.owner_key)
        .get("/api/v1/models")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        header(&reply, "x-ratelimit-limit-requests").as_deref(),
        Some("60"),
        "Free's default"
    );
    // Nor is the platform admin.
    let reply = gateways[0]
        .with_token(&env.config.admin_token.clone().unwrap_or_default())
        .get("/api/v1/models")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    drop(processes);
}

async fn chat_app(upstream: &Upstream) -> (Env, aihub::Running, Api) {
    let mut env = Env::new().await;
    // A stalled stream ends after this, so a test that holds streams open does not wait a minute.
    env.config.gateway.stream_idle = Duration::from_secs(8);
    let file = one_model_catalog(1, 1);
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "or-test".into(),
    }];
    let (app, admin) = env.app().await;
    (env, app, admin)
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": "gpt-4o", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_per_minute_count_the_budget_at_admission_and_take_back_what_was_not_used() {
    let upstream = Upstream::start().await;
    let (_env, _app, admin) = chat_app(&upstream).await;
    let tenant = Tenant::create_on(&admin, "tpm", "developer").await;
    let (key_id, key) = owner_key(&admin, &tenant, &["chat:write", "models:read"]).await;
    // The owner holds api_keys:manage: it may narrow its own key.
    let set = tenant
        .owner
        .put(
            &format!("/api/v1/api-keys/{key_id}/limits"),
            &json!({"tokens_per_minute": 2500}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["tokens_per_minute"], 2500);
    assert_eq!(
        set.body["requests_per_minute"], 600,
        "the organization's, Developer's default"
    );
    let caller = admin.with_token(&key);
    fresh_minute(Duration::from_secs(20)).await;

    // A call that may use more than the limit is refused outright.
    let reply = caller.post("/api/v1/chat/completions", &ask(5000)).await;
    let error = reply.assert_client_error(429);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "tokens");
    assert!(error["message"]
        .as_str()
        .unwrap_or_default()
        .contains("too large"));
    assert_eq!(
        header(&reply, "x-ratelimit-limit-tokens").as_deref(),
        Some("2500")
    );

    // Each call holds its budget while it runs and gives back what it did not use: one after
    // another, ten calls of a 1,000-token budget fit in 2,500 tokens a minute.
    for n in 0..10 {
        let reply = caller.post("/api/v1/chat/completions", &ask(1000)).await;
        assert_eq!(reply.status, 200, "call {n}: {}", reply.body);
        assert_eq!(
            header(&reply, "x-ratelimit-limit-tokens").as_deref(),
            Some("2500")
        );
        assert!(header(&reply, "x-ratelimit-remaining-tokens").is_some());
    }
    // Two slow calls at once hold 2,000 and more: a third does not fit until they end.
    upstream.push(Behavior::DelayFirstByte(Duration::from_secs(3)));
    upstream.push(Behavior::DelayFirstByte(Duration::from_secs(3)));
    let slow = {
        let caller = caller.clone();
        let body = ask(1000);
        tokio::spawn(async move {
            futures::future::join_all(
                (0..2).map(|_| caller.post("/api/v1/chat/completions", &body)),
            )
            .await
        })
    };
    wait_for(Duration::from_secs(10), "two calls upstream", || {
        let upstream = &upstream;
        async move { upstream.requests().len() >= 12 }
    })
    .await;
    let third = caller.post("/api/v1/chat/completions", &ask(1000)).await;
    assert_eq!(third.status, 429, "{}", third.body);
    assert_eq!(third.body["error"]["type"], "tokens");
    for reply in slow.await.expect("slow calls") {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let after = caller.post("/api/v1/chat/completions", &ask(1000)).await;
    assert_eq!(
        after.status, 200,
        "given back when they ended: {}",
        after.body
    );
    // The refused calls reached no provider and wrote no event.
    assert_eq!(upstream.requests().len(), 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_organization_holds_no_more_open_streams_than_its_cap() {
    let upstream = Upstream::start().await;
    let (_env, _app, admin) = chat_app(&upstream).await;
    let tenant = Tenant::create_on(&admin, "streams", "developer").await;
    let set = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"concurrent_streams": 2}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let caller = tenant.owner.clone();
    wait_for(Duration::from_secs(15), "the cap is read", || {
        let caller = caller.clone();
        let org = tenant.org_id.clone();
        async move {
            caller
                .get(&format!("/api/v1/organizations/{org}/limits"))
                .await
                .body["concurrent_streams"]
                == 2
        }
    })
    .await;
    upstream.push(Behavior::StallAfterChunks(1));
    upstream.push(Behavior::StallAfterChunks(1));
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = caller
            .request(reqwest::Method::POST, "/api/v1/chat/stream")
            .json(&ask(50))
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let third = caller.post("/api/v1/chat/stream", &ask(50)).await;
    let error = third.assert_client_error(429);
    assert_eq!(error["code"], "too_many_streams");
    assert!(header(&third, "retry-after").is_some());
    // A call that does not stream is not held back.
    let whole = caller.post("/api/v1/chat/completions", &ask(50)).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    // A stream that ends frees its place.
    drop(open.pop());
    wait_for(Duration::from_secs(30), "a place is free again", || {
        let caller = caller.clone();
        async move { caller.post("/api/v1/chat/stream", &ask(50)).await.status == 200 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_platform_admin_lifts_an_organization_s_limits_and_only_an_admin_a_key_s() {
    let upstream = Upstream::start().await;
    let (_env, _app, admin) = chat_app(&upstream).await;
    let tenant = Tenant::create_on(&admin, "who-limits", "developer").await;
    let other = Tenant::create(&admin, "who-limits-other").await;

    // The owner (every permission) cannot raise its own organization's limits.
    let reply = tenant
        .owner
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 1_000_000}),
        )
        .await;
    reply.assert_client_error(403);

    // A developer may not lift a limit an admin put on its own key.
    let (dev_id, dev_all) = tenant.member_with_role(&admin, "developer").await;
    let reply = admin
        .post(
            "/api/v1/api-keys",
            &json!({"org_id": tenant.org_id, "user_id": dev_id, "name": "dev", "permissions": ["chat:write", "api_keys:write", "api_keys:read"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let dev_key_id = reply.body["id"].as_str().expect("id").to_string();
    let limited = tenant
        .owner
        .put(
            &format!("/api/v1/api-keys/{dev_key_id}/limits"),
            &json!({"requests_per_minute": 5}),
        )
        .await;
    assert_eq!(limited.status, 200, "{}", limited.body);
    let developer = admin.with_token(&dev_all);
    let reply = developer
        .put(&format!("/api/v1/api-keys/{dev_key_id}/limits"), &json!({}))
        .await;
    let error = reply.assert_client_error(403);
    assert_eq!(error["code"], "missing_permission");
    // It reads them (api_keys:read) and sees the admin's.
    let read = developer
        .get(&format!("/api/v1/api-keys/{dev_key_id}/limits"))
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["requests_per_minute"], 5);
    assert_eq!(read.body["overrides"]["requests_per_minute"], 5);
    assert_eq!(read.body["plan"], "developer");

    // Another organization's key and organization are not there for it.
    let reply = other
        .owner
        .put(
            &format!("/api/v1/api-keys/{dev_key_id}/limits"),
            &json!({"requests_per_minute": 100}),
        )
        .await;
    reply.assert_client_error(404);
    let reply = other
        .owner
        .get(&format!("/api/v1/api-keys/{dev_key_id}/limits"))
        .await;
    reply.assert_client_error(404);
    let reply = other
        .owner
        .get(&format!("/api/v1/organizations/{}/limits", tenant.org_id))
        .await;
    reply.assert_client_error(404);

    // A key limit above the organization's does not lift it.
    let (key_id, key) = owner_key(&admin, &tenant, &["models:read"]).await;
    let reply = tenant
        .owner
        .put(
            &format!("/api/v1/api-keys/{key_id}/limits"),
            &json!({"requests_per_minute": 100_000}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["requests_per_minute"], 600,
        "the organization's still binds"
    );
    let reply = admin.with_token(&key).get("/api/v1/models").await;
    assert_eq!(
        header(&reply, "x-ratelimit-limit-requests").as_deref(),
        Some("600")
    );

    // Bad input is 400 naming the field, and changes nothing.
    for (body, param) in [
        (
            json!({"requests_per_minute": 0}),
            Some("requests_per_minute"),
        ),
        (json!({"tokens_per_minute": -5}), None),
        (json!({"concurrent_streams": "many"}), None),
        (json!({"requests_per_minute": 10, "burst": 5}), None),
        (json!({"tokens_per_minute": 1e15}), None),
    ] {
        let reply = admin
            .put(
                &format!("/api/v1/organizations/{}/limits", tenant.org_id),
                &body,
            )
            .await;
        let error = reply.assert_client_error(400);
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{body}");
        }
    }
    let read = admin
        .get(&format!("/api/v1/organizations/{}/limits", tenant.org_id))
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["requests_per_minute"], 600);
    assert_eq!(
        read.body["overrides"],
        json!({"requests_per_minute": null, "tokens_per_minute": null, "concurrent_streams": null})
    );
    let reply = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    reply.assert_client_error(404);
}
