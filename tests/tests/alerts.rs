//! Alerting end to end: an alert rule on the error rate fires when the upstream provider starts
//! failing, notifies a signed webhook (down at first, reached once it is back), a Slack-shaped
//! receiver and a real SMTP server (aiosmtpd), is acknowledged, and resolves when the provider
//! recovers; every step is an event on the topic with its actor and correlation id. Around it:
//! weak roles, other organizations, plans, bad input, and a tenant's webhook to an internal
//! address, refused and never contacted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use e2e::upstream::{Behavior, Upstream};
use e2e::{wait_for, Api, Env, Tenant};
use events::{ActorType, EventEnvelope, EventPayload};
use hmac::{Hmac, KeyInit, Mac};
use platform::config::ProviderConfig;
use rdkafka::message::Message;
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

/// Requests an HTTP receiver got: headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A local HTTP receiver on `port` answering 200 to every `POST`, recording what it got.
async fn receiver(port: u16, received: Received) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let received = received.clone();
        async move {
            received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((headers, body));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("receiver port");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn got(received: &Received) -> Vec<(HeaderMap, Bytes)> {
    received.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// aiosmtpd, the real SMTP server, delivering into a maildir; killed when dropped.
struct Smtp {
    port: u16,
    maildir: PathBuf,
    _process: tokio::process::Child,
}

impl Smtp {
    async fn start() -> Smtp {
        let python = std::env::var("AIOSMTPD").unwrap_or_else(|_| {
            format!(
                "{}/.cache/aihub/aiosmtpd-1.4.6/bin/python",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let port = e2e::free_port();
        let maildir = std::env::temp_dir().join(format!("aihub-mail-{}", uuid::Uuid::now_v7()));
        let process = tokio::process::Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{python} runs aiosmtpd (infra/local/lib.sh ensure_aiosmtpd): {e}")
            });
        wait_for(Duration::from_secs(20), "aiosmtpd listens", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Smtp {
            port,
            maildir,
            _process: process,
        }
    }

    /// The messages delivered so far, as text.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return vec![];
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

struct Alerting {
    env: Env,
    _app: aihub::Running,
    admin: Api,
    upstream: Upstream,
}

/// AI Hub evaluating every 300 ms, retrying notifications after 300 ms (doubling), with the
/// SMTP server `smtp` and `allow_loopback` deciding whether webhooks may reach 127.0.0.1.
async fn alerting_env(smtp: Option<u16>, allow_loopback: bool) -> Alerting {
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = e2e::one_model_catalog(2_500_000, 10_000_000);
    let gateway = &mut env.config.gateway;
    gateway.models_file = Some(catalog.display().to_string());
    gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "or-test".into(),
    }];
    // The failures must reach the provider every time: no breaker opens.
    gateway.breaker_failures = 1_000;
    env.config.alert_eval = Duration::from_millis(300);
    env.config.notify_backoff = Duration::from_millis(300);
    env.config.smtp_url = smtp.map(|port| format!("smtp://127.0.0.1:{port}"));
    env.config.webhook_allow_networks = allow_loopback
        .then(|| platform::config::Networks(vec!["127.0.0.1/32".parse().expect("network")]));
    let (app, admin) = env.app().await;
    Alerting {
        env,
        _app: app,
        admin,
        upstream,
    }
}

async fn tenant_on(admin: &Api, plan: &str) -> Tenant {
    let tenant = match plan {
        "free" => Tenant::create(admin, "alerts").await,
        _ => Tenant::create_on(admin, "alerts", plan).await,
    };
    let lifted = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 100_000, "tokens_per_minute": 10_000_000}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    tenant
}

async fn chat(caller: &Api) -> u16 {
    caller
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5}),
        )
        .await
        .status
}

