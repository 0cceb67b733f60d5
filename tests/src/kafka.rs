//! Reading the event topic the way an outside integration would: with a consumer of our own.

use std::time::Duration;

use events::kafka::{KafkaConnection, SaslMechanism};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use uuid::Uuid;

/// Reads the topic from the beginning until `wanted` says it has seen enough, or `limit` passes.
pub async fn read_until(
    kafka: &KafkaConnection,
    topic: &str,
    limit: Duration,
    mut wanted: impl FnMut(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = kafka
        .client_config()
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

/// The Java client's security settings for `kafka`, as a properties file's text (empty for
/// plaintext): the same protocol, SASL user and trusted CA.
pub fn java_client_properties(kafka: &KafkaConnection) -> String {
    let mut lines = vec![format!("security.protocol={}", kafka.security_protocol)];
    if let Some(sasl) = &kafka.sasl {
        let module = match sasl.mechanism {
            SaslMechanism::Plain => "org.apache.kafka.common.security.plain.PlainLoginModule",
            _ => "org.apache.kafka.common.security.scram.ScramLoginModule",
        };
        let quoted = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        lines.push(format!("sasl.mechanism={}", sasl.mechanism));
        lines.push(format!(
            "sasl.jaas.config={module} required username=\"{}\" password=\"{}\";",
            quoted(&sasl.username),
            quoted(&sasl.password)
        ));
    }
    if let Some(ca) = &kafka.ssl_ca_file {
        lines.push("ssl.truststore.type=PEM".into());
        lines.push(format!("ssl.truststore.location={ca}"));
    }
    // A properties file takes `\` as an escape.
    lines
        .iter()
        .map(|line| line.replace('\\', "\\\\"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// kcat's `-X` options for `kafka`: the same protocol, SASL user and trusted CA. Debian 12's kcat
/// links librdkafka 2.0.2, whose SCRAM Kafka 4 rejects (a nonce bug fixed in librdkafka 2.6.1;
/// the platform's own rdkafka bundles 2.12): it signs in with PLAIN, which our SASL_SSL test
/// broker also offers to the same user.
pub fn kcat_args(kafka: &KafkaConnection) -> Vec<String> {
    let mut args = vec![
        "-X".to_string(),
        format!("security.protocol={}", kafka.security_protocol),
    ];
    if let Some(sasl) = &kafka.sasl {
        for setting in [
            format!("sasl.mechanisms={}", SaslMechanism::Plain),
            format!("sasl.username={}", sasl.username),
            format!("sasl.password={}", sasl.password),
        ] {
            args.extend(["-X".to_string(), setting]);
        }
    }
    if let Some(ca) = &kafka.ssl_ca_file {
        args.extend(["-X".to_string(), format!("ssl.ca.location={ca}")]);
    }
    args
}

pub fn key(message: &OwnedMessage) -> String {
    message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}
