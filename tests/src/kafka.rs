//! Reading the event topic the way an outside integration would: with a consumer of our own.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::ClientConfig;
use uuid::Uuid;

/// Reads the topic from the beginning until `wanted` says it has seen enough, or `limit` passes.
pub async fn read_until(
    brokers: &str,
    topic: &str,
    limit: Duration,
    mut wanted: impl FnMut(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("e2e-reader-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    while !wanted(&seen) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => seen.push(message.detach()),
            Ok(Err(e)) => panic!("consuming {topic}: {e}"),
            Err(_) => panic!(
                "timed out after {limit:?} reading {topic}; saw {} messages",
                seen.len()
            ),
        }
    }
    seen
}

pub fn key(message: &OwnedMessage) -> String {
    message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}