/// The alerts of the tenant in `status`.
async fn alerts(caller: &Api, status: &str) -> Vec<Value> {
    let reply = caller
        .get(&format!("/api/v1/monitoring/alerts?status={status}"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) {
    let timestamp = headers
        .get("x-aihub-timestamp")
        .and_then(|v| v.to_str().ok())
        .expect("timestamp header");
    let signature = headers
        .get("x-aihub-signature")
        .and_then(|v| v.to_str().ok())
        .expect("signature header");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(signature, expected, "the HMAC over timestamp.body verifies");
    let mut forged = Hmac::<Sha256>::new_from_slice(b"another secret").expect("key");
    forged.update(timestamp.as_bytes());
    forged.update(b".");
    forged.update(body);
    assert_ne!(
        signature,
        format!("v1={}", hex::encode(forged.finalize().into_bytes()))
    );
}

#[tokio::test]
async fn an_error_rate_rule_fires_notifies_every_channel_is_acknowledged_and_resolves() {
    let smtp = Smtp::start().await;
    let a = alerting_env(Some(smtp.port), true).await;
    let tenant = tenant_on(&a.admin, "pro").await;
    let owner = &tenant.owner;

    let slack: Received = Arc::default();
    let slack_port = e2e::free_port();
    let _slack = receiver(slack_port, slack.clone()).await;
    // The webhook receiver is down at first: nothing listens on its port yet.
    let hook: Received = Arc::default();
    let hook_port = e2e::free_port();

    let created = owner
        .post(
            "/api/v1/monitoring/alert-rules",
            &json!({
                "name": "Error rate over half",
                "metric": "chat.error_rate",
                "filter": {"model": "gpt-4o"},
                "condition": ">",
                "threshold": 0.5,
                "window_seconds": 120,
                "for_seconds": 1,
                "severity": "critical",
                "channels": [
                    {"type": "webhook", "url": format!("http://127.0.0.1:{hook_port}/hooks/aihub")},
                    {"type": "slack", "url": format!("http://127.0.0.1:{slack_port}/services/T0/B0/x")},
                    {"type": "email", "to": ["oncall@example.com"]}
                ]
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let rule_id = created.body["id"].as_str().expect("id").to_string();
    let secret = created.body["signing_secret"]
        .as_str()
        .expect("the secret, once")
        .to_string();
    assert!(secret.starts_with("whsec_"));
    let shown = owner
        .get(&format!("/api/v1/monitoring/alert-rules/{rule_id}"))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.get("signing_secret").is_none(), "{}", shown.body);
    assert!(!shown.body.to_string().contains(&secret));
    assert_eq!(shown.body["secret_hint"], secret[secret.len() - 4..]);
    let listed = owner.get("/api/v1/monitoring/alert-rules").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["data"][0]["id"], rule_id.as_str());
    assert!(!listed.body.to_string().contains(&secret));

    // Healthy traffic: nothing fires.
    for _ in 0..3 {
        assert_eq!(chat(owner).await, 200);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(alerts(owner, "firing").await.is_empty());

    // The provider starts failing.
    let mut failed = 0;
    while failed < 8 {
        a.upstream.push(Behavior::Status(500));
        if chat(owner).await != 200 {
            failed += 1;
        }
    }
    wait_for(Duration::from_secs(60), "the alert fires", || async {
        alerts(owner, "firing").await.len() == 1
    })
    .await;
    let alert = alerts(owner, "firing").await.remove(0);
    let alert_id = alert["id"].as_str().expect("id").to_string();
    assert_eq!(alert["rule_id"], rule_id.as_str());
    assert_eq!(alert["severity"], "critical");
    assert!(alert["value"].as_f64().expect("value") > 0.5, "{alert}");

    // Slack and email get it at once.
    wait_for(
        Duration::from_secs(30),
        "the Slack receiver gets the alert",
        || async { !got(&slack).is_empty() },
    )
    .await;
    let (_, body) = got(&slack).remove(0);
    let text: Value = serde_json::from_slice(&body).expect("json");
    let line = text["text"].as_str().expect("Slack's text field");
    assert!(
        line.contains("Error rate over half") && line.contains("firing"),
        "{line}"
    );
    wait_for(
        Duration::from_secs(30),
        "the SMTP server gets the email",
        || async { !smtp.messages().is_empty() },
    )
    .await;
    let mail = smtp.messages().remove(0);
    assert!(mail.contains("oncall@example.com"), "{mail}");
    assert!(mail.contains("Error rate over half"), "{mail}");

    // The webhook failed while its receiver was down ...
    wait_for(
        Duration::from_secs(30),
        "a failed webhook attempt in the history",
        || async {
            let shown = owner
                .get(&format!("/api/v1/monitoring/alerts/{alert_id}"))
                .await;
            shown.body["history"].as_array().is_some_and(|h| {
                h.iter().any(|e| {
                    e["event_type"] == "notification.failed" && e["data"]["channel"] == "webhook"
                })
            })
        },
    )
    .await;
    assert!(got(&hook).is_empty());
    // ... and gets the message once it is back.
    let _hook = receiver(hook_port, hook.clone()).await;
    wait_for(
        Duration::from_secs(60),
        "the webhook receiver gets the alert",
        || async { !got(&hook).is_empty() },
    )
    .await;
    let (headers, body) = got(&hook).remove(0);
    verify_signature(&secret, &headers, &body);
    let message: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(message["type"], "alert.triggered");
    assert_eq!(message["alert"]["id"], alert_id.as_str());
    assert_eq!(message["alert"]["rule_id"], rule_id.as_str());
    assert_eq!(message["alert"]["status"], "firing");
    assert!(headers.get("x-aihub-delivery").is_some());

    // Weak roles cannot acknowledge; another organization does not see it.
    let (_, developer_key) = tenant.member_with_role(&a.admin, "developer").await;
    let developer = a.admin.with_token(&developer_key);
    let refused = developer
        .put(
            &format!("/api/v1/monitoring/alerts/{alert_id}/acknowledge"),
            &json!({}),
        )
        .await;
    refused.assert_client_error(403);
    let seen = developer
        .get(&format!("/api/v1/monitoring/alerts/{alert_id}"))
        .await;
    assert_eq!(
        seen.status, 200,
        "a developer reads monitoring: {}",
        seen.body
    );
    let other = tenant_on(&a.admin, "pro").await;
    for path in [
        format!("/api/v1/monitoring/alerts/{alert_id}"),
        format!("/api/v1/monitoring/alert-rules/{rule_id}"),
    ] {
        other.owner.get(&path).await.assert_client_error(404);
    }
    other
        .owner
        .put(
            &format!("/api/v1/monitoring/alerts/{alert_id}/acknowledge"),
            &json!({}),
        )
        .await
        .assert_client_error(404);
    other
        .owner
        .put(
            &format!("/api/v1/monitoring/alert-rules/{rule_id}"),
            &json!({"threshold": 0.9}),
        )
        .await
        .assert_client_error(404);
    other
        .owner
        .delete(&format!("/api/v1/monitoring/alert-rules/{rule_id}"))
        .await
        .assert_client_error(404);
    assert!(alerts(&other.owner, "firing").await.is_empty());

    // The owner acknowledges it, with a note.
    let acked = owner
        .put(
            &format!("/api/v1/monitoring/alerts/{alert_id}/acknowledge"),
            &json!({"note": "provider incident, failing over"}),
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert_eq!(acked.body["status"], "acknowledged");
    assert_eq!(acked.body["note"], "provider incident, failing over");
    assert_eq!(acked.body["acknowledged_by"]["type"], "api_key");
    owner
        .put(
            &format!("/api/v1/monitoring/alerts/{alert_id}/acknowledge"),
            &json!({}),
        )
        .await
        .assert_client_error(409);
    assert_eq!(alerts(owner, "acknowledged").await.len(), 1);

    // The provider recovers: answered calls bring the rate under the threshold, and the alert
    // resolves.
    let mut resolved = false;
    for _ in 0..40 {
        for _ in 0..4 {
            assert_eq!(chat(owner).await, 200);
        }
        if alerts(owner, "resolved").await.len() == 1 {
            resolved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(resolved, "the alert resolved once the provider recovered");
    wait_for(
        Duration::from_secs(30),
        "the resolution reaches Slack, email and the webhook",
        || async { got(&slack).len() >= 2 && smtp.messages().len() >= 2 && got(&hook).len() >= 2 },
    )
    .await;
    let (headers, body) = got(&hook).remove(1);
    verify_signature(&secret, &headers, &body);
    let message: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(message["type"], "alert.resolved");

    // Its history, and every step as an event on the topic with actor and correlation id.
    let shown = owner
        .get(&format!("/api/v1/monitoring/alerts/{alert_id}"))
        .await;
    assert_eq!(shown.body["status"], "resolved", "{}", shown.body);
    let kinds: Vec<&str> = shown.body["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    for kind in [
        "alert.triggered",
        "alert.acknowledged",
        "alert.resolved",
        "notification.delivered",
        "notification.failed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let events = alert_events(&a.env, |events| {
        events
            .iter()
            .filter(|e| e.event_type() == "notification.delivered")
            .count()
            >= 6
    })
    .await;
    let of = |kind: &str| -> Vec<&EventEnvelope> {
        events.iter().filter(|e| e.event_type() == kind).collect()
    };
    let rule_created = of("alert_rule.created");
    assert_eq!(rule_created.len(), 1);
    assert_eq!(rule_created[0].actor.kind, ActorType::ApiKey);
    let triggered = of("alert.triggered");
    assert_eq!(triggered.len(), 1, "one alert, no flapping");
    assert_eq!(triggered[0].actor.kind, ActorType::System);
    assert_eq!(triggered[0].correlation_id, format!("alert-{alert_id}"));
    let acknowledged = of("alert.acknowledged");
    assert_eq!(acknowledged[0].actor.kind, ActorType::ApiKey);
    assert!(!acknowledged[0].correlation_id.is_empty());
    match &acknowledged[0].payload {
        EventPayload::AlertAcknowledged(a) => {
            assert_eq!(a.note.as_deref(), Some("provider incident, failing over"))
        }
        other => panic!("{other:?}"),
    }
    let resolved = of("alert.resolved");
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].actor.kind, ActorType::System);
    assert_eq!(resolved[0].correlation_id, format!("alert-{alert_id}"));
    for e in of("notification.delivered")
        .into_iter()
        .chain(of("notification.failed"))
    {
        assert_eq!(e.actor.kind, ActorType::System);
        assert_eq!(e.correlation_id, format!("alert-{alert_id}"));
        assert!(e.causation_id.is_some());
    }
    assert!(
        !of("notification.failed").is_empty(),
        "the webhook's first attempts failed"
    );
}

/// The alerting events on the test's topic once `enough` says so.
async fn alert_events(env: &Env, enough: impl Fn(&[EventEnvelope]) -> bool) -> Vec<EventEnvelope> {
    let decode = |m: &rdkafka::message::OwnedMessage| {
        m.payload()
            .and_then(|p| EventEnvelope::decode(p).ok())
            .filter(|e| {
                let t = e.event_type();
                t.starts_with("alert") || t.starts_with("notification.")
            })
    };
    let messages = e2e::kafka::read_until(
        &env.config.kafka,
        &env.config.topic,
        Duration::from_secs(60),
        |seen| enough(&seen.iter().filter_map(decode).collect::<Vec<_>>()),
    )
    .await;
    messages.iter().filter_map(decode).collect()
}

#[tokio::test]
async fn a_tenants_webhook_to_an_internal_address_is_refused_and_never_contacted() {
    // No allowance for loopback: the operator did not set AIHUB_WEBHOOK_ALLOW_NETWORKS.
    let a = alerting_env(None, false).await;
    let tenant = tenant_on(&a.admin, "enterprise").await;
    let hits: Received = Arc::default();
    let port = e2e::free_port();
    let _listening = receiver(port, hits.clone()).await;
    let created = tenant
        .owner
        .post(
            "/api/v1/monitoring/alert-rules",
            // No calls at all: `no_data` fires at the first evaluation.
            &json!({"name": "silence", "metric": "chat.requests", "condition": "no_data",
                    "window_seconds": 60, "channels": [
                        {"type": "webhook", "url": format!("http://127.0.0.1:{port}/steal")},
                        {"type": "slack", "url": format!("http://localhost:{port}/steal")}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    wait_for(Duration::from_secs(30), "the alert fires", || async {
        alerts(&tenant.owner, "firing").await.len() == 1
    })
    .await;
    let alert_id = alerts(&tenant.owner, "firing").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let events = alert_events(&a.env, |events| {
        events
            .iter()
            .filter(|e| e.event_type() == "notification.failed")
            .count()
            >= 2
    })
    .await;
    for e in events
        .iter()
        .filter(|e| e.event_type() == "notification.failed")
    {
        let EventPayload::NotificationFailed(failed) = &e.payload else {
            unreachable!()
        };
        assert!(
            failed.error.contains("internal address"),
            "{}",
            failed.error
        );
        assert!(failed.next_attempt_at.is_none(), "refused, not retried");
        assert_eq!(failed.alert_id.to_string(), alert_id);
    }
    // Give a wrong implementation time to retry, then check nothing ever arrived.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(got(&hits).is_empty(), "the internal receiver was contacted");
    assert!(!events
        .iter()
        .any(|e| e.event_type() == "notification.delivered"));
}

#[tokio::test]
async fn weak_roles_plans_and_bad_input_get_4xx_in_the_openai_shape() {
    let a = alerting_env(None, true).await;
    let tenant = tenant_on(&a.admin, "pro").await;
    let rule = json!({"name": "errors", "metric": "chat.error_rate", "condition": ">=", "threshold": 0.1,
                      "window_seconds": 300});
    // Weak roles cannot create rules.
    for role in ["developer", "viewer"] {
        let (_, key) = tenant.member_with_role(&a.admin, role).await;
        let weak = a.admin.with_token(&key);
        let refused = weak.post("/api/v1/monitoring/alert-rules", &rule).await;
        let error = refused.assert_client_error(403);
        assert_ne!(error["code"], "plan_feature_required");
        let listed = weak.get("/api/v1/monitoring/alert-rules").await;
        assert_eq!(listed.status, 200, "{role} reads rules: {}", listed.body);
    }
    // Free and Developer plans have no alerting.
    for plan in ["free", "developer"] {
        let small = tenant_on(&a.admin, plan).await;
        for reply in [
            small
                .owner
                .post("/api/v1/monitoring/alert-rules", &rule)
                .await,
            small.owner.get("/api/v1/monitoring/alert-rules").await,
            small.owner.get("/api/v1/monitoring/alerts").await,
        ] {
            let error = reply.assert_client_error(403);
            assert_eq!(error["code"], "plan_feature_required", "{plan}");
        }
    }
    // Bad input.
    let owner = &tenant.owner;
    let bad = [
        (json!({"metric": "chat.nonsense"}), "metric"),
        (json!({"window_seconds": 0}), "window_seconds"),
        (json!({"window_seconds": 999_999}), "window_seconds"),
        (json!({"threshold": "high"}), ""),
        (json!({"condition": "!="}), ""),
        (json!({"filter": {"colour": "red"}}), "filter"),
        (json!({"filter": {"api_key": "not-a-uuid"}}), "filter"),
        (json!({"name": "  "}), "name"),
        (
            json!({"channels": [{"type": "webhook", "url": "ftp://example.com/x"}]}),
            "channels",
        ),
        (
            json!({"channels": [{"type": "email", "to": ["not an address"]}]}),
            "channels",
        ),
        (json!({"channels": [{"type": "pager"}]}), ""),
    ];
    for (patch, param) in bad {
        let mut body = rule.clone();
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let reply = owner.post("/api/v1/monitoring/alert-rules", &body).await;
        let error = reply.assert_client_error(400);
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{body}");
        }
    }
    let created = owner.post("/api/v1/monitoring/alert-rules", &rule).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_string();
    owner
        .put(
            &format!("/api/v1/monitoring/alert-rules/{id}"),
            &json!({"window_seconds": 0}),
        )
        .await
        .assert_client_error(400);
    let updated = owner
        .put(
            &format!("/api/v1/monitoring/alert-rules/{id}"),
            &json!({"threshold": 0.25, "severity": "info"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["threshold"], 0.25);
    assert_eq!(updated.body["metric"], "chat.error_rate");
    assert!(updated.body.get("signing_secret").is_none());
    let unknown = uuid::Uuid::now_v7();
    for reply in [
        owner
            .get(&format!("/api/v1/monitoring/alert-rules/{unknown}"))
            .await,
        owner
            .get(&format!("/api/v1/monitoring/alerts/{unknown}"))
            .await,
        owner.get("/api/v1/monitoring/alerts/not-a-uuid").await,
        owner
            .put(
                &format!("/api/v1/monitoring/alerts/{unknown}/acknowledge"),
                &json!({}),
            )
            .await,
    ] {
        reply.assert_client_error(404);
    }
    owner
        .get("/api/v1/monitoring/alerts?status=sleeping")
        .await
        .assert_client_error(400);
    owner
        .get("/api/v1/monitoring/alert-rules?limit=0")
        .await
        .assert_client_error(400);
    let deleted = owner
        .delete(&format!("/api/v1/monitoring/alert-rules/{id}"))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    owner
        .get(&format!("/api/v1/monitoring/alert-rules/{id}"))
        .await
        .assert_client_error(404);
    owner
        .delete(&format!("/api/v1/monitoring/alert-rules/{id}"))
        .await
        .assert_client_error(404);
    let events = alert_events(&a.env, |events| {
        events
            .iter()
            .any(|e| e.event_type() == "alert_rule.deleted")
    })
    .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        kinds,
        [
            "alert_rule.created",
            "alert_rule.updated",
            "alert_rule.deleted"
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.actor.kind == ActorType::ApiKey && !e.correlation_id.is_empty()));
}

#[tokio::test]
async fn two_processes_raise_one_alert_a_pending_notification_survives_a_restart_and_a_replay_resends_nothing(
) {
    let a = alerting_env(None, true).await;
    // A second process of the same platform: both run the projectors role, one leads alerting.
    let second = a.env.start(aihub::Roles::all()).await;
    let tenant = tenant_on(&a.admin, "pro").await;
    let hits: Received = Arc::default();
    let port = e2e::free_port();
    let created = tenant
        .owner
        .post(
            "/api/v1/monitoring/alert-rules",
            &json!({"name": "quiet", "metric": "chat.requests", "condition": "no_data",
                    "window_seconds": 60,
                    "channels": [{"type": "slack", "url": format!("http://127.0.0.1:{port}/quiet")}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // The receiver is down: attempts fail and are retried.
    let failed = alert_events(&a.env, |events| {
        events
            .iter()
            .filter(|e| e.event_type() == "notification.failed")
            .count()
            >= 2
    })
    .await;
    let EventPayload::NotificationFailed(first) = &failed
        .iter()
        .find(|e| e.event_type() == "notification.failed")
        .expect("failed")
        .payload
    else {
        unreachable!()
    };
    assert!(
        first.next_attempt_at.is_some(),
        "a receiver that is down is retried"
    );
    // Both processes stop; the notification is still owed.
    let Alerting { env, _app: app, .. } = a;
    app.stop().await;
    second.stop().await;
    let _receiver = receiver(port, hits.clone()).await;
    let restarted = env.start(aihub::Roles::all()).await;
    wait_for(
        Duration::from_secs(60),
        "the owed notification arrives after the restart",
        || async { !got(&hits).is_empty() },
    )
    .await;
    let events = alert_events(&env, |events| {
        events
            .iter()
            .any(|e| e.event_type() == "notification.delivered")
    })
    .await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type() == "alert.triggered")
            .count(),
        1,
        "two processes, one leader, one alert"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(got(&hits).len(), 1, "delivered once");

    // A rebuild of the alerting projection gives the same rows and sends nothing again.
    env.wait_until_projected(Duration::from_secs(60)).await;
    restarted.stop().await;
    let tables = [
        ("read.alert_rules", "id"),
        ("read.alerts", "id"),
        ("read.alert_history", "event_id"),
        ("alert_notifications", "id"),
    ];
    let mut live = Vec::new();
    for (table, order) in tables {
        live.push(env.dump(table, order).await);
    }
    assert!(live.iter().all(|rows| !rows.is_empty()));
    let output = env
        .aihub_command(e2e::aihub_binary())
        .args(["replay", "--projection", "alerting"])
        .output()
        .await
        .expect("aihub replay runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for ((table, order), rows) in tables.into_iter().zip(&live) {
        assert_eq!(
            &env.dump(table, order).await,
            rows,
            "{table} after the replay"
        );
    }
    let again = env.start(aihub::Roles::all()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(got(&hits).len(), 1, "nothing sent again after the replay");
    again.stop().await;
}

#[tokio::test]
async fn a_rule_of_an_organization_without_alerting_is_not_evaluated_until_it_upgrades() {
    let a = alerting_env(None, true).await;
    let tenant = tenant_on(&a.admin, "free").await;
    // The platform admin may define a rule for any organization; a Free one's stays paused.
    let created = a
        .admin
        .post(
            "/api/v1/monitoring/alert-rules",
            &json!({"org_id": tenant.org_id, "name": "quiet", "metric": "chat.requests",
                    "condition": "no_data", "window_seconds": 60}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let firing = format!(
        "/api/v1/monitoring/alerts?status=firing&org_id={}",
        tenant.org_id
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let none = a.admin.get(&firing).await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(
        none.body["data"],
        json!([]),
        "a Free organization's rule fired"
    );
    let upgraded = a
        .admin
        .put(
            &format!("/api/v1/subscriptions/{}/upgrade", tenant.org_id),
            &json!({"plan": "pro"}),
        )
        .await;
    assert_eq!(upgraded.status, 200, "{}", upgraded.body);
    wait_for(
        Duration::from_secs(30),
        "the rule fires once the plan has alerting",
        || async {
            a.admin.get(&firing).await.body["data"]
                .as_array()
                .is_some_and(|d| d.len() == 1)
        },
    )
    .await;
}

/// A rule may name a custom metric of the organization's own (here a gauge it pushes): it fires
/// when its points cross the threshold, filtered by the metric's own labels. Another
/// organization's metric id is unknown to a rule (400), and that organization's points never
/// reach this rule.
#[tokio::test]
async fn a_rule_on_a_custom_metric_fires_on_the_organizations_own_points_only() {
    let a = alerting_env(None, true).await;
    let mine = tenant_on(&a.admin, "pro").await;
    let other = tenant_on(&a.admin, "pro").await;
    let gauge = |owner: &Api| {
        let owner = owner.clone();
        async move {
            let reply = owner
                .post(
                    "/api/v1/monitoring/metrics",
                    &json!({"name": "queue depth", "kind": "gauge"}),
                )
                .await;
            assert_eq!(reply.status, 201, "{}", reply.body);
            reply.body["id"].as_str().expect("id").to_string()
        }
    };
    let my_gauge = gauge(&mine.owner).await;
    let their_gauge = gauge(&other.owner).await;
    let rule = |metric: &str| {
        json!({"name": "queue too deep", "metric": metric, "filter": {"queue": "jobs"},
               "condition": ">", "threshold": 5, "window_seconds": 60})
    };

    // Another organization's metric, and an id that is no metric, are unknown.
    for metric in [their_gauge.clone(), Uuid::now_v7().to_string()] {
        let refused = mine
            .owner
            .post("/api/v1/monitoring/alert-rules", &rule(&metric))
            .await;
        let error = refused.assert_client_error(400);
        assert_eq!(error["code"], "unknown_metric", "{}", refused.body);
    }
    let created = mine
        .owner
        .post("/api/v1/monitoring/alert-rules", &rule(&my_gauge))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let rule_id = created.body["id"].as_str().expect("id").to_string();

    let push = |owner: &Api, metric: &str, id: &str, queue: &str, value: f64| {
        let (owner, metric, id, queue) = (
            owner.clone(),
            metric.to_string(),
            id.to_string(),
            queue.to_string(),
        );
        async move {
            let reply = owner
                .post(
                    &format!("/api/v1/monitoring/metrics/{metric}/data"),
                    &json!({"points": [{"id": id, "t": chrono::Utc::now().to_rfc3339(),
                                        "value": value, "labels": {"queue": queue}}]}),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    };
    // Deep queues in the other organization's gauge, and in a queue the filter leaves out.
    push(&other.owner, &their_gauge, "o-1", "jobs", 50.0).await;
    push(&mine.owner, &my_gauge, "m-1", "mail", 50.0).await;
    push(&mine.owner, &my_gauge, "m-2", "jobs", 1.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        alerts(&mine.owner, "firing").await.is_empty(),
        "fired on points the rule does not cover"
    );
    // Its own queue gets deep: the average of the minute crosses 5.
    push(&mine.owner, &my_gauge, "m-3", "jobs", 100.0).await;
    wait_for(
        Duration::from_secs(30),
        "the rule on the custom metric fires",
        || async { alerts(&mine.owner, "firing").await.len() == 1 },
    )
    .await;
    let firing = alerts(&mine.owner, "firing").await;
    assert_eq!(firing[0]["rule_id"], rule_id.as_str(), "{firing:?}");
    assert!(alerts(&other.owner, "firing").await.is_empty());
}
