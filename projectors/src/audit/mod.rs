//! Audit tools that read the topic rather than trust a read model (issue 12): verifying the
//! tamper-evident chains, and rebuilding an organization's state at an instant.

pub mod state;
pub mod verify;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use events::kafka::KafkaConnection;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::mpsc;

/// One message of the topic.
#[derive(Debug, Clone)]
pub struct TopicEvent {
    pub partition: i32,
    pub offset: i64,
    /// The message key: the organization id, or a stream id for platform events.
    pub key: Option<String>,
    /// The message as JSON, or `None` when it is not JSON at all.
    pub envelope: Option<Value>,
}

/// Every message of the topic from its beginning to the high watermarks of the moment, streamed
/// through a bounded channel (a year of events is never held at once). Within a partition the
/// messages come in order; partitions interleave. With `partition`, that one only.
pub async fn read_topic(
    kafka: &KafkaConnection,
    topic: &str,
    partition: Option<i32>,
) -> anyhow::Result<mpsc::Receiver<anyhow::Result<TopicEvent>>> {
    let mut ends = crate::replay::end_offsets(kafka, topic).await?;
    if let Some(only) = partition {
        ends.retain(|p, _| *p == only);
    }
    let (tx, rx) = mpsc::channel(1024);
    let kafka = kafka.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let result = (|| -> anyhow::Result<()> {
            let group = format!("aihub-audit-read-{}", uuid::Uuid::now_v7());
            let consumer: BaseConsumer = events::kafka::consumer_config(&kafka, &group)
                .create()
                .context("creating the topic reader")?;
            let mut assignment = TopicPartitionList::new();
            let mut left: HashMap<i32, i64> = HashMap::new();
            for (&partition, &high) in &ends {
                if high > 0 {
                    assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
                    left.insert(partition, high);
                }
            }
            if left.is_empty() {
                return Ok(());
            }
            consumer.assign(&assignment)?;
            let mut idle = 0;
            while !left.is_empty() {
                match consumer.poll(Duration::from_millis(500)) {
                    None => {
                        idle += 1;
                        anyhow::ensure!(idle < 120, "the topic stopped answering while read");
                    }
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(message)) => {
                        idle = 0;
                        let partition = message.partition();
                        let Some(&high) = left.get(&partition) else {
                            continue;
                        };
                        if message.offset() >= high {
                            left.remove(&partition);
                            continue;
                        }
                        let event = TopicEvent {
                            partition,
                            offset: message.offset(),
                            key: message
                                .key()
                                .map(|k| String::from_utf8_lossy(k).into_owned()),
                            envelope: message
                                .payload()
                                .and_then(|p| serde_json::from_slice(p).ok()),
                        };
                        if message.offset() + 1 >= high {
                            left.remove(&partition);
                        }
                        if tx.blocking_send(Ok(event)).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(rx)
}

/// The chain a message belongs to: its envelope's organization, else its key's.
pub fn chain_of_message(event: &TopicEvent) -> String {
    let org = event
        .envelope
        .as_ref()
        .and_then(|e| e.get("org_id"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<uuid::Uuid>().ok())
        .or_else(|| event.key.as_deref().and_then(|k| k.parse().ok()));
    events::audit::chain_of(org)
}
