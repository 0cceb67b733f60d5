//! Plans and subscriptions: every organization starts on Free, upgrades prorate to the cent and
//! take effect at once, downgrades wait for the first of the next month.

use aihub::Roles;
use chrono::{DateTime, Utc};
use e2e::{Env, Tenant};
use platform::clock::Clock;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// A read-only process over the same database whose clock says `now`.
async fn reader_at(env: &Env, now: &str) -> (aihub::Running, e2e::Api) {
    let mut config = env.config.clone();
    config.clock = Clock::fixed(at(now));
    let running = aihub::start(
        config,
        Roles {
            read_api: true,
            ..Roles::none()
        },
    )
    .await
    .expect("starts");
    let api = env.api(&running);
    (running, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_start_on_free_and_upgrades_are_prorated_to_the_cent() {
    let mut env = Env::new().await;
    env.config.clock = Clock::fixed(at("2026-11-11T10:00:00Z"));
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "prorate").await;
    let plans = tenant.owner.get("/api/v1/billing/plans").await;
    let ids: Vec<&str> = plans.body["data"]
        .as_array()
        .expect("plans")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["free", "developer", "pro", "enterprise"]);

    let list = tenant.owner.get("/api/v1/subscriptions").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let subscription = &list.body["data"][0];
    assert_eq!(subscription["plan"], "free");
    let id = subscription["id"].as_str().expect("id").to_string();

    let up = tenant
        .owner
        .put(
            &format!("/api/v1/subscriptions/{id}/upgrade"),
            &json!({"plan": "developer"}),
        )
        .await;
    assert_eq!(
        (up.status, up.body["plan"].as_str()),
        (200, Some("developer")),
        "{}",
        up.body
    );
    let up = tenant
        .owner
        .put(
            &format!("/api/v1/subscriptions/{id}/upgrade"),
            &json!({"plan": "pro"}),
        )
        .await;
    assert_eq!(
        (up.status, up.body["plan"].as_str()),
        (200, Some("pro")),
        "{}",
        up.body
    );
    assert_eq!(
        tenant
            .owner
            .get(&format!("/api/v1/subscriptions/{id}"))
            .await
            .body["plan"],
        "pro",
        "effective at once"
    );

    // November has 30 days; the 11th leaves 20 of them: 20/30 of $29, then 20/30 of $70.
    let charges = env
        .dump("read.subscription_charges", "occurred_at, event_id")
        .await;
    let amounts: Vec<i64> = charges
        .iter()
        .map(|c| c["amount_cents"].as_i64().expect("amount"))
        .collect();
    assert_eq!(amounts, [1_933, 4_667]);
    assert!(charges
        .iter()
        .all(|c| c["period"] == "2026-11" && c["kind"] == "proration"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_takes_effect_on_the_first_of_the_next_month_not_before() {
    let mut env = Env::new().await;
    env.config.clock = Clock::fixed(at("2026-11-11T10:00:00Z"));
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "downgrade").await;
    let id = tenant.org_id.clone();
    assert_eq!(
        tenant
            .owner
            .put(
                &format!("/api/v1/subscriptions/{id}/upgrade"),
                &json!({"plan": "pro"})
            )
            .await
            .status,
        200
    );
    let down = tenant
        .owner
        .put(
            &format!("/api/v1/subscriptions/{id}/downgrade"),
            &json!({"plan": "developer"}),
        )
        .await;
    assert_eq!(down.status, 200, "{}", down.body);
    assert_eq!(down.body["plan"], "pro");
    assert_eq!(
        down.body["pending_downgrade"],
        json!({"plan": "developer", "effective_at": "2026-12-01T00:00:00.000Z"})
    );

    let (late_november, api) = reader_at(&env, "2026-11-30T23:59:59Z").await;
    assert_eq!(
        api.with_token(&tenant.owner_key)
            .get(&format!("/api/v1/subscriptions/{id}"))
            .await
            .body["plan"],
        "pro"
    );
    late_november.stop().await;
    let (december, api) = reader_at(&env, "2026-12-01T00:00:00Z").await;
    let now = api
        .with_token(&tenant.owner_key)
        .get(&format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(
        (now.body["plan"].as_str(), &now.body["pending_downgrade"]),
        (Some("developer"), &json!(null))
    );
    december.stop().await;

    // A pending downgrade can be cancelled, once.
    let other = Tenant::create(&admin, "cancel").await;
    let path = format!("/api/v1/subscriptions/{}", other.org_id);
    assert_eq!(
        other
            .owner
            .put(&format!("{path}/upgrade"), &json!({"plan": "developer"}))
            .await
            .status,
        200
    );
    assert_eq!(
        other
            .owner
            .put(&format!("{path}/downgrade"), &json!({"plan": "free"}))
            .await
            .status,
        200
    );
    let cancelled = other.owner.delete(&format!("{path}/downgrade")).await;
    assert_eq!(
        (cancelled.status, &cancelled.body["pending_downgrade"]),
        (200, &json!(null))
    );
    other
        .owner
        .delete(&format!("{path}/downgrade"))
        .await
        .assert_client_error(404);
    assert_eq!(other.owner.get(&path).await.body["plan"], "developer");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscription_input_gets_4xx_in_the_openai_error_shape() {
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "bad-billing").await;
    let other = Tenant::create(&admin, "bad-billing-other").await;
    let path = format!("/api/v1/subscriptions/{}", tenant.org_id);
    let owner = &tenant.owner;
    assert_eq!(
        owner
            .put(&format!("{path}/upgrade"), &json!({"plan": "platinum"}))
            .await
            .assert_client_error(400)["param"],
        "plan"
    );
    owner
        .put(&format!("{path}/upgrade"), &json!({"plan": "free"}))
        .await
        .assert_client_error(400);
    owner
        .put(&format!("{path}/downgrade"), &json!({"plan": "pro"}))
        .await
        .assert_client_error(400);
    owner
        .put(&format!("{path}/upgrade"), &json!({}))
        .await
        .assert_client_error(400);
    owner
        .post("/api/v1/subscriptions", &json!({"plan": "pro"}))
        .await
        .assert_client_error(409);
    owner
        .put(&format!("{path}/upgrade"), &json!({"plan": "enterprise"}))
        .await
        .assert_client_error(403);
    other.owner.get(&path).await.assert_client_error(404);
    other
        .owner
        .put(&format!("{path}/upgrade"), &json!({"plan": "pro"}))
        .await
        .assert_client_error(404);
    let reader = e2e::admin_key(&admin, &tenant.org_id, None, &["billing:read".into()]).await;
    admin
        .with_token(&reader)
        .put(&format!("{path}/upgrade"), &json!({"plan": "pro"}))
        .await
        .assert_client_error(403);
    // The platform admin may move an organization onto Enterprise.
    let enterprise = admin
        .put(&format!("{path}/upgrade"), &json!({"plan": "enterprise"}))
        .await;
    assert_eq!(
        (enterprise.status, enterprise.body["plan"].as_str()),
        (200, Some("enterprise")),
        "{}",
        enterprise.body
    );
    app.stop().await;
}

/// 200 concurrent chat calls over three gateway processes sharing the database, against an
/// organization with 1,000 tokens a month: what is billed never exceeds the allowance, and every
/// refused call got 429 `insufficient_quota`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_quota_holds_across_processes_under_concurrency() {
    use e2e::upstream::Upstream;
    use platform::config::ProviderConfig;
    use std::time::Duration;

    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = json!([{"name": "quota-model", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1000000,
        "output_micros_per_mtok": 1000000, "deployments": [{"provider": "openrouter", "upstream_model": "q/model"}]}]);
    let file =
        std::env::temp_dir().join(format!("aihub-quota-models-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "q".into(),
    }];
    let projectors = env
        .start(Roles {
            projectors: true,
            ..Roles::none()
        })
        .await;
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(
            env.start(Roles {
                command_api: true,
                read_api: true,
                projectors: false,
            })
            .await,
        );
    }
    let admin = env.api(&gateways[0]);
    let tenant = Tenant::create(&admin, "quota").await;
    // The quota is under test here, not the rate limits: the platform admin lifts them.
    let lifted = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 100_000, "tokens_per_minute": 10_000_000}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    let key = e2e::admin_key(&admin, &tenant.org_id, None, &["chat:write".into()]).await;
    let callers: Vec<e2e::Api> = gateways
        .iter()
        .map(|g| env.api(g).with_token(&key))
        .collect();

    let calls = (0..200).map(|i| {
        let caller = callers[i % 3].clone();
        async move {
            caller
                .post(
                    "/api/v1/chat/completions",
                    &json!({"model": "quota-model", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello quota"}]}),
                )
                .await
        }
    });
    let replies = futures::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(
            reply.assert_client_error(429)["code"],
            "insufficient_quota",
            "{}",
            reply.body
        );
        assert!(reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1000") && m.contains("resets at")));
    }
    assert!(ok > 0 && ok < 200, "{ok} of 200 succeeded");
    for reply in replies.iter().filter(|r| r.status == 200) {
        assert!(reply.headers.get("x-aihub-tokens-remaining").is_some());
    }

    // Every call is billed from its event; the sum stays within the allowance.
    e2e::wait_for(Duration::from_secs(60), "every call projected", || async {
        env.count("SELECT count(*) FROM read.chat_calls").await == 200
    })
    .await;
    let billed = env
        .count("SELECT COALESCE(sum(total_tokens), 0)::bigint FROM read.chat_calls")
        .await;
    assert!(
        billed <= 1000,
        "billed {billed} tokens of a 1,000-token allowance"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM read.chat_calls WHERE status = 429")
            .await,
        (200 - ok) as i64
    );
    // Each process gives its lease back once idle; then the ledger matches the events.
    e2e::wait_for(
        Duration::from_secs(30),
        "the leases given back and the ledger matching the events",
        || async { ledger(&env).await == (billed, 0) },
    )
    .await;

    // An upgrade raises the allowance at once.
    let up = tenant
        .owner
        .put(
            &format!("/api/v1/subscriptions/{}/upgrade", tenant.org_id),
            &json!({"plan": "developer"}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.body);
    let after = callers[1]
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "quota-model", "messages": [{"role": "user", "content": "more"}]}),
        )
        .await;
    assert_eq!(after.status, 200, "{}", after.body);
    for gateway in gateways {
        gateway.stop().await;
    }
    projectors.stop().await;
}

