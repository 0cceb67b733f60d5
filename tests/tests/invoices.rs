//! Invoices: closing a month issues one invoice per organization with its plan fee, proration
//! lines and usage by model; closing again issues nothing; an invoice is paid once, for its exact
//! amount; replay rebuilds subscriptions, usage and invoices identical to the live ones.

use std::time::Duration;

use aihub::Roles;
use chrono::{DateTime, Utc};
use e2e::upstream::Upstream;
use e2e::{admin_key, wait_for, Api, Env, Tenant};
use platform::clock::Clock;
use platform::config::ProviderConfig;
use serde_json::{json, Value};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

const WEBHOOK_SECRET: &str = "whsec_test_payments";

/// A payment provider's notice, signed as `POST /billing/webhooks/payments` expects.
async fn notify_payment(api: &Api, secret: &str, age_seconds: i64, body: &Value) -> e2e::Reply {
    let raw = body.to_string();
    let signature = command_api::billing::webhook::sign(
        secret,
        Utc::now().timestamp() - age_seconds,
        raw.as_bytes(),
    )
    .expect("signs");
    api.send(
        api.http
            .post(api.url("/api/v1/billing/webhooks/payments"))
            .header("x-aihub-signature", signature)
            .header("content-type", "application/json")
            .body(raw),
    )
    .await
}

/// An environment whose gateway serves `gpt-4o-mini` from a local OpenRouter, with its clock
/// pinned to `now`.
async fn billing_env(now: &str, upstream: &Upstream) -> Env {
    let mut env = Env::new().await;
    env.config.clock = Clock::fixed(at(now));
    env.config.payment_webhook_secret = Some(WEBHOOK_SECRET.into());
    let catalog = json!([
        {"name": "gpt-4o-mini", "tier": "basic", "context_length": 128000, "input_micros_per_mtok": 150_000,
         "output_micros_per_mtok": 600_000, "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o-mini"}]},
        {"name": "llama-3-70b", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 590_000,
         "output_micros_per_mtok": 790_000, "deployments": [{"provider": "openrouter", "upstream_model": "meta-llama/llama-3-70b-instruct"}]}
    ]);
    let file = std::env::temp_dir().join(format!("aihub-models-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "or-test".into(),
    }];
    env
}

