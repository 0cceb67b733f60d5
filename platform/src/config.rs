//! Configuration from the environment. Every setting has a default that works on a developer
//! machine set up by `infra/local/up.sh`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`
    pub database_url: String,
    /// `KAFKA_BROKERS`
    pub kafka_brokers: String,
    /// `AIHUB_TOPIC`: the event topic (tests use one of their own).
    pub topic: String,
    /// `AIHUB_TOPIC_PARTITIONS`: partitions the topic is created with when absent.
    pub topic_partitions: i32,
    /// `AIHUB_LISTEN`
    pub listen: String,
    /// `AIHUB_ADMIN_TOKEN`: the platform-admin bearer token; without it nobody is admin.
    pub admin_token: Option<String>,
    /// `AIHUB_CONSISTENCY_TIMEOUT_MS`: how long a command waits for its event to be projected
    /// before it answers 202.
    pub consistency_timeout: Duration,
    /// `AIHUB_CONSUMER_GROUP_PREFIX`: projector consumer groups are `<prefix>.<projection>`.
    pub consumer_group_prefix: String,
    /// `AIHUB_RELAY_MESSAGE_TIMEOUT_MS`: how long the relay lets the producer try one message.
    pub relay_message_timeout: Duration,
    /// `AIHUB_RELAY_SWEEP_MS`: how often the relay looks for unpublished rows without a wake-up.
    pub relay_sweep: Duration,
    /// `AIHUB_MAX_BODY_BYTES`
    pub max_body_bytes: usize,
    /// `AIHUB_AUTH_FAILURE_WINDOW_MS`: refused authentications are recorded as one `auth.failed`
    /// event per organization, reason and key per window.
    pub auth_failure_window: Duration,
}

impl Config {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let millis = |name: &str, default: u64| {
            Duration::from_millis(var(name).and_then(|v| v.parse().ok()).unwrap_or(default))
        };
        Self {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/aihub".into()),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".into()),
            topic: var("AIHUB_TOPIC").unwrap_or_else(|| events::EVENTS_TOPIC.into()),
            topic_partitions: var("AIHUB_TOPIC_PARTITIONS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(events::EVENTS_TOPIC_PARTITIONS),
            listen: var("AIHUB_LISTEN").unwrap_or_else(|| "127.0.0.1:8001".into()),
            admin_token: var("AIHUB_ADMIN_TOKEN"),
            consistency_timeout: millis("AIHUB_CONSISTENCY_TIMEOUT_MS", 2000),
            consumer_group_prefix: var("AIHUB_CONSUMER_GROUP_PREFIX")
                .unwrap_or_else(|| "aihub-projector".into()),
            relay_message_timeout: millis("AIHUB_RELAY_MESSAGE_TIMEOUT_MS", 30_000),
            relay_sweep: millis("AIHUB_RELAY_SWEEP_MS", 1000),
            max_body_bytes: var("AIHUB_MAX_BODY_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024 * 1024),
            auth_failure_window: millis("AIHUB_AUTH_FAILURE_WINDOW_MS", 5000),
        }
    }
}
