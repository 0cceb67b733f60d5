//! Kafka client settings shared by every producer and consumer of the platform, the CloudEvents
//! binary-mode headers, and topic creation. Only the Kafka protocol is spoken here: we run Apache
//! Kafka, and Redpanda, MSK or Confluent work unchanged. docs/ARCHITECTURE.md says why each
//! setting has its value.

use std::time::Duration;

use chrono::SecondsFormat;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;

use crate::EventEnvelope;

mod connection;
pub use connection::{
    ConnectionError, ConnectionErrorKind, KafkaConnection, KafkaSettings, SaslCredentials,
    SaslMechanism, SecurityProtocol,
};

/// CloudEvents source attribute of every event the platform publishes.
pub const CE_SOURCE: &str = "/aihub";

/// Producer settings: idempotent, acknowledged by all in-sync replicas, partitioned like the
/// Java client so Connect and other producers agree on partitions.
pub fn producer_config(connection: &KafkaConnection) -> ClientConfig {
    let mut config = connection.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        // The relay waits for a whole batch before it marks rows, so linger is latency paid by
        // every command. None: what queues while a request is in flight still leaves batched.
        .set("linger.ms", "0")
        // Kafka keeps batches compressed on disk and sends them so to every consumer.
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        .set("socket.keepalive.enable", "true");
    config
}

/// Consumer settings for a consumer group whose offsets live in Postgres: nothing is
/// auto-committed, and a group seen for the first time starts at the beginning of the log.
pub fn consumer_config(connection: &KafkaConnection, group_id: &str) -> ClientConfig {
    let mut config = connection.client_config();
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // Kafka answers a fetch as soon as one byte is there; the wait only bounds an idle
        // long-poll, which also delays a seek, so keep it short but not busy.
        .set("fetch.wait.max.ms", "100")
        // Prefetch per partition: large enough for a rebuild to stream, small enough that
        // every projection of a process on twelve partitions stays within a few hundred MiB.
        .set("max.partition.fetch.bytes", "1048576")
        .set("queued.max.messages.kbytes", "16384")
        // Bounds how long closing waits on a broker that went away.
        .set("socket.timeout.ms", "10000")
        .set("socket.keepalive.enable", "true");
    config
}

/// The CloudEvents binary-mode headers of an event (`ce_*` attributes plus `content-type`).
pub fn cloudevents_headers(event: &EventEnvelope) -> OwnedHeaders {
    let id = event.event_id.to_string();
    let time = event
        .occurred_at
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let version = event.schema_version.to_string();
    [
        ("ce_specversion", "1.0"),
        ("ce_id", id.as_str()),
        ("ce_type", event.event_type()),
        ("ce_source", CE_SOURCE),
        ("ce_subject", event.stream_id.as_str()),
        ("ce_time", time.as_str()),
        ("ce_schemaversion", version.as_str()),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .fold(
        OwnedHeaders::new_with_capacity(8),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        },
    )
}

/// Reads one header of a consumed message as text.
pub fn header_value<H: Headers>(headers: &H, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The suffix of the compacted topic that carries the person keys beside the events' topic.
pub const KEYS_TOPIC_SUFFIX: &str = ".person-keys";

/// Creates the topic if it does not exist yet, with infinite retention, and the person keys'
/// compacted topic beside it. With three or more
/// replicas a write needs two in sync (`min.insync.replicas=2`, with `acks=all`), so losing one
/// broker loses no acknowledged event and stops no writes.
pub async fn ensure_topic(
    connection: &KafkaConnection,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = connection
        .client_config()
        .create()
        .map_err(|e| e.to_string())?;
    let min_insync = min_insync_replicas(replication).to_string();
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication))
        .set("retention.ms", "-1")
        .set("cleanup.policy", "delete")
        .set("min.insync.replicas", &min_insync);
    // The person keys (GDPR crypto-shredding): compacted, so a destroyed key's tombstone removes
    // every earlier copy of it within bounded time: a segment rolls within an hour, is compacted
    // within another, and the tombstone itself goes an hour later.
    let keys = format!("{topic}{KEYS_TOPIC_SUFFIX}");
    let keys_topic = NewTopic::new(&keys, 1, TopicReplication::Fixed(replication))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "3600000")
        .set("max.compaction.lag.ms", "3600000")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "3600000")
        .set("min.insync.replicas", &min_insync);
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let outcome = admin
        .create_topics([&new_topic, &keys_topic], &options)
        .await;
    // Destroying the client waits on the broker; keep that off async threads.
    std::thread::spawn(move || drop(admin));
    let results = outcome.map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating topic {name}: {code}")),
        }
    }
    Ok(())
}

/// Replicas that must have a write before it is acknowledged: two once there are three, so one
/// broker may fail; one below that, where requiring more would stop writes on any failure.
pub fn min_insync_replicas(replication: i32) -> i32 {
    if replication >= 3 {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::min_insync_replicas;

    #[test]
    fn a_replicated_topic_needs_two_replicas_in_sync() {
        assert_eq!(min_insync_replicas(1), 1);
        assert_eq!(min_insync_replicas(2), 1);
        assert_eq!(min_insync_replicas(3), 2);
        assert_eq!(min_insync_replicas(5), 2);
    }
}
