//! Synthetic health checks end to end (issue 11): a check of a model runs against the fake
//! provider through the gateway, is billed like any call, shows in `GET /monitoring/health`, and
//! turns red when the provider fails; its results are events a meter (and so an alert) can
//! count. Tenants cannot define HTTP checks (no SSRF); weak keys, other organizations and plans
//! without checks are refused.

use std::time::Duration;

use e2e::upstream::{Behavior, Upstream};
use e2e::{wait_for, Env, Tenant};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_check_runs_is_billed_shows_in_health_and_turns_red_when_the_provider_fails() {
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    env.route_one_model_to(&upstream, 1_000_000, 1_000_000);
    let (_app, admin) = env.app().await;
    let a = Tenant::create_on(&admin, "checked", "pro").await;
    let owner = &a.owner;

    // Tenants may not make the platform fetch a URL of their choosing.
    let ssrf = owner
        .post(
            "/api/v1/monitoring/health/checks",
            &json!({"name": "metadata", "url": "http://169.254.169.254/latest/meta-data/"}),
        )
        .await;
    assert_eq!(
        ssrf.assert_client_error(403)["code"],
        "http_checks_admin_only"
    );
    for (body, param) in [
        (
            json!({"name": "fast", "model": "gpt-4o", "interval_seconds": 5}),
            "interval_seconds",
        ),
        (json!({"name": "nothing"}), "model"),
        (json!({"name": "", "model": "gpt-4o"}), "name"),
    ] {
        let reply = owner.post("/api/v1/monitoring/health/checks", &body).await;
        assert_eq!(reply.assert_client_error(400)["param"], param, "{body}");
    }

    let check = owner
        .post(
            "/api/v1/monitoring/health/checks",
            &json!({"name": "gpt-4o answers", "model": "gpt-4o", "interval_seconds": 30}),
        )
        .await;
    assert_eq!(check.status, 201, "{}", check.body);
    let check_id = check.body["id"].as_str().expect("id").to_string();
    assert_eq!(check.body["status"], "pending");

    // It runs, green, and shows in health under the organization's checks.
    wait_for(
        Duration::from_secs(60),
        "the first run shows in health",
        || async {
            let health = owner.get("/api/v1/monitoring/health").await;
            health.body["checks"][0]["status"] == "ok"
        },
    )
    .await;
    let health = owner.get("/api/v1/monitoring/health").await;
    assert_eq!(health.body["checks"][0]["id"], check_id.as_str());
    assert!(health.body["checks"][0]["runs"].as_i64() >= Some(1));
    assert!(!upstream.requests().is_empty(), "the provider was called");

    // Billed like any call: its chat event is in the usage read model, metered against the org.
    wait_for(Duration::from_secs(30), "the check's call is in usage", || async {
        env.count(&format!(
            "SELECT count(*) FROM read.chat_calls WHERE org_id = '{}' AND api_key_id = '{check_id}' AND outcome = 'succeeded' AND total_tokens > 0",
            a.org_id
        ))
        .await
            >= 1
    })
    .await;

    // The provider fails: the next run turns the check red.
    for _ in 0..20 {
        upstream.push(Behavior::Status(500));
    }
    wait_for(Duration::from_secs(90), "the check turns red", || async {
        let health = owner.get("/api/v1/monitoring/health").await;
        health.body["checks"][0]["status"] == "failing"
    })
    .await;
    let shown = owner
        .get(&format!("/api/v1/monitoring/health/checks/{check_id}"))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body["failures"].as_i64() >= Some(1), "{}", shown.body);
    assert!(shown.body["last_error"].is_string(), "{}", shown.body);

    // Check results are events a meter counts, so an alert rule can watch them.
    let failures = owner
        .post(
            "/api/v1/monitoring/metrics",
            &json!({"name": "failed checks", "kind": "meter", "event_type": "health_check.completed",
                    "aggregation": "count", "filter": {"ok": false}, "group_by": ["check_id"]}),
        )
        .await;
    assert_eq!(failures.status, 201, "{}", failures.body);
    let metric = failures.body["id"].as_str().expect("id").to_string();
    wait_for(Duration::from_secs(60), "the failures counted", || async {
        let data = owner
            .get(&format!(
                "/api/v1/monitoring/metrics/{metric}/data?from=2020-01-01&to=2030-01-01&step=1d&filter=check_id:{check_id}"
            ))
            .await;
        data.body["series"][0]["points"][0]["value"].as_f64() >= Some(1.0)
    })
    .await;

    // Weak keys, another organization, plans without checks.
    let (_, viewer) = a.member_with_role(&admin, "viewer").await;
    let viewer = admin.with_token(&viewer);
    viewer
        .post(
            "/api/v1/monitoring/health/checks",
            &json!({"name": "x", "model": "gpt-4o"}),
        )
        .await
        .assert_client_error(403);
    viewer
        .delete(&format!("/api/v1/monitoring/health/checks/{check_id}"))
        .await
        .assert_client_error(403);
    let b = Tenant::create_on(&admin, "other", "pro").await;
    b.owner
        .get(&format!("/api/v1/monitoring/health/checks/{check_id}"))
        .await
        .assert_client_error(404);
    b.owner
        .delete(&format!("/api/v1/monitoring/health/checks/{check_id}"))
        .await
        .assert_client_error(404);
    let theirs = b.owner.get("/api/v1/monitoring/health").await;
    assert_eq!(theirs.body["checks"], json!([]), "{}", theirs.body);
    let free = Tenant::create(&admin, "free").await;
    let refused = free
        .owner
        .post(
            "/api/v1/monitoring/health/checks",
            &json!({"name": "x", "model": "gpt-4o"}),
        )
        .await;
    assert_eq!(
        refused.assert_client_error(403)["code"],
        "plan_feature_required"
    );

    // The platform admin may check a URL for an organization.
    let http = admin
        .post(
            "/api/v1/monitoring/health/checks",
            &json!({"name": "provider up", "url": format!("{}/models", upstream.openai_base_url()),
                    "org_id": a.org_id}),
        )
        .await;
    assert_eq!(http.status, 201, "{}", http.body);

    // Deleted: gone from health.
    let gone = owner
        .delete(&format!("/api/v1/monitoring/health/checks/{check_id}"))
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    owner
        .get(&format!("/api/v1/monitoring/health/checks/{check_id}"))
        .await
        .assert_client_error(404);
}
