//! Issue 12: compliance reports. A SOC 2 report of an organization whose history is seeded
//! through the API passes and fails the controls it should, every evidence id is an event of
//! `/audit/logs`, and the content hash its `compliance.report_generated` records is the SHA-256
//! of the report's canonical JSON. Weak roles, other organizations, bad input and HIPAA on a
//! plan without it are refused.

use std::time::Duration;

use e2e::{wait_for, Api, Env, Tenant};
use serde_json::{json, Value};

/// Asks for a report and waits until it is computed; returns it whole.
async fn generate(api: &Api, framework: &str, period: &str) -> Value {
    let asked = api
        .post(
            "/api/v1/audit/compliance/generate",
            &json!({"framework": framework, "period": period}),
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    assert_eq!(asked.body["status"], "pending", "{}", asked.body);
    let id = asked.body["id"].as_str().expect("id").to_string();
    let location = asked
        .headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("Location")
        .to_string();
    assert_eq!(location, format!("/api/v1/audit/compliance/{id}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply = api.get(&location).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_ne!(reply.body["status"], "failed", "{}", reply.body);
        if reply.body["status"] == "ready" {
            return reply.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "report {id} not computed in 60 s: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn control<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["report"]["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no control {id} in {}", report["report"]))
}

fn evidence(control: &Value) -> Vec<String> {
    control["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e.as_str().expect("id").to_string())
        .collect()
}

/// The ids of the organization's events of one type, from the audit log.
async fn events_of(api: &Api, event_type: &str) -> Vec<String> {
    let page = api
        .get(&format!(
            "/api/v1/audit/logs?event_type={event_type}&limit=1000"
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

/// The rate limits are not under test here: the platform admin lifts them.
async fn lift_limits(admin: &Api, tenant: &Tenant) {
    let lifted = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 100_000, "tokens_per_minute": 10_000_000}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
}

fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// A period from a day ago to a day ahead: never split by a month's end while the test runs.
fn around_now() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}/{}",
        (now - chrono::Duration::days(1)).format("%Y-%m-%d"),
        (now + chrono::Duration::days(2)).format("%Y-%m-%d")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soc2_report_of_a_seeded_history_passes_and_fails_with_evidence_in_the_audit_log() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    // The history: an owner (created with the organization, a key without expiry), an auditor,
    // an admin who is added, gets a key, and is removed while the key stays active, a key with
    // an expiry, and a burst of refused authentications against the owner's key.
    let tenant = Tenant::create(&admin, "compliance").await;
    lift_limits(&admin, &tenant).await;
    let (_, auditor_key) = tenant.member_with_role(&admin, "auditor").await;
    let auditor = admin.with_token(&auditor_key);
    let (admin_user, admin_user_key) = tenant.member_with_role(&admin, "admin").await;
    let removed = tenant
        .owner
        .delete(&format!("/api/v1/users/{admin_user}/roles/admin"))
        .await;
    assert!(
        removed.status == 200 || removed.status == 204,
        "{}",
        removed.body
    );
    let expiring = tenant
        .owner
        .post(
            "/api/v1/api-keys",
            &json!({"name": "expiring", "permissions": ["models:read"],
                    "expires_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339()}),
        )
        .await;
    assert_eq!(expiring.status, 201, "{}", expiring.body);
    let expiring_id = expiring.body["id"].as_str().expect("id").to_string();
    // The admin's key still authenticates (it is not revoked), although it can do nothing now.
    let still = admin
        .with_token(&admin_user_key)
        .get("/api/v1/models")
        .await;
    assert_ne!(still.status, 401, "{}", still.body);
    // 25 refusals of a real public id with a wrong secret: auth.failed events of this org.
    let public = tenant
        .owner_key
        .strip_prefix("aihub-sk-")
        .and_then(|rest| rest.split('-').next())
        .expect("public id");
    let wrong = admin.with_token(&format!("aihub-sk-{public}-{}", "0".repeat(64)));
    for _ in 0..25 {
        assert_eq!(wrong.get("/api/v1/organizations").await.status, 401);
    }
    wait_for(
        Duration::from_secs(30),
        "auth.failed events projected",
        || async {
            env.count(&format!(
                "SELECT COALESCE(sum((data->>'count')::bigint), 0)::bigint FROM read.audit_log
             WHERE event_type = 'auth.failed' AND org_id = '{}'",
                tenant.org_id
            ))
            .await
                >= 25
        },
    )
    .await;
    env.wait_until_projected(Duration::from_secs(60)).await;

    let report = generate(&auditor, "soc2", &around_now()).await;
    let content = &report["report"];
    assert_eq!(content["framework"], "soc2");
    assert_eq!(content["org_id"], tenant.org_id.as_str());
    let result = |id: &str| {
        control(&report, id)["result"]
            .as_str()
            .expect("result")
            .to_string()
    };

    // Access review: the owner holds owner; the admin's grant and removal are listed.
    assert_eq!(
        result("access_review"),
        "pass",
        "{}",
        control(&report, "access_review")
    );
    let review = evidence(control(&report, "access_review"));
    let role_removed = events_of(&auditor, "user.role_removed").await;
    assert_eq!(role_removed.len(), 1);
    assert!(review.contains(&role_removed[0]), "{review:?}");
    let owner_added = events_of(&auditor, "organization.owner_added").await;
    assert!(review.contains(&owner_added[0]), "{review:?}");
    let subjects: Vec<String> = control(&report, "access_review")["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| format!("{} {}", f["subject"], f["detail"]))
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains(&tenant.owner_id) && s.contains("holds owner")),
        "{subjects:?}"
    );
    assert!(
        !subjects
            .iter()
            .any(|s| s.contains(&admin_user) && s.contains("holds admin")),
        "the removed admin holds nothing: {subjects:?}"
    );

    // Key hygiene: every key but the expiring one never expires; none is stale yet; the removed
    // admin's key is still active.
    assert_eq!(result("key_expiry"), "fail");
    let never: Vec<String> = control(&report, "key_expiry")["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["subject"].as_str().expect("subject").to_string())
        .collect();
    assert_eq!(
        never.len(),
        3,
        "owner's, auditor's and admin's keys: {never:?}"
    );
    assert!(!never.contains(&format!("api_key:{expiring_id}")));
    assert_eq!(result("stale_keys"), "pass");
    assert_eq!(result("departed_user_keys"), "fail");
    let departed = control(&report, "departed_user_keys");
    assert_eq!(departed["findings_total"], 1, "{departed}");
    assert!(
        departed["findings"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&admin_user)),
        "{departed}"
    );
    assert!(evidence(departed).contains(&role_removed[0]));

    // The burst of failures; alerts are not applicable; the chain verifies.
    assert_eq!(result("failed_auth_bursts"), "fail");
    let failures = events_of(&auditor, "auth.failed").await;
    let bursts = evidence(control(&report, "failed_auth_bursts"));
    assert!(!bursts.is_empty() && bursts.iter().all(|b| failures.contains(b)));
    assert_eq!(result("alert_acknowledgement"), "not_applicable");
    assert_eq!(
        result("audit_chain"),
        "pass",
        "{}",
        control(&report, "audit_chain")
    );
    assert_eq!(
        content["summary"],
        json!({"pass": 3, "fail": 3, "not_applicable": 1})
    );

    // Every evidence id is an event of this organization's audit log.
    let mut checked = 0;
    for control in content["controls"].as_array().expect("controls") {
        for id in evidence(control) {
            let event = auditor.get(&format!("/api/v1/audit/logs/{id}")).await;
            assert_eq!(
                event.status, 200,
                "evidence {id} of {}: {}",
                control["id"], event.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} evidence ids");

    // The hash: SHA-256 of the report's canonical JSON, as compliance.report_generated records.
    let hash =
        hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(events::audit::canonical(content))[..]);
    assert_eq!(report["content_hash"], hash.as_str());
    let event_id = report["event_id"].as_str().expect("event id");
    let recorded = auditor.get(&format!("/api/v1/audit/logs/{event_id}")).await;
    assert_eq!(recorded.status, 200, "{}", recorded.body);
    assert_eq!(recorded.body["event_type"], "compliance.report_generated");
    assert_eq!(recorded.body["data"]["content_hash"], hash.as_str());
    assert_eq!(&recorded.body["data"]["report"], content);

    // Printable HTML, by query or by Accept.
    let id = report["id"].as_str().expect("id");
    for request in [
        auditor.request(
            reqwest::Method::GET,
            &format!("/api/v1/audit/compliance/{id}?format=html"),
        ),
        auditor
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/audit/compliance/{id}"),
            )
            .header("accept", "text/html"),
    ] {
        let page = request.send().await.expect("sent");
        assert_eq!(page.status(), 200);
        assert!(page
            .headers()
            .get("content-type")
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("text/html")));
        let text = page.text().await.expect("text");
        assert!(text.contains("SOC 2") && text.contains(&hash) && text.contains(&role_removed[0]));
        assert!(text.contains("Fail") && text.contains("Not applicable"));
    }

    // The list, newest first, in pages, without the content.
    let gdpr = generate(&tenant.owner, "gdpr", &this_month()).await;
    assert_eq!(
        control(&gdpr, "data_subject_requests")["result"],
        "not_applicable"
    );
    let first = auditor.get("/api/v1/audit/compliance?limit=1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["data"][0]["id"], gdpr["id"]);
    assert!(first.body["data"][0]["report"].is_null());
    let cursor = first.body["next_cursor"].as_str().expect("a second page");
    let second = auditor
        .get(&format!("/api/v1/audit/compliance?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["data"][0]["id"], report["id"]);
    assert_eq!(second.body["data"][0]["status"], "ready");
    assert_eq!(second.body["data"][0]["summary"], content["summary"]);
    assert!(second.body["next_cursor"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_roles_other_organizations_bad_input_and_hipaa_off_enterprise_are_refused() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "compliance-refusals").await;
    let other = Tenant::create(&admin, "compliance-other").await;
    lift_limits(&admin, &tenant).await;
    lift_limits(&admin, &other).await;
    let report = generate(&tenant.owner, "iso27001", &around_now()).await;
    let id = report["id"].as_str().expect("id").to_string();
    let body = json!({"framework": "soc2", "period": this_month()});

    // compliance:write is held by owner, admin and auditor; audit:read by the same three.
    for role in ["developer", "viewer", "billing_manager"] {
        let (_, key) = tenant.member_with_role(&admin, role).await;
        let weak = admin.with_token(&key);
        let error = weak
            .post("/api/v1/audit/compliance/generate", &body)
            .await
            .assert_client_error(403)
            .clone();
        assert_eq!(error["param"], "compliance:write", "{role}: {error}");
        weak.get("/api/v1/audit/compliance")
            .await
            .assert_client_error(403);
        weak.get(&format!("/api/v1/audit/compliance/{id}"))
            .await
            .assert_client_error(403);
    }
    let (_, admin_role_key) = tenant.member_with_role(&admin, "admin").await;
    let asked = admin
        .with_token(&admin_role_key)
        .post("/api/v1/audit/compliance/generate", &body)
        .await;
    assert_eq!(asked.status, 202, "admin: {}", asked.body);

    // Another organization: its report is 404, and so is naming the organization.
    other
        .owner
        .get(&format!("/api/v1/audit/compliance/{id}"))
        .await
        .assert_client_error(404);
    let theirs = other.owner.get("/api/v1/audit/compliance").await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.body["data"], json!([]));
    other
        .owner
        .post(
            "/api/v1/audit/compliance/generate",
            &json!({"org_id": tenant.org_id, "framework": "soc2", "period": this_month()}),
        )
        .await
        .assert_client_error(404);
    other
        .owner
        .get(&format!(
            "/api/v1/audit/compliance?org_id={}",
            tenant.org_id
        ))
        .await
        .assert_client_error(404);

    // Bad input: 400 in the OpenAI shape, naming the field.
    let owner = &tenant.owner;
    for (bad, param) in [
        (json!({"framework": "pci", "period": this_month()}), None),
        (json!({"period": this_month()}), None),
        (json!({"framework": "soc2"}), None),
        (
            json!({"framework": "soc2", "period": "last year"}),
            Some("period"),
        ),
        (
            json!({"framework": "soc2", "period": "2026-13"}),
            Some("period"),
        ),
        (
            json!({"framework": "soc2", "period": "2999"}),
            Some("period"),
        ),
        (
            json!({"framework": "soc2", "period": "2026-11-30/2026-11-01"}),
            Some("period"),
        ),
    ] {
        let error = owner
            .post("/api/v1/audit/compliance/generate", &bad)
            .await
            .assert_client_error(400)
            .clone();
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{bad}: {error}");
        }
    }
    owner
        .get(&format!("/api/v1/audit/compliance/{id}?format=pdf"))
        .await
        .assert_client_error(400);
    owner
        .get("/api/v1/audit/compliance?cursor=garbage")
        .await
        .assert_client_error(400);
    owner
        .get("/api/v1/audit/compliance/not-a-uuid")
        .await
        .assert_client_error(404);

    // HIPAA: Enterprise only, for the owner and the platform admin alike.
    let hipaa = json!({"framework": "hipaa", "period": this_month()});
    let error = owner
        .post("/api/v1/audit/compliance/generate", &hipaa)
        .await
        .assert_client_error(403)
        .clone();
    assert_eq!(error["code"], "plan_feature_required", "{error}");
    let as_admin = admin
        .post(
            "/api/v1/audit/compliance/generate",
            &json!({"org_id": tenant.org_id, "framework": "hipaa", "period": this_month()}),
        )
        .await;
    assert_eq!(as_admin.status, 403, "{}", as_admin.body);
    let enterprise = Tenant::create_on(&admin, "compliance-hipaa", "enterprise").await;
    lift_limits(&admin, &enterprise).await;
    let report = generate(&enterprise.owner, "hipaa", &around_now()).await;
    assert_eq!(report["report"]["framework"], "hipaa");
    assert!(control(&report, "audit_chain")["reference"]
        .as_str()
        .is_some_and(|r| r.contains("164.312(b)")));
}