async fn chat(caller: &Api, model: &str) {
    let reply = caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Hello invoice"}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// `aihub billing close-period --period <period>` run as the real binary with its clock at `now`.
async fn close_period(env: &Env, period: &str, now: &str) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(e2e::aihub_binary());
    env.connect_command(command.as_std_mut());
    let output = command
        .args(["billing", "close-period", "--period", period])
        .env("AIHUB_FAKE_NOW", now)
        .output()
        .await
        .expect("aihub billing close-period runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn invoices_of(api: &Api) -> Vec<Value> {
    let list = api.get("/api/v1/billing/invoices").await;
    assert_eq!(list.status, 200, "{}", list.body);
    list.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_month_issues_each_organization_one_invoice_that_is_paid_once() {
    let upstream = Upstream::start().await;
    let env = billing_env("2026-11-11T10:00:00Z", &upstream).await;
    let (app, admin) = env.app().await;
    // Upgraded to Developer on the 11th.
    let payer = Tenant::create_on(&admin, "payer", "developer").await;
    let free = Tenant::create(&admin, "free").await;
    let key = admin_key(&admin, &payer.org_id, None, &["chat:write".into()]).await;
    let caller = admin.with_token(&key);
    for model in ["gpt-4o-mini", "gpt-4o-mini", "llama-3-70b"] {
        chat(&caller, model).await;
    }

    // Chat events are appended in batches just after the answers (the scheduled job's grace
    // covers this in production); an operator closing the month waits for them.
    wait_for(
        Duration::from_secs(30),
        "the chat events are in the journal",
        || async {
            env.count("SELECT count(*) FROM journal WHERE event_type LIKE 'chat.completion.%'")
                .await
                == 3
        },
    )
    .await;

    // November is not over on the 30th.
    let (ok, _, stderr) = close_period(&env, "2026-11", "2026-11-30T23:59:59Z").await;
    assert!(!ok && stderr.contains("has not ended"), "{stderr}");
    let (ok, _, stderr) = close_period(&env, "2026-13", "2026-12-01T02:00:00Z").await;
    assert!(!ok && stderr.contains("YYYY-MM"), "{stderr}");

    let (ok, stdout, stderr) = close_period(&env, "2026-11", "2026-12-01T02:00:00Z").await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 organizations, 2 invoices issued (19.33 USD), 0 already issued"),
        "{stdout}"
    );
    wait_for(
        Duration::from_secs(30),
        "the invoices are projected",
        // The two organizations' events may sit in different partitions.
        || async {
            !invoices_of(&payer.owner).await.is_empty()
                && !invoices_of(&free.owner).await.is_empty()
        },
    )
    .await;
    let invoices = invoices_of(&payer.owner).await;
    assert_eq!(
        invoices.len(),
        1,
        "one invoice per organization: {invoices:?}"
    );
    let invoice = &invoices[0];
    assert_eq!(
        (
            invoice["period"].as_str(),
            invoice["plan"].as_str(),
            invoice["status"].as_str()
        ),
        (Some("2026-11"), Some("free"), Some("open"))
    );
    let lines: Vec<(&str, i64)> = invoice["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or(""),
                l["amount_cents"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    // The fee of the plan in force on the 1st (Free), and 20/30 of Developer's $29.
    assert_eq!(lines, [("plan_fee", 0), ("proration", 1_933)]);
    assert_eq!(
        invoice["total_cents"], 1_933,
        "the total is the sum of the lines"
    );

    // The usage summary equals the usage API for the month, model by model.
    let usage = payer
        .owner
        .get("/api/v1/billing/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z&group_by=model")
        .await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let from_api: Vec<(String, i64, i64, i64)> = usage.body["data"]
        .as_array()
        .expect("usage rows")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_string(),
                r["requests"].as_i64().unwrap_or(-1),
                r["total_tokens"].as_i64().unwrap_or(-1),
                r["cost_micros"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let on_invoice: Vec<(String, i64, i64, i64)> = invoice["usage"]
        .as_array()
        .expect("usage summary")
        .iter()
        .map(|u| {
            (
                u["model"].as_str().unwrap_or_default().to_string(),
                u["requests"].as_i64().unwrap_or(-1),
                u["total_tokens"].as_i64().unwrap_or(-1),
                u["cost_micros"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(on_invoice.len(), 2, "{on_invoice:?}");
    assert_eq!(on_invoice[0].1 + on_invoice[1].1, 3);
    assert_eq!(on_invoice, from_api);

    // Filters: by month and by status; bad ones are 400.
    let filtered = |query: &'static str| {
        let owner = payer.owner.clone();
        async move {
            let reply = owner
                .get(&format!("/api/v1/billing/invoices?{query}"))
                .await;
            assert_eq!(reply.status, 200, "{query}: {}", reply.body);
            reply.body["data"].as_array().map(Vec::len).unwrap_or(0)
        }
    };
    assert_eq!(filtered("period=2026-11&status=open").await, 1);
    assert_eq!(filtered("period=2026-10").await, 0);
    assert_eq!(filtered("status=paid").await, 0);
    for bad in ["period=2026-13", "period=november", "status=void"] {
        let reply = payer
            .owner
            .get(&format!("/api/v1/billing/invoices?{bad}"))
            .await;
        reply.assert_client_error(400);
    }

    // Nothing to pay on Free: paid when issued.
    let free_invoices = invoices_of(&free.owner).await;
    assert_eq!(free_invoices.len(), 1);
    assert_eq!(
        (
            free_invoices[0]["total_cents"].as_i64(),
            free_invoices[0]["status"].as_str()
        ),
        (Some(0), Some("paid"))
    );

    // Closing again issues nothing.
    let (ok, stdout, _) = close_period(&env, "2026-11", "2026-12-02T00:00:00Z").await;
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains(
            "0 invoices issued (0.00 USD), 2 already issued; the period was already closed"
        ),
        "{stdout}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE event_type = 'invoice.issued'")
            .await,
        2
    );

    let id = invoice["id"].as_str().expect("id").to_string();
    let pay = format!("/api/v1/billing/invoices/{id}/pay");
    // A tenant does not mark its own invoice paid: payments come from the platform admin or a
    // payment provider's signed webhook.
    let own = payer
        .owner
        .post(
            &pay,
            &json!({"amount_cents": 1_933, "reference": "self-paid"}),
        )
        .await;
    assert_eq!(
        own.assert_client_error(403)["code"],
        "platform_admin_required"
    );
    for (body, param) in [
        (
            json!({"amount_cents": 1_900, "reference": "wire-1"}),
            "amount_cents",
        ),
        (
            json!({"amount_cents": -1_933, "reference": "wire-1"}),
            "amount_cents",
        ),
        (
            json!({"amount_cents": 1_933, "reference": "  "}),
            "reference",
        ),
    ] {
        let refused = admin.post(&pay, &body).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.body);
        assert_eq!(refused.body["error"]["param"], param, "{}", refused.body);
    }
    for body in [
        json!({"amount_cents": 19.33, "reference": "wire-1"}),
        json!({"amount_cents": "1933", "reference": "wire-1"}),
        json!({"reference": "wire-1"}),
    ] {
        admin.post(&pay, &body).await.assert_client_error(400);
    }
    // Another organization cannot see it, let alone pay it.
    free.owner
        .post(&pay, &json!({"amount_cents": 1_933, "reference": "x"}))
        .await
        .assert_client_error(404);
    free.owner
        .get(&format!("/api/v1/billing/invoices/{id}"))
        .await
        .assert_client_error(404);

    // The provider's webhook: only a fresh signature over this very body under our secret counts.
    let notice = json!({"invoice_id": id, "amount_cents": 1_933, "reference": "wire-1"});
    let anonymous = Api {
        token: String::new(),
        ..admin.clone()
    };
    for (secret, age) in [
        ("whsec_forged", 0),
        (WEBHOOK_SECRET, 3_600),
        (WEBHOOK_SECRET, -3_600),
    ] {
        let refused = notify_payment(&anonymous, secret, age, &notice).await;
        assert_eq!(
            refused.assert_client_error(401)["code"],
            "invalid_signature"
        );
    }
    let unsigned = anonymous
        .send(
            anonymous
                .http
                .post(anonymous.url("/api/v1/billing/webhooks/payments"))
                .json(&notice),
        )
        .await;
    assert_eq!(
        unsigned.assert_client_error(401)["code"],
        "invalid_signature"
    );
    let paid = notify_payment(&anonymous, WEBHOOK_SECRET, 0, &notice).await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.body["status"], "paid");
    // A provider retrying the same notice gets the same answer; nothing is recorded twice.
    let retried = notify_payment(&anonymous, WEBHOOK_SECRET, 0, &notice).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["payment_reference"], "wire-1");
    let again = admin
        .post(&pay, &json!({"amount_cents": 1_933, "reference": "wire-2"}))
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.body["error"]["code"], "invoice_already_paid");
    let other = notify_payment(
        &anonymous,
        WEBHOOK_SECRET,
        0,
        &json!({"invoice_id": id, "amount_cents": 1_933, "reference": "wire-3"}),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.body);
    let shown = payer
        .owner
        .get(&format!("/api/v1/billing/invoices/{id}"))
        .await;
    assert_eq!(
        (
            shown.body["status"].as_str(),
            shown.body["paid_cents"].as_i64(),
            shown.body["payment_reference"].as_str()
        ),
        (Some("paid"), Some(1_933), Some("wire-1")),
        "{}",
        shown.body
    );
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE event_type = 'invoice.paid'")
            .await,
        1
    );

    // Replay rebuilds subscriptions, usage and invoices identical to the live ones.
    env.wait_until_projected(Duration::from_secs(60)).await;
    let tables = [
        ("read.subscriptions", "id"),
        ("read.subscription_charges", "event_id"),
        ("read.chat_calls", "event_id"),
        ("read.invoices", "id"),
    ];
    let mut live = Vec::new();
    for (table, order) in tables {
        live.push(env.dump(table, order).await);
    }
    assert!(live.iter().all(|rows| !rows.is_empty()));
    app.stop().await;
    let output = env
        .aihub_command(e2e::aihub_binary())
        .args(["replay", "--all"])
        .output()
        .await
        .expect("aihub replay runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for ((table, order), before) in tables.into_iter().zip(live) {
        assert_eq!(env.dump(table, order).await, before, "{table} after replay");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_job_invoices_last_month_once_it_is_over() {
    let upstream = Upstream::start().await;
    let mut env = billing_env("2026-10-20T10:00:00Z", &upstream).await;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "scheduled", "pro").await;
    app.stop().await;

    // Two instances, both running the job, on the 1st of December: October and November are
    // over, but only the month just ended is the job's to close.
    env.config.clock = Clock::fixed(at("2026-12-01T03:00:00Z"));
    env.config.billing_close_every = Duration::from_millis(200);
    let first = env.start(Roles::all()).await;
    let second = env
        .start(Roles {
            command_api: true,
            ..Roles::none()
        })
        .await;
    let owner = env.api(&first).with_token(&tenant.owner.token);
    wait_for(
        Duration::from_secs(30),
        "the job issues November's invoice",
        || async { !invoices_of(&owner).await.is_empty() },
    )
    .await;
    // Both instances have run the job a few more times meanwhile.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let invoices = invoices_of(&owner).await;
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    assert_eq!(invoices[0]["period"], "2026-11");
    // Pro since October 20th: November pays the full fee, nothing prorated.
    assert_eq!(invoices[0]["lines"][0]["amount_cents"], 9_900);
    assert_eq!(invoices[0]["total_cents"], 9_900);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE event_type = 'billing.period_closed'")
            .await,
        1
    );
    second.stop().await;
    first.stop().await;
}