/// The quota ledger of the test's one organization: `(used, reserved)`.
async fn ledger(env: &Env) -> (i64, i64) {
    let row = env
        .db()
        .await
        .query_one(
            "SELECT COALESCE(sum(used), 0)::bigint, COALESCE(sum(reserved), 0)::bigint FROM quota_usage",
            &[],
        )
        .await
        .expect("ledger");
    (row.get(0), row.get(1))
}

/// A gateway process serves calls from a lease of tokens it holds in the ledger; another process
/// sees that lease as taken, and once the processes idle or stop, the ledger's `used` is exactly
/// what the calls' events bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_by_one_process_is_held_for_the_others_and_the_ledger_ends_exact() {
    use e2e::upstream::Upstream;
    use platform::config::ProviderConfig;
    use std::time::Duration;

    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = json!([{"name": "lease-model", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1000000,
        "output_micros_per_mtok": 1000000, "deployments": [{"provider": "openrouter", "upstream_model": "l/model"}]}]);
    let file =
        std::env::temp_dir().join(format!("aihub-lease-models-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "l".into(),
    }];
    let gateway = Roles {
        command_api: true,
        read_api: true,
        projectors: false,
    };
    let projectors = env
        .start(Roles {
            projectors: true,
            ..Roles::none()
        })
        .await;
    // The first process keeps an idle lease for a minute, the second gives its own back at once.
    let mut keeping = env.config.clone();
    keeping.gateway.quota_lease_idle = Duration::from_secs(60);
    let first = aihub::start(keeping, gateway).await.expect("starts");
    let mut quick = env.config.clone();
    quick.gateway.quota_lease_idle = Duration::from_millis(300);
    let second = aihub::start(quick, gateway).await.expect("starts");

    let admin = env.api(&first);
    let tenant = Tenant::create(&admin, "lease").await;
    let up = tenant
        .owner
        .put(
            &format!("/api/v1/subscriptions/{}/upgrade", tenant.org_id),
            &json!({"plan": "developer"}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.body);
    let key = e2e::admin_key(&admin, &tenant.org_id, None, &["chat:write".into()]).await;
    let (via_first, via_second) = (
        env.api(&first).with_token(&key),
        env.api(&second).with_token(&key),
    );
    let call = json!({"model": "lease-model", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello lease"}]});

    let replies = futures::future::join_all(
        (0..10).map(|_| via_first.post("/api/v1/chat/completions", &call)),
    )
    .await;
    assert!(replies.iter().all(|r| r.status == 200), "every call served");
    // One statement, so the lease and the ledger are read at the same instant: a call settling
    // between two reads moves tokens from one to the other.
    let db = env.db().await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM quota_reservations), (SELECT COALESCE(sum(tokens), 0)::bigint FROM quota_reservations),
                    (SELECT COALESCE(sum(used), 0)::bigint FROM quota_usage), (SELECT COALESCE(sum(reserved), 0)::bigint FROM quota_usage)",
            &[],
        )
        .await
        .expect("leases");
    assert_eq!(row.get::<_, i64>(0), 1, "one lease for the first process");
    let (leased, used, reserved): (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
    assert!(
        leased > 0 && reserved >= leased,
        "{leased} leased, {reserved} reserved"
    );
    assert!(used + reserved <= 100_000);

    // The second process leases from what the first left: its count of the remaining tokens
    // already excludes the first one's lease.
    let seen = via_second.post("/api/v1/chat/completions", &call).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let remaining: i64 = seen.headers["x-aihub-tokens-remaining"]
        .to_str()
        .expect("header")
        .parse()
        .expect("number");
    assert!(
        remaining <= 100_000 - leased,
        "the second process says {remaining} left while the first holds {leased}"
    );

    // The idle second process gives its lease back; the first gives its own back on stopping.
    e2e::wait_for(
        Duration::from_secs(30),
        "the second lease given back",
        || async { env.count("SELECT count(*) FROM quota_reservations").await == 1 },
    )
    .await;
    first.stop().await;
    e2e::wait_for(Duration::from_secs(60), "every call projected", || async {
        env.count("SELECT count(*) FROM read.chat_calls").await == 11
    })
    .await;
    let billed = env
        .count("SELECT COALESCE(sum(total_tokens), 0)::bigint FROM read.chat_calls")
        .await;
    assert!(billed > 0);
    assert_eq!(
        ledger(&env).await,
        (billed, 0),
        "the ledger matches the events"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM quota_reservations").await,
        0
    );
    second.stop().await;
    projectors.stop().await;
}
