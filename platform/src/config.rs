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
    /// `AIHUB_TOPIC_REPLICATION`: replicas of the topic when it is created (3 on a cluster, where
    /// writes then need two of them in sync).
    pub topic_replication: i32,
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
    /// `AIHUB_AUTH_CACHE_TTL_MS`: the longest a resolved API key is served from memory; a
    /// backstop only, changes evict it at once (0 turns the cache off).
    pub auth_cache_ttl: Duration,
    /// The chat gateway's providers, catalog and timeouts.
    pub gateway: GatewayConfig,
    /// `AIHUB_FAKE_NOW`: pins the clock (tests and demos only).
    pub clock: crate::clock::Clock,
    /// `AIHUB_BILLING_CLOSE_EVERY_MS`: how often the command API checks whether the last month
    /// is due to be invoiced; `0` turns the scheduled job off.
    pub billing_close_every: Duration,
    /// `AIHUB_BILLING_CLOSE_GRACE_MS`: how long after a month ends its invoices are issued, so
    /// the calls of its last moments are in.
    pub billing_close_grace: Duration,
}

/// One upstream provider. A provider without an API key is absent.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `openrouter`, `gemini` or `openai` (any OpenAI-compatible server: vLLM, Ollama, OpenAI).
    pub name: String,
    pub base_url: String,
    pub api_key: String,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub providers: Vec<ProviderConfig>,
    /// `AIHUB_MODELS_FILE`: a JSON catalog replacing the built-in one.
    pub models_file: Option<String>,
    /// `AIHUB_UPSTREAM_CA_FILE`: PEM certificates trusted for providers besides the public
    /// roots (a self-hosted vLLM behind a private CA).
    pub upstream_ca_file: Option<String>,
    /// `AIHUB_CATALOG_REFRESH_MS`: how often the gateway looks for a newer `aihub models sync`.
    pub catalog_refresh: Duration,
    /// `AIHUB_UPSTREAM_TIMEOUT_MS`: how long one attempt may take to answer its headers.
    pub upstream_timeout: Duration,
    /// `AIHUB_CHAT_DEADLINE_MS`: the whole call, every attempt included.
    pub deadline: Duration,
    /// `AIHUB_STREAM_IDLE_MS`: the longest a stream may go without an event from the provider
    /// before the gateway ends it with an error event.
    pub stream_idle: Duration,
    /// `AIHUB_BREAKER_FAILURES` consecutive failures open a deployment's circuit for
    /// `AIHUB_BREAKER_COOLDOWN_MS`.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Token quotas. `AIHUB_QUOTA_LEASES` (default true): each process serves reservations from
    /// a block of tokens leased from the ledger; false reserves in the ledger for every call.
    pub quota_leases: bool,
    /// `AIHUB_QUOTA_FLUSH_MS`: how often settled usage is written to the ledger — the most usage
    /// a crashed process can leave unrecorded in the ledger.
    pub quota_flush: Duration,
    /// `AIHUB_QUOTA_LEASE_IDLE_MS`: a lease with no call for this long is given back.
    pub quota_lease_idle: Duration,
    /// `AIHUB_QUOTA_MAX_LEASE_TOKENS`: the most tokens one lease holds beyond its calls in flight.
    pub quota_max_lease: i64,
}

impl GatewayConfig {
    fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        millis: &dyn Fn(&str, u64) -> Duration,
    ) -> Self {
        let mut providers = Vec::new();
        for (name, key, url, default_url) in [
            (
                "openrouter",
                "OPENROUTER_API_KEY",
                "OPENROUTER_BASE_URL",
                "https://openrouter.ai/api/v1",
            ),
            (
                "gemini",
                "GEMINI_API_KEY",
                "GEMINI_BASE_URL",
                "https://generativelanguage.googleapis.com",
            ),
            (
                "openai",
                "OPENAI_API_KEY",
                "OPENAI_BASE_URL",
                "https://api.openai.com/v1",
            ),
        ] {
            if let Some(api_key) = var(key) {
                let base_url = var(url)
                    .unwrap_or_else(|| default_url.into())
                    .trim_end_matches('/')
                    .to_string();
                providers.push(ProviderConfig {
                    name: name.into(),
                    base_url,
                    api_key,
                });
            }
        }
        Self {
            providers,
            models_file: var("AIHUB_MODELS_FILE"),
            upstream_ca_file: var("AIHUB_UPSTREAM_CA_FILE"),
            catalog_refresh: millis("AIHUB_CATALOG_REFRESH_MS", 30_000),
            upstream_timeout: millis("AIHUB_UPSTREAM_TIMEOUT_MS", 30_000),
            deadline: millis("AIHUB_CHAT_DEADLINE_MS", 120_000),
            stream_idle: millis("AIHUB_STREAM_IDLE_MS", 60_000),
            breaker_failures: var("AIHUB_BREAKER_FAILURES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(3),
            breaker_cooldown: millis("AIHUB_BREAKER_COOLDOWN_MS", 30_000),
            quota_leases: var("AIHUB_QUOTA_LEASES").is_none_or(|v| v != "false" && v != "0"),
            quota_flush: millis("AIHUB_QUOTA_FLUSH_MS", 500),
            quota_lease_idle: millis("AIHUB_QUOTA_LEASE_IDLE_MS", 2_000),
            quota_max_lease: var("AIHUB_QUOTA_MAX_LEASE_TOKENS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000),
        }
    }
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
            topic_replication: var("AIHUB_TOPIC_REPLICATION")
                .and_then(|v| v.parse().ok())
                .filter(|r| *r >= 1)
                .unwrap_or(1),
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
            auth_cache_ttl: millis("AIHUB_AUTH_CACHE_TTL_MS", 10_000),
            gateway: GatewayConfig::from_env(&var, &millis),
            clock: var("AIHUB_FAKE_NOW")
                .and_then(|v| chrono::DateTime::parse_from_rfc3339(&v).ok())
                .map(|at| crate::clock::Clock::fixed(at.with_timezone(&chrono::Utc)))
                .unwrap_or_default(),
            billing_close_every: millis("AIHUB_BILLING_CLOSE_EVERY_MS", 15 * 60 * 1000),
            billing_close_grace: millis("AIHUB_BILLING_CLOSE_GRACE_MS", 60 * 60 * 1000),
        }
    }
}
