//! AI Hub on a three-broker Apache Kafka cluster (replication 3, two replicas in sync): the
//! leader of the busiest partition is killed with SIGKILL while clients keep writing, then
//! restarted. Nothing acknowledged is lost, nothing is applied twice, and nobody steps in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::broker::Cluster;
use e2e::{unique_slug, wait_for, Api, Env};
use serde_json::json;
use uuid::Uuid;

/// Creates organizations until `stop`; returns the ids of every write the API acknowledged
/// (201, or 202 when the read side lagged), and fails on any other answer.
async fn keep_writing(api: Api, stop: Arc<AtomicBool>) -> Vec<Uuid> {
    let mut acknowledged = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let reply = api
            .post(
                "/api/v1/organizations",
                &json!({"name": "Busy", "slug": unique_slug("busy")}),
            )
            .await;
        assert!(
            reply.status == 201 || reply.status == 202,
            "a write failed during the broker failure: {} {}",
            reply.status,
            reply.body
        );
        acknowledged.push(
            reply.body["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("id"),
        );
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_partition_leader_loses_and_duplicates_nothing() {
    let cluster = Cluster::start().await;
    let mut env = Env::with_replicas(&cluster.bootstrap(), 3).await;
    // The idempotent producer retries a batch across the leader election; a timeout shorter
    // than the election would make the relay send it again under a new producer id.
    env.config.relay_message_timeout = Duration::from_secs(60);
    let (app, api) = env.app().await;

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(keep_writing(api.clone(), stop.clone())))
        .collect();
    wait_for(
        Duration::from_secs(60),
        "writes reach the topic",
        || async { env.topic_messages().await >= 40 },
    )
    .await;

    // The busiest partition and its leader.
    let ends = projectors::replay::end_offsets(&env.config.kafka, &env.config.topic)
        .await
        .expect("end offsets");
    let (&busiest, _) = ends
        .iter()
        .max_by_key(|(_, end)| **end)
        .expect("partitions");
    let leaders = cluster.leaders(&env.config.topic).await;
    let victim = leaders
        .iter()
        .find(|(partition, _)| *partition == busiest)
        .map(|(_, leader)| *leader)
        .expect("a leader");
    let before_kill = env.count("SELECT count(*) FROM journal").await;
    cluster.kill(victim).await;

    // Writes go on and reach the read models while the node is dead.
    wait_for(
        Duration::from_secs(120),
        "events written after the kill are projected",
        || async {
            env.count("SELECT count(*) FROM projector_applied WHERE projection = 'tenancy'")
                .await
                >= before_kill + 40
        },
    )
    .await;
    let new_leaders = cluster.leaders(&env.config.topic).await;
    assert!(
        new_leaders.iter().all(|(_, leader)| *leader != victim),
        "node {victim} still leads a partition: {new_leaders:?}"
    );

    cluster.restart(victim).await;
    let after_restart = env.count("SELECT count(*) FROM journal").await;
    wait_for(
        Duration::from_secs(60),
        "writes go on after the restart",
        || async { env.count("SELECT count(*) FROM journal").await >= after_restart + 40 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }

    // Every acknowledged write is published and projected, exactly once.
    wait_for(
        Duration::from_secs(120),
        "the relay publishes everything",
        || async { env.count("SELECT count(*) FROM journal_outbox").await == 0 },
    )
    .await;
    env.wait_until_projected(Duration::from_secs(180)).await;
    let journal = env.count("SELECT count(*) FROM journal").await;
    assert_eq!(
        env.topic_messages().await,
        journal,
        "the topic holds a message per journal row, no more (no duplicate) and no fewer"
    );
    env.assert_every_event_applied_once().await;
    let projected: i64 = env
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM read.organizations WHERE id = ANY($1) AND version = 1",
            &[&acknowledged],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(projected, acknowledged.len() as i64);
    // Each organization is two events (organization.created, subscription.created).
    assert_eq!(journal, 2 * acknowledged.len() as i64);
    app.stop().await;
}
