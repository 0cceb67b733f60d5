//! Issue 13, item 13: a projector that meets an event it cannot read stops there, loudly, and
//! does not skip it: nothing after it on its partition is applied, and `/readyz` says which
//! projections stopped.

use std::time::Duration;

use e2e::{wait_for, Env, Tenant};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_stops_the_projection_before_it_and_is_never_skipped() {
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    let _tenant = Tenant::create(&admin, "unreadable").await;
    env.wait_until_projected(Duration::from_secs(60)).await;

    // Forged straight onto partition 0: a message that is no event, then a readable event after
    // it (a copy of a real one under a new id) that must wait behind it.
    let db = env.db().await;
    let mut copy: Value = db
        .query_one(
            "SELECT envelope FROM journal ORDER BY global_position LIMIT 1",
            &[],
        )
        .await
        .expect("an event")
        .get(0);
    let copy_id = uuid::Uuid::now_v7();
    copy["event_id"] = Value::String(copy_id.to_string());
    let producer: FutureProducer = env.config.kafka.client_config().create().expect("producer");
    let mut offsets = Vec::new();
    for payload in [
        "{\"this is\": \"not an event\"".to_string(),
        copy.to_string(),
    ] {
        let delivery = producer
            .send(
                FutureRecord::to(&env.config.topic)
                    .partition(0)
                    .key("forged")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
        assert_eq!(delivery.partition, 0);
        offsets.push(delivery.offset);
    }
    let bad = offsets[0];

    let health = reqwest::Client::new();
    let url = admin.url("/readyz");
    wait_for(
        Duration::from_secs(60),
        "readyz to name the stopped projections",
        || {
            let (health, url) = (health.clone(), url.clone());
            async move {
                let Ok(response) = health.get(&url).send().await else {
                    return false;
                };
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                status == 503
                    && body["checks"]["stopped_projections"]
                        .as_array()
                        .is_some_and(|s| s.len() == projectors::all().len())
            }
        },
    )
    .await;
    // Every projection's stored offset for partition 0 is the unreadable event's: stopped before
    // it, not past it; and the readable event behind it was not applied.
    for projection in projectors::all() {
        let stored: i64 = db
            .query_one(
                "SELECT next_offset FROM projector_offsets WHERE projection = $1 AND partition = 0",
                &[&projection.name()],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(-1);
        assert!(
            stored <= bad,
            "{} stored {stored}, past the unreadable event at {bad}",
            projection.name()
        );
    }
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM projector_applied WHERE event_id = '{copy_id}'"
        ))
        .await,
        0,
        "nothing behind the unreadable event is applied"
    );
    app.stop().await;
}
