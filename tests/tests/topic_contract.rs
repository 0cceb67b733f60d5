//! The event topic is a public contract: the ecosystem's reference client (Kafka's Java
//! `kafka-clients`) and Debian's `kcat` read it with the keys, CloudEvents headers and payloads
//! the journal holds. Both run as separate programs, as an integration would.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use e2e::{broker, kafka, unique_slug, Env};
use serde_json::{json, Value};

/// One journal event as the topic should carry it.
struct Expected {
    key: String,
    event_type: String,
    subject: String,
    time: String,
}

async fn journal(env: &Env) -> HashMap<String, Expected> {
    let rows = env
        .db()
        .await
        .query(
            "SELECT envelope::text FROM journal ORDER BY global_position",
            &[],
        )
        .await
        .expect("journal");
    rows.iter()
        .map(|row| {
            let envelope: Value = serde_json::from_str(row.get(0)).expect("json");
            let text = |field: &str| envelope[field].as_str().unwrap_or_default().to_string();
            let key = match envelope["org_id"].as_str() {
                Some(org) => org.to_string(),
                None => text("stream_id"),
            };
            (
                text("event_id"),
                Expected {
                    key,
                    event_type: text("event_type"),
                    subject: text("stream_id"),
                    time: text("occurred_at"),
                },
            )
        })
        .collect()
}

/// A tenant's history on the topic: organization, owner, subscription, a team and a key.
async fn some_events(env: &Env) -> HashMap<String, Expected> {
    let (app, api) = env.app().await;
    let tenant = e2e::Tenant::create_on(&api, "contract", "pro").await;
    let team = tenant
        .owner
        .post("/api/v1/teams", &json!({"name": "Research 研究"}))
        .await;
    assert_eq!(team.status, 201, "{}", team.body);
    api.create_org(&unique_slug("second")).await;
    env.wait_until_projected(Duration::from_secs(60)).await;
    app.stop().await;
    journal(env).await
}

/// Checks one consumed message (key, header map, payload) against the journal.
fn check(
    expected: &HashMap<String, Expected>,
    key: &str,
    headers: &HashMap<String, String>,
    event: &Value,
) -> String {
    let id = headers.get("ce_id").cloned().unwrap_or_default();
    let want = expected
        .get(&id)
        .unwrap_or_else(|| panic!("ce_id {id:?} is no journal event; headers {headers:?}"));
    assert_eq!(key, want.key, "key of {id}");
    assert_eq!(headers.get("ce_type"), Some(&want.event_type));
    assert_eq!(headers.get("ce_subject"), Some(&want.subject));
    assert_eq!(headers.get("ce_time"), Some(&want.time));
    assert_eq!(
        headers.get("ce_specversion").map(String::as_str),
        Some("1.0")
    );
    assert_eq!(
        headers.get("ce_source").map(String::as_str),
        Some(events::kafka::CE_SOURCE)
    );
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(event["event_id"], id.as_str());
    assert_eq!(event["event_type"], want.event_type.as_str());
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_java_client_reads_keys_headers_and_events() {
    let env = Env::new().await;
    let expected = some_events(&env).await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/ReadTopic.java");
    let properties =
        std::env::temp_dir().join(format!("aihub-java-client-{}.properties", env.database));
    std::fs::write(
        &properties,
        kafka::java_client_properties(&env.config.kafka),
    )
    .expect("client properties");
    let output = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(broker::kafka_classpath())
        .arg(source)
        .args([
            env.config.kafka.brokers.as_str(),
            env.config.topic.as_str(),
            &expected.len().to_string(),
            "120",
        ])
        .arg(&properties)
        .output()
        .await
        .expect("java runs");
    assert!(
        output.status.success(),
        "the Java consumer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut seen = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let message: Value = serde_json::from_str(line).expect("a JSON line");
        let headers: HashMap<String, String> =
            serde_json::from_value(message["headers"].clone()).expect("headers");
        let id = check(
            &expected,
            message["key"].as_str().expect("key"),
            &headers,
            &message["event"],
        );
        // The message timestamp is the event's time.
        let time = chrono::DateTime::parse_from_rfc3339(&expected[&id].time).expect("time");
        assert_eq!(message["timestamp"], time.timestamp_millis());
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), expected.len(), "every journal event, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_reads_keys_headers_and_events() {
    let env = Env::new().await;
    let expected = some_events(&env).await;
    // -J: one JSON envelope per message; -e: stop at the end of every partition.
    let output = tokio::process::Command::new("kcat")
        .args(["-C", "-J", "-e", "-q", "-o", "beginning"])
        .args([
            "-b",
            env.config.kafka.brokers.as_str(),
            "-t",
            env.config.topic.as_str(),
        ])
        .args(kafka::kcat_args(&env.config.kafka))
        .output()
        .await
        .expect("kcat runs (test.sh installs it)");
    assert!(
        output.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut seen = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let message: Value = serde_json::from_str(line).expect("a JSON line");
        // kcat lists headers as [name, value, name, value, ...].
        let flat: Vec<String> =
            serde_json::from_value(message["headers"].clone()).expect("headers");
        let headers: HashMap<String, String> = flat
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
            .collect();
        let event: Value = serde_json::from_str(message["payload"].as_str().expect("payload"))
            .expect("the payload is the JSON envelope");
        seen.push(check(
            &expected,
            message["key"].as_str().expect("key"),
            &headers,
            &event,
        ));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), expected.len(), "every journal event, once");
}
