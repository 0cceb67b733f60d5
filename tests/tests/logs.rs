//! Logs a request can be followed by: every line written while serving a request, including by
//! the stream relay that outlives its handler, carries the request id, the caller's organization
//! and the route; the ids of the events a request writes are logged.

use std::time::Duration;

use e2e::upstream::Upstream;
use e2e::{admin_key, wait_for, Env, Tenant};
use serde_json::{json, Value};

#[tokio::test]
async fn log_lines_inside_a_request_name_its_id_org_and_route_and_the_events_written() {
    let upstream = Upstream::start().await;
    let env = Env::new().await;
    let file = e2e::one_model_catalog(1, 1);
    let port = e2e::free_port();
    let log_path = std::env::temp_dir().join(format!("aihub-logs-test-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = env
        .serve_command(port, &file, &upstream.openai_base_url())
        .env("AIHUB_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,gateway=debug,platform=debug")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("aihub serve starts");
    let admin = env.serving_at(port).await;
    let tenant = Tenant::create_on(&admin, "logs", "pro").await;

    // A write: its event id is logged inside the request's span.
    let write_id = format!("logs-write-{}", uuid::Uuid::now_v7());
    let created = tenant
        .owner
        .send(
            tenant
                .owner
                .request(reqwest::Method::POST, "/api/v1/teams")
                .header("x-request-id", &write_id)
                .json(&json!({"name": "observability"})),
        )
        .await;
    assert!(created.status < 300, "{}", created.body);
    let team_id = created.body["id"].as_str().expect("team id").to_string();

    // A streamed chat call: the relay task logs the call's event inside the request's span.
    let key = admin_key(
        &admin,
        &tenant.org_id,
        Some(&tenant.owner_id),
        &["chat:write".into()],
    )
    .await;
    let chat_id = format!("logs-chat-{}", uuid::Uuid::now_v7());
    let streamed = admin
        .with_token(&key)
        .request(reqwest::Method::POST, "/api/v1/chat/completions")
        .header("x-request-id", &chat_id)
        .json(&json!({"model": "gpt-4o", "stream": true,
            "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .expect("stream");
    assert_eq!(streamed.status(), 200);
    let body = streamed.text().await.expect("body");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");

    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let of_request = |id: &str| -> Vec<Value> {
        lines()
            .into_iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    wait_for(Duration::from_secs(10), "the chat event is logged", || {
        let logged = of_request(&chat_id)
            .iter()
            .any(|l| l["fields"]["message"] == "event queued for the journal");
        async move { logged }
    })
    .await;
    let _ = child.kill().await;

    let write = of_request(&write_id);
    let recorded = write
        .iter()
        .find(|l| l["fields"]["message"] == "event recorded")
        .unwrap_or_else(|| panic!("no event recorded line for the write: {write:?}"));
    assert_eq!(recorded["fields"]["event_type"], "team.created");
    assert_eq!(
        recorded["fields"]["stream_id"],
        format!("team:{team_id}"),
        "{recorded}"
    );
    assert!(recorded["fields"]["event_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));

    let chat = of_request(&chat_id);
    let queued = chat
        .iter()
        .find(|l| l["fields"]["message"] == "event queued for the journal")
        .expect("the chat event's line");
    assert_eq!(queued["fields"]["event_type"], "chat.completion.succeeded");

    for (id, route) in [
        (&write_id, "/api/v1/teams"),
        (&chat_id, "/api/v1/chat/completions"),
    ] {
        let served = of_request(id);
        assert!(served.len() >= 2, "{id}: {served:?}");
        for line in served {
            let span = &line["span"];
            assert_eq!(span["route"], route, "{line}");
            assert_eq!(span["method"], "POST", "{line}");
            assert_eq!(span["org_id"], tenant.org_id.as_str(), "{line}");
            assert!(
                span["caller"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("api_key:")),
                "{line}"
            );
        }
    }
}
