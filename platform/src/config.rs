//! Configuration from the environment, parsed strictly: a variable that is set must hold a valid
//! value, or the process stops before it starts anything, with a message naming the variable
//! ([`Config::from_env`]). An empty variable counts as unset. Every setting has a default that
//! works on a developer machine set up by `infra/local/up.sh`.
//!
//! The variables are clap arguments read from the environment only (no flags: `aihub serve`
//! takes none), so each one's name, default, parser and help live in one attribute, and
//! [`Config::describe`] can list the effective configuration with its secrets redacted.

use std::{ffi::OsString, path::Path, time::Duration};

use chrono::{DateTime, Utc};
use clap::{
    builder::{BoolishValueParser, TypedValueParser},
    error::{ContextKind, ContextValue},
    parser::ValueSource,
    ArgMatches, CommandFactory, FromArgMatches, Parser,
};

use events::kafka::{KafkaConnection, KafkaSettings, SaslMechanism, SecurityProtocol};
use rustls::pki_types::{pem::PemObject, CertificateDer};

use crate::clock::Clock;
use crate::db::Database;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "aihub",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Config {
    #[command(flatten)]
    database_vars: DatabaseVars,
    /// Where Postgres is and how it is reached: `DATABASE_URL` (its `sslmode`) and
    /// `AIHUB_DATABASE_CA_FILE`.
    #[arg(skip = Database::new(String::new(), None))]
    pub database: Database,
    #[command(flatten)]
    kafka_vars: KafkaVars,
    /// Where the brokers are and how they are reached: `KAFKA_BROKERS`, `KAFKA_SECURITY_PROTOCOL`,
    /// the `KAFKA_SASL_*` credentials and `KAFKA_SSL_CA_FILE`.
    #[arg(skip = KafkaConnection::plaintext(String::new()))]
    pub kafka: KafkaConnection,
    /// The event topic (tests use one of their own).
    #[arg(long, env = "AIHUB_TOPIC", default_value = events::EVENTS_TOPIC, value_parser = topic_name)]
    pub topic: String,
    /// Partitions the topic is created with when absent.
    #[arg(long, env = "AIHUB_TOPIC_PARTITIONS", default_value_t = events::EVENTS_TOPIC_PARTITIONS,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub topic_partitions: i32,
    /// Replicas of the topic when it is created (3 on a cluster, where writes then need two of
    /// them in sync).
    #[arg(long, env = "AIHUB_TOPIC_REPLICATION", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub topic_replication: i32,
    /// The address the HTTP server listens on, `host:port`.
    #[arg(long, env = "AIHUB_LISTEN", default_value = "127.0.0.1:8001", value_parser = host_port)]
    pub listen: String,
    /// An operator port, `host:port`: `/metrics`, `/healthz`, `/readyz`, `/docs` and
    /// `/openapi.json` are served there (for every role, the projectors' too) and `/metrics`,
    /// `/docs` and `/openapi.json` leave the public port. Unset, they stay on the public port and
    /// `/metrics` needs the platform-admin token.
    #[arg(long, env = "AIHUB_OPS_LISTEN", value_parser = host_port)]
    pub ops_listen: Option<String>,
    /// The platform-admin bearer token (its events name `platform-admin:admin`); without it and
    /// `AIHUB_ADMIN_TOKENS` nobody is admin.
    #[arg(long, env = "AIHUB_ADMIN_TOKEN", hide_env_values = true, value_parser = secret)]
    pub admin_token: Option<String>,
    /// Named platform-admin tokens, `name=token,name=token`: events name who acted
    /// (`platform-admin:<name>`).
    #[arg(long, env = "AIHUB_ADMIN_TOKENS", hide_env_values = true, value_parser = named_tokens)]
    pub admin_tokens: Option<NamedTokens>,
    /// The secret payment providers sign their webhook notices with
    /// (`POST /billing/webhooks/payments`); unset, the webhook refuses every notice.
    #[arg(long, env = "AIHUB_PAYMENT_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret)]
    pub payment_webhook_secret: Option<String>,
    /// How long a command waits for its event to be projected before it answers 202.
    #[arg(long = "consistency-timeout-ms", env = "AIHUB_CONSISTENCY_TIMEOUT_MS",
          default_value = "2000", value_parser = millis)]
    pub consistency_timeout: Duration,
    /// Projector consumer groups are `<prefix>.<projection>`.
    #[arg(long, env = "AIHUB_CONSUMER_GROUP_PREFIX", default_value = "aihub-projector",
          value_parser = topic_name)]
    pub consumer_group_prefix: String,
    /// How long the relay lets the producer try one message.
    #[arg(long = "relay-message-timeout-ms", env = "AIHUB_RELAY_MESSAGE_TIMEOUT_MS",
          default_value = "30000", value_parser = positive_millis)]
    pub relay_message_timeout: Duration,
    /// How long a projection holds a batch made only of chat calls, gathering more, before it
    /// applies it (nobody waits for a chat call's projection; commands do wait for theirs, and
    /// a batch holding one is applied at once). 0 applies every batch as it comes.
    #[arg(long = "projector-linger-ms", env = "AIHUB_PROJECTOR_LINGER_MS",
          default_value = "200", value_parser = millis)]
    pub projector_linger: Duration,
    /// How long after its last publish the relay holds the gateway's chat calls before it
    /// publishes them (nobody waits for them; anything else is published at once). 0 publishes
    /// every batch as it comes.
    #[arg(long = "relay-linger-ms", env = "AIHUB_RELAY_LINGER_MS",
          default_value = "200", value_parser = millis)]
    pub relay_linger: Duration,
    /// How often the relay looks for unpublished rows without a wake-up.
    #[arg(long = "relay-sweep-ms", env = "AIHUB_RELAY_SWEEP_MS", default_value = "1000",
          value_parser = positive_millis)]
    pub relay_sweep: Duration,
    /// Worker threads of the background runtime (relay, projectors, alerts, monitors, audit
    /// checkpoints, period closing), beside the request-serving runtime's. 0 runs the
    /// bookkeeping on the request-serving runtime and pool, at its priority.
    #[arg(long, env = "AIHUB_BACKGROUND_THREADS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(0..=64).map(|n| n as usize))]
    pub background_threads: usize,
    /// How much lower the background threads' CPU priority is: added to their nice value (0
    /// runs them level with request handling; 19 is the lowest).
    #[arg(long, env = "AIHUB_BACKGROUND_NICE", default_value_t = 10,
          value_parser = clap::value_parser!(i64).range(0..=19).map(|n| n as i32))]
    pub background_nice: i32,
    /// The background threads run under Linux's `SCHED_IDLE` policy: a request thread that
    /// wakes takes the CPU from them at once (a nice value only lowers their share). False
    /// leaves them at the nice value above.
    #[arg(long, env = "AIHUB_BACKGROUND_IDLE", default_value = "true", action = clap::ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub background_idle: bool,
    /// Connections of the usage exports' own pool: at most this many exports stream at once in a
    /// process, whatever their readers' speed, and never from the pool the rest uses.
    #[arg(long, env = "AIHUB_EXPORT_CONNECTIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=64).map(|n| n as usize))]
    pub export_connections: usize,
    /// The longest one export may stream (Postgres `statement_timeout` on its connection): a
    /// reader too slow for it loses the export rather than hold the connection.
    #[arg(long = "export-statement-timeout-ms", env = "AIHUB_EXPORT_STATEMENT_TIMEOUT_MS",
          default_value = "300000", value_parser = positive_millis)]
    pub export_statement_timeout: Duration,
    /// The largest request body accepted.
    #[arg(long, env = "AIHUB_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub max_body_bytes: usize,
    /// Refused authentications are recorded as one `auth.failed` event per organization, reason
    /// and key per window.
    #[arg(long = "auth-failure-window-ms", env = "AIHUB_AUTH_FAILURE_WINDOW_MS",
          default_value = "5000", value_parser = millis)]
    pub auth_failure_window: Duration,
    /// The longest a resolved API key is served from memory; a backstop only, changes evict it at
    /// once (0 turns the cache off).
    #[arg(long = "auth-cache-ttl-ms", env = "AIHUB_AUTH_CACHE_TTL_MS", default_value = "10000",
          value_parser = millis)]
    pub auth_cache_ttl: Duration,
    /// Single sign-on: the shortest time between two fetches of one identity provider's keys,
    /// so tokens naming unknown key ids cannot make AI Hub hammer the provider. A token signed
    /// by a rotated-in key is accepted once this has passed since the last fetch.
    #[arg(long = "sso-jwks-refetch-ms", env = "AIHUB_SSO_JWKS_REFETCH_MS", default_value = "30000",
          value_parser = positive_millis)]
    pub sso_jwks_refetch: Duration,
    /// Single sign-on issuers may be plain `http://` on a loopback address (tests, or a
    /// provider on the same host); otherwise only https.
    #[arg(long, env = "AIHUB_SSO_ALLOW_LOOPBACK_HTTP", default_value = "false", action = clap::ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub sso_allow_loopback_http: bool,
    /// How long SIGTERM waits for the process to drain: in-flight calls finish (the last of them
    /// are ended and billed when the bound nears), chat events and quota leases are flushed,
    /// projectors commit.
    #[arg(long = "shutdown-timeout-ms", env = "AIHUB_SHUTDOWN_TIMEOUT_MS", default_value = "30000",
          value_parser = positive_millis)]
    pub shutdown_timeout: Duration,
    /// The chat gateway's providers, catalog and timeouts.
    #[command(flatten)]
    pub gateway: GatewayConfig,
    /// Pins the clock, RFC 3339 (tests and demos only).
    #[arg(long = "fake-now", env = "AIHUB_FAKE_NOW", value_parser = rfc3339)]
    fake_now: Option<DateTime<Utc>>,
    /// The platform's clock: the real one unless `AIHUB_FAKE_NOW` pins it.
    #[arg(skip)]
    pub clock: Clock,
    /// How often the command API checks whether the last month is due to be invoiced; `0`
    /// turns the scheduled job off.
    #[arg(long = "billing-close-every-ms", env = "AIHUB_BILLING_CLOSE_EVERY_MS",
          default_value = "900000", value_parser = millis)]
    pub billing_close_every: Duration,
    /// How long after a month ends its invoices are issued, so the calls of its last moments are
    /// in.
    #[arg(long = "billing-close-grace-ms", env = "AIHUB_BILLING_CLOSE_GRACE_MS",
          default_value = "3600000", value_parser = millis)]
    pub billing_close_grace: Duration,
    /// The Ed25519 key that signs audit checkpoints: its 32-byte seed, 64 hex digits. Unset, no
    /// checkpoints are written and `GET /audit/public-key` is 404.
    #[arg(long, env = "AIHUB_AUDIT_SIGNING_KEY", hide_env_values = true, value_parser = signing_key)]
    pub audit_signing_key: Option<events::audit::CheckpointSigner>,
    /// The key of the emails' blind index (HMAC-SHA256), 32 bytes as 64 hex digits: uniqueness
    /// and lookups by email compare indexes, never addresses. Unset, a public development secret
    /// is used (with a warning at start). Changing it orphans every index: set it once.
    #[arg(long, env = "AIHUB_PERSONAL_DATA_SECRET", hide_env_values = true,
          value_parser = crate::personal::IndexSecret::from_hex)]
    pub personal_data_secret: Option<crate::personal::IndexSecret>,
    /// How often the command API signs the head of every audit chain that moved (`0`: never).
    #[arg(long = "audit-checkpoint-every-ms", env = "AIHUB_AUDIT_CHECKPOINT_MS",
          default_value = "60000", value_parser = millis)]
    pub audit_checkpoint_every: Duration,
    /// How often the alert evaluator (projectors role, one leader) checks every alert rule.
    #[arg(long = "alert-eval-ms", env = "AIHUB_ALERT_EVAL_MS", default_value = "2000",
          value_parser = positive_millis)]
    pub alert_eval: Duration,
    /// The first retry of a failed alert notification comes after this long; each next one
    /// after twice the last, up to an hour.
    #[arg(long = "notify-backoff-ms", env = "AIHUB_NOTIFY_BACKOFF_MS", default_value = "1000",
          value_parser = positive_millis)]
    pub notify_backoff: Duration,
    /// The SMTP server alert emails go through: `smtp://host:port` (plain, a local relay),
    /// `smtp://user:password@host:587?tls=required` (STARTTLS) or `smtps://…:465`. Unset, email
    /// channels fail and are retried.
    #[arg(long, env = "AIHUB_SMTP_URL", hide_env_values = true, value_parser = smtp_url)]
    pub smtp_url: Option<String>,
    /// The sender of alert emails, `Name <address>` or an address.
    #[arg(long, env = "AIHUB_SMTP_FROM", default_value = "AI Hub <alerts@aihub.invalid>",
          value_parser = mailbox)]
    pub smtp_from: String,
    /// Networks tenants' webhooks may reach although they are not public, comma-separated CIDRs
    /// (`10.0.0.0/8,127.0.0.1/32`). Unset, a webhook whose host resolves to a loopback, private,
    /// link-local (the cloud metadata address), shared or unique-local address is refused.
    #[arg(long, env = "AIHUB_WEBHOOK_ALLOW_NETWORKS", value_parser = networks)]
    pub webhook_allow_networks: Option<Networks>,
}

/// Networks, as CIDRs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<ipnet::IpNet>);

fn networks(value: &str) -> Result<Networks, String> {
    value
        .split(',')
        .map(str::trim)
        .map(|raw| {
            raw.parse::<ipnet::IpNet>()
                .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{raw:?}: expected CIDRs such as 10.0.0.0/8, comma-separated"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Networks)
}

fn smtp_url(value: &str) -> Result<String, String> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "smtp" | "smtps") && url.host().is_some() => {
            Ok(value.to_string())
        }
        _ => Err("expected smtp://host:port or smtps://host:port".into()),
    }
}

fn mailbox(value: &str) -> Result<String, String> {
    let address = value
        .rsplit_once('<')
        .map_or(value, |(_, rest)| rest.trim_end_matches('>'));
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !value.chars().any(char::is_control)
                && !address.contains(char::is_whitespace) =>
        {
            Ok(value.to_string())
        }
        _ => Err("expected an email address, or Name <address>".into()),
    }
}

/// The database's variables as set; [`Config::database`] is built from them.
#[derive(Clone, clap::Args)]
struct DatabaseVars {
    /// The Postgres database. `sslmode=require` (or `verify-full`) connects over TLS only,
    /// `prefer` when the server offers it; without `sslmode` the connection is plain. The server's
    /// certificate and host name are always verified.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/aihub",
          value_parser = postgres_url)]
    database_url: String,
    /// PEM certificates trusted for Postgres over TLS besides the public roots (the CA bundle of
    /// RDS or Cloud SQL, or a private CA).
    #[arg(long, env = "AIHUB_DATABASE_CA_FILE", value_parser = certificates_file)]
    database_ca_file: Option<String>,
}

impl std::fmt::Debug for DatabaseVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseVars")
            .field("database_url", &redact_url_password(&self.database_url))
            .field("database_ca_file", &self.database_ca_file)
            .finish()
    }
}

/// The broker connection's variables as set; [`Config::kafka`] is built from them, refusing
/// settings that do not go together.
#[derive(Clone, clap::Args)]
struct KafkaVars {
    /// The Kafka bootstrap servers, `host:port[,host:port…]`.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092", value_parser = broker_list)]
    kafka_brokers: String,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (MSK and Confluent Cloud: SASL_SSL).
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", default_value = "PLAINTEXT",
          value_parser = security_protocol)]
    kafka_security_protocol: SecurityProtocol,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_*.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_parser = sasl_mechanism)]
    kafka_sasl_mechanism: Option<SaslMechanism>,
    /// The SASL user; required with SASL_*.
    #[arg(long, env = "KAFKA_SASL_USERNAME", value_parser = secret)]
    kafka_sasl_username: Option<String>,
    /// The SASL password; required with SASL_*.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true, value_parser = secret)]
    kafka_sasl_password: Option<String>,
    /// PEM certificates the brokers' certificate must chain to, instead of the system's trust
    /// store (SSL and SASL_SSL only).
    #[arg(long, env = "KAFKA_SSL_CA_FILE", value_parser = certificates_file)]
    kafka_ssl_ca_file: Option<String>,
}

impl std::fmt::Debug for KafkaVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaVars")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field(
                "kafka_sasl_password",
                &self.kafka_sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("kafka_ssl_ca_file", &self.kafka_ssl_ca_file)
            .finish()
    }
}

impl KafkaVars {
    fn connection(&self) -> Result<KafkaConnection, ConfigError> {
        KafkaConnection::new(KafkaSettings {
            brokers: self.kafka_brokers.clone(),
            security_protocol: self.kafka_security_protocol,
            sasl_mechanism: self.kafka_sasl_mechanism,
            sasl_username: self.kafka_sasl_username.clone(),
            sasl_password: self.kafka_sasl_password.clone(),
            ssl_ca_file: self.kafka_ssl_ca_file.clone(),
        })
        .map_err(ConfigError)
    }
}

/// One upstream provider. A provider without an API key is absent.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `openrouter`, `gemini` or `openai` (any OpenAI-compatible server: vLLM, Ollama, OpenAI).
    pub name: String,
    pub base_url: String,
    pub api_key: String,
}

/// The providers' variables as set; [`GatewayConfig::providers`] is built from them.
#[derive(Debug, Clone, clap::Args)]
struct ProviderVars {
    #[arg(long, env = "OPENROUTER_API_KEY", hide_env_values = true, value_parser = secret)]
    openrouter_api_key: Option<String>,
    #[arg(long, env = "OPENROUTER_BASE_URL", default_value = "https://openrouter.ai/api/v1",
          value_parser = http_url)]
    openrouter_base_url: String,
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true, value_parser = secret)]
    gemini_api_key: Option<String>,
    #[arg(long, env = "GEMINI_BASE_URL",
          default_value = "https://generativelanguage.googleapis.com", value_parser = http_url)]
    gemini_base_url: String,
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, value_parser = secret)]
    openai_api_key: Option<String>,
    #[arg(long, env = "OPENAI_BASE_URL", default_value = "https://api.openai.com/v1",
          value_parser = http_url)]
    openai_base_url: String,
}

impl ProviderVars {
    fn providers(&self) -> Vec<ProviderConfig> {
        [
            (
                "openrouter",
                &self.openrouter_api_key,
                &self.openrouter_base_url,
            ),
            ("gemini", &self.gemini_api_key, &self.gemini_base_url),
            ("openai", &self.openai_api_key, &self.openai_base_url),
        ]
        .into_iter()
        .filter_map(|(name, key, url)| {
            key.as_ref().map(|api_key| ProviderConfig {
                name: name.into(),
                base_url: url.trim_end_matches('/').to_string(),
                api_key: api_key.clone(),
            })
        })
        .collect()
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    #[command(flatten)]
    provider_vars: ProviderVars,
    /// The configured providers (a provider is configured by its API key variable).
    #[arg(skip)]
    pub providers: Vec<ProviderConfig>,
    /// A JSON catalog replacing the built-in one.
    #[arg(long, env = "AIHUB_MODELS_FILE", value_parser = readable_file)]
    pub models_file: Option<String>,
    /// PEM certificates trusted for providers besides the public roots (a self-hosted vLLM
    /// behind a private CA).
    #[arg(long, env = "AIHUB_UPSTREAM_CA_FILE", value_parser = readable_file)]
    pub upstream_ca_file: Option<String>,
    /// How often the gateway looks for a newer `aihub models sync`.
    #[arg(long = "catalog-refresh-ms", env = "AIHUB_CATALOG_REFRESH_MS", default_value = "30000",
          value_parser = positive_millis)]
    pub catalog_refresh: Duration,
    /// How long one attempt may take to answer its headers.
    #[arg(long = "upstream-timeout-ms", env = "AIHUB_UPSTREAM_TIMEOUT_MS",
          default_value = "30000", value_parser = positive_millis)]
    pub upstream_timeout: Duration,
    /// The whole call, every attempt included.
    #[arg(long = "chat-deadline-ms", env = "AIHUB_CHAT_DEADLINE_MS", default_value = "120000",
          value_parser = positive_millis)]
    pub deadline: Duration,
    /// The longest a stream may go without an event from the provider before the gateway ends
    /// it with an error event.
    #[arg(long = "stream-idle-ms", env = "AIHUB_STREAM_IDLE_MS", default_value = "60000",
          value_parser = positive_millis)]
    pub stream_idle: Duration,
    /// Consecutive failures that open a deployment's circuit.
    #[arg(long, env = "AIHUB_BREAKER_FAILURES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_failures: u32,
    /// How long an open circuit stays open before one probe is let through.
    #[arg(long = "breaker-cooldown-ms", env = "AIHUB_BREAKER_COOLDOWN_MS", default_value = "30000",
          value_parser = millis)]
    pub breaker_cooldown: Duration,
    /// Token quotas: each process serves reservations from a block of tokens leased from the
    /// ledger; false reserves in the ledger for every call.
    #[arg(long, env = "AIHUB_QUOTA_LEASES", default_value = "true", action = clap::ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub quota_leases: bool,
    /// How often settled usage is written to the ledger: the most usage a crashed process can
    /// leave unrecorded in the ledger.
    #[arg(long = "quota-flush-ms", env = "AIHUB_QUOTA_FLUSH_MS", default_value = "500",
          value_parser = positive_millis)]
    pub quota_flush: Duration,
    /// A lease with no call for this long is given back.
    #[arg(long = "quota-lease-idle-ms", env = "AIHUB_QUOTA_LEASE_IDLE_MS", default_value = "2000",
          value_parser = positive_millis)]
    pub quota_lease_idle: Duration,
    /// Where chat events are spooled before a call's answer completes, until the journal has them
    /// (a subdirectory per database is made in it). A process killed with SIGKILL leaves its
    /// events there for the next one to append: keep it on a persistent volume.
    #[arg(long, env = "AIHUB_SPOOL_DIR", default_value = ".aihub/spool", value_parser = directory)]
    pub spool_dir: String,
    /// Sync each spooled event to disk (survives a machine crash, not only a killed process).
    #[arg(long, env = "AIHUB_SPOOL_FSYNC", default_value = "false", action = clap::ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub spool_fsync: bool,
    /// Chat events held in memory for the journal's appender; when they fill it, calls' events
    /// wait in the spool's files, read back as the journal catches up.
    #[arg(long, env = "AIHUB_EVENT_QUEUE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub event_queue: u32,
    /// The most chat events the spool holds before the journal has them; past it, new calls get
    /// 503 `overloaded` (about 1.3 KB of disk each).
    #[arg(long, env = "AIHUB_SPOOL_BACKLOG", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub spool_backlog: u64,
    /// While chat calls keep coming, the most a call's event waits before the journal's append
    /// runs anyway; when calls pause (20 ms), it runs at once. 0 appends without waiting.
    #[arg(long = "journal-defer-ms", env = "AIHUB_JOURNAL_DEFER_MS", default_value = "20000",
          value_parser = millis)]
    pub journal_defer: Duration,
    /// The most tokens one lease holds beyond its calls in flight.
    #[arg(long = "quota-max-lease-tokens", env = "AIHUB_QUOTA_MAX_LEASE_TOKENS",
          default_value_t = 100_000, value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_max_lease: i64,
}

/// A variable that is set but does not hold a valid value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars_os())
    }

    /// Reads the configuration from the given variables (the rest of the environment is
    /// ignored).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let matches = Self::matches(vars)?;
        let mut config = Self::from_arg_matches(&matches).map_err(|e| explain(&e))?;
        config.database = Database::new(
            config.database_vars.database_url.clone(),
            config.database_vars.database_ca_file.clone(),
        );
        config.kafka = config.kafka_vars.connection()?;
        config.gateway.providers = config.gateway.provider_vars.providers();
        config.clock = config.fake_now.map(Clock::fixed).unwrap_or_default();
        Ok(config)
    }

    /// The effective configuration of the given environment as `NAME=value` lines, one per
    /// variable, secrets and URL passwords redacted, each marked `(default)` when unset.
    pub fn describe(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Vec<String>, ConfigError> {
        let matches = Self::matches(vars)?;
        let mut lines = Vec::new();
        for arg in Self::command().get_arguments() {
            let Some(name) = arg.get_env().and_then(|n| n.to_str()) else {
                continue;
            };
            let id = arg.get_id().as_str();
            let value = matches
                .get_raw(id)
                .map(|values| {
                    values
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .map(|v| {
                    if arg.is_hide_env_values_set() {
                        "<redacted>".to_string()
                    } else {
                        redact_url_password(&v)
                    }
                });
            let from = match matches.value_source(id) {
                Some(ValueSource::DefaultValue) => " (default)",
                _ => "",
            };
            lines.push(match value {
                Some(value) => format!("{name}={value}{from}"),
                None => format!("{name} unset"),
            });
        }
        Ok(lines)
    }

    /// The variables that hold secrets: never logged, never echoed in an error.
    pub fn secret_variables() -> Vec<String> {
        Self::command()
            .get_arguments()
            .filter(|arg| arg.is_hide_env_values_set())
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }

    /// The variables that make another process (an `aihub` command a test or a benchmark runs)
    /// reach the same database and brokers the same way: each with its value, or `None` for
    /// one to remove from the inherited environment.
    pub fn connection_vars(&self) -> Vec<(&'static str, Option<String>)> {
        let kafka = &self.kafka;
        let sasl = kafka.sasl.as_ref();
        vec![
            ("DATABASE_URL", Some(self.database.url.clone())),
            ("AIHUB_DATABASE_CA_FILE", self.database.ca_file.clone()),
            ("KAFKA_BROKERS", Some(kafka.brokers.clone())),
            (
                "KAFKA_SECURITY_PROTOCOL",
                Some(kafka.security_protocol.to_string()),
            ),
            (
                "KAFKA_SASL_MECHANISM",
                sasl.map(|s| s.mechanism.to_string()),
            ),
            ("KAFKA_SASL_USERNAME", sasl.map(|s| s.username.clone())),
            ("KAFKA_SASL_PASSWORD", sasl.map(|s| s.password.clone())),
            ("KAFKA_SSL_CA_FILE", kafka.ssl_ca_file.clone()),
        ]
    }

    /// The names of every variable read, for documentation and tests.
    pub fn variables() -> Vec<String> {
        Self::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }

    fn matches(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<ArgMatches, ConfigError> {
        let vars: std::collections::HashMap<OsString, OsString> = vars
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
        // Each set variable becomes its argument's `--long=value`; clap itself reads no
        // environment (it would read the process's, and take an empty variable for a value).
        let command = Self::command();
        let mut argv = Vec::new();
        for arg in command.get_arguments() {
            if let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) {
                if let Some(value) = vars.get(name) {
                    let mut flag = OsString::from(format!("--{long}="));
                    flag.push(value);
                    argv.push(flag);
                }
            }
        }
        command
            .mut_args(|arg| arg.env(clap::builder::Resettable::Reset))
            .try_get_matches_from(argv)
            .map_err(|e| explain(&e))
    }
}

/// Turns clap's error about an argument into one naming the variable.
fn explain(error: &clap::Error) -> ConfigError {
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let arg = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => a.clone(),
        _ => String::new(),
    };
    let variable = Config::command()
        .get_arguments()
        .find(|a| {
            a.get_long()
                .is_some_and(|long| arg.split_whitespace().next() == Some(&format!("--{long}")))
        })
        .and_then(|a| a.get_env())
        .map(|n| n.to_string_lossy().into_owned());
    let reason = std::error::Error::source(error)
        .map(|e| e.to_string())
        .unwrap_or_else(|| {
            error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string()
        });
    match variable {
        Some(variable) if error.get(ContextKind::InvalidValue).is_some() => {
            let shown = if Config::command()
                .get_arguments()
                .any(|a| a.is_hide_env_values_set() && a.get_env() == Some(variable.as_ref()))
            {
                "<redacted>".to_string()
            } else {
                format!("{value:?}")
            };
            ConfigError(format!("{variable}={shown} is not valid: {reason}"))
        }
        Some(variable) => ConfigError(format!("{variable}: {reason}")),
        None => ConfigError(format!("configuration: {reason}")),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_url_password(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => value.to_string(),
    }
}

fn millis(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "expected a whole number of milliseconds".to_string())
}

fn positive_millis(value: &str) -> Result<Duration, String> {
    match millis(value)? {
        Duration::ZERO => Err("expected a number of milliseconds above 0".into()),
        duration => Ok(duration),
    }
}

fn rfc3339(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-01-31T23:59:00Z ({e})"))
}

fn postgres_url(value: &str) -> Result<String, String> {
    crate::db::parse_url(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("expected a Postgres URL ({})", e.root_cause()))
}

/// A file of PEM certificates (a CA bundle).
fn certificates_file(value: &str) -> Result<String, String> {
    readable_file(value)?;
    let pem = std::fs::read(value).map_err(|e| format!("cannot read it ({e})"))?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certificates) if !certificates.is_empty() => Ok(value.to_string()),
        Ok(_) => Err("holds no PEM certificate".into()),
        Err(e) => Err(format!("holds no readable PEM certificate ({e})")),
    }
}

fn security_protocol(value: &str) -> Result<SecurityProtocol, String> {
    value.parse()
}

fn sasl_mechanism(value: &str) -> Result<SaslMechanism, String> {
    value.parse()
}

fn host_port(value: &str) -> Result<String, String> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(value.to_string())
        }
        _ => Err("expected host:port".into()),
    }
}

fn broker_list(value: &str) -> Result<String, String> {
    for broker in value.split(',') {
        host_port(broker.trim()).map_err(|_| format!("{broker:?}: expected host:port"))?;
    }
    Ok(value.to_string())
}

/// Kafka's rule for topic and group names we create.
fn topic_name(value: &str) -> Result<String, String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.len() <= 249 && value.chars().all(legal) && value != "." && value != ".." {
        Ok(value.to_string())
    } else {
        Err("expected at most 249 of a-z, A-Z, 0-9, '.', '_' and '-'".into())
    }
}

fn http_url(value: &str) -> Result<String, String> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(value.to_string())
        }
        Ok(_) => Err("expected an http:// or https:// URL".into()),
        Err(e) => Err(format!("expected an http:// or https:// URL ({e})")),
    }
}

/// A directory that exists, or can be made.
fn directory(value: &str) -> Result<String, String> {
    match std::fs::metadata(Path::new(value)) {
        Ok(meta) if meta.is_dir() => Ok(value.to_string()),
        Ok(_) => Err("not a directory".into()),
        Err(_) if !value.is_empty() => Ok(value.to_string()),
        Err(e) => Err(format!("cannot use it ({e})")),
    }
}

fn readable_file(value: &str) -> Result<String, String> {
    match std::fs::metadata(Path::new(value)) {
        Ok(meta) if meta.is_file() => Ok(value.to_string()),
        Ok(_) => Err("not a file".into()),
        Err(e) => Err(format!("cannot read it ({e})")),
    }
}

/// `name=token` pairs; `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NamedTokens(pub Vec<(String, String)>);

impl std::fmt::Debug for NamedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

fn named_tokens(value: &str) -> Result<NamedTokens, String> {
    let mut tokens: Vec<(String, String)> = Vec::new();
    for pair in value.split(',') {
        let (name, token) = pair
            .split_once('=')
            .ok_or("expected name=token pairs separated by commas")?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err("each name is 1 to 64 of a-z, A-Z, 0-9, '.', '_' and '-'".into());
        }
        let token = secret(token)?;
        if token.len() < 16 {
            return Err("each token is at least 16 characters".into());
        }
        if tokens.iter().any(|(n, t)| n == name || *t == token) {
            return Err("names and tokens must be unique".into());
        }
        tokens.push((name.to_string(), token));
    }
    Ok(NamedTokens(tokens))
}

fn signing_key(value: &str) -> Result<events::audit::CheckpointSigner, String> {
    events::audit::CheckpointSigner::from_seed_hex(value)
}

fn secret(value: &str) -> Result<String, String> {
    if value.trim() != value || value.chars().any(char::is_control) {
        Err("has surrounding spaces or control characters (a pasting mistake?)".into())
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8001");
        assert_eq!(config.consistency_timeout, Duration::from_secs(2));
        assert!(config.gateway.providers.is_empty());
        assert!(config.gateway.quota_leases);
        assert!(config.admin_token.is_none());
    }

    #[test]
    fn set_values_are_parsed() {
        let config = Config::from_vars(vars(&[
            ("AIHUB_CONSISTENCY_TIMEOUT_MS", "15"),
            ("AIHUB_QUOTA_LEASES", "false"),
            ("OPENROUTER_API_KEY", "sk-or-1"),
            ("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1/"),
            ("AIHUB_FAKE_NOW", "2026-01-31T23:59:00Z"),
            ("AIHUB_ADMIN_TOKEN", ""),
        ]))
        .unwrap();
        assert_eq!(config.consistency_timeout, Duration::from_millis(15));
        assert!(!config.gateway.quota_leases);
        assert_eq!(config.gateway.providers.len(), 1);
        assert_eq!(
            config.gateway.providers[0].base_url,
            "http://127.0.0.1:9/api/v1"
        );
        assert_eq!(config.clock.now().to_rfc3339(), "2026-01-31T23:59:00+00:00");
        assert!(config.admin_token.is_none(), "empty counts as unset");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, bad) in [
            ("AIHUB_FAKE_NOW", "garbage"),
            ("AIHUB_CONSISTENCY_TIMEOUT_MS", "2s"),
            ("AIHUB_TOPIC_PARTITIONS", "0"),
            ("AIHUB_QUOTA_LEASES", "maybe"),
            ("KAFKA_BROKERS", "localhost"),
            ("DATABASE_URL", "mysql://x"),
        ] {
            let error = Config::from_vars(vars(&[(name, bad)])).unwrap_err().0;
            assert!(
                error.starts_with(&format!("{name}=")),
                "{name}={bad}: {error}"
            );
        }
    }

    #[test]
    fn the_connections_are_built_from_their_variables() {
        let ca = std::env::temp_dir().join(format!("aihub-config-ca-{}.pem", std::process::id()));
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let ca = ca.display().to_string();
        let config = Config::from_vars(vars(&[
            (
                "DATABASE_URL",
                "postgres://aihub:pw@db.example:5432/aihub?sslmode=verify-full",
            ),
            ("AIHUB_DATABASE_CA_FILE", &ca),
            ("KAFKA_BROKERS", "b-1.example:9096,b-2.example:9096"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "aihub"),
            ("KAFKA_SASL_PASSWORD", "kafka-secret"),
            ("KAFKA_SSL_CA_FILE", &ca),
        ]))
        .unwrap();
        assert_eq!(config.database.ca_file.as_deref(), Some(ca.as_str()));
        assert_eq!(
            config.database.config().unwrap().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(config.kafka.security_protocol, SecurityProtocol::SaslSsl);
        let sasl = config.kafka.sasl.clone().unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(sasl.password, "kafka-secret");
        let debug = format!("{config:?}");
        assert!(!debug.contains("kafka-secret"), "{debug}");
        assert!(!debug.contains(":pw@"), "{debug}");
        let lines = Config::describe(vars(&[("KAFKA_SASL_PASSWORD", "kafka-secret")]))
            .unwrap()
            .join("\n");
        assert!(lines.contains("KAFKA_SASL_PASSWORD=<redacted>"), "{lines}");
    }

    #[test]
    fn kafka_settings_that_do_not_go_together_stop_with_the_variable_named() {
        for (set, named) in [
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")],
                "KAFKA_SASL_MECHANISM",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                ],
                "KAFKA_SASL_USERNAME",
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KAFKA_SASL_USERNAME", "aihub"),
                ],
                "KAFKA_SASL_PASSWORD",
            ),
            (
                vec![("KAFKA_SASL_USERNAME", "aihub")],
                "KAFKA_SASL_USERNAME",
            ),
        ] {
            let error = Config::from_vars(vars(&set)).unwrap_err().0;
            assert!(error.starts_with(named), "{set:?}: {error}");
        }
        let error = Config::from_vars(vars(&[("KAFKA_SECURITY_PROTOCOL", "TLS")]))
            .unwrap_err()
            .0;
        assert!(
            error.starts_with("KAFKA_SECURITY_PROTOCOL=\"TLS\" is not valid"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_secret_is_not_echoed() {
        let error = Config::from_vars(vars(&[("GEMINI_API_KEY", " key-with-space")]))
            .unwrap_err()
            .0;
        assert!(error.starts_with("GEMINI_API_KEY=<redacted>"), "{error}");
        assert!(!error.contains("key-with-space"), "{error}");
    }

    #[test]
    fn the_description_redacts_secrets_and_passwords() {
        let lines = Config::describe(vars(&[
            ("OPENAI_API_KEY", "sk-secret"),
            ("DATABASE_URL", "postgres://aihub:hunter2@db:5432/aihub"),
        ]))
        .unwrap();
        let text = lines.join("\n");
        assert!(text.contains("OPENAI_API_KEY=<redacted>"), "{text}");
        assert!(!text.contains("sk-secret"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("DATABASE_URL=postgres://aihub:"), "{text}");
        assert!(
            text.contains("AIHUB_LISTEN=127.0.0.1:8001 (default)"),
            "{text}"
        );
        assert!(text.contains("AIHUB_ADMIN_TOKEN unset"), "{text}");
        assert_eq!(lines.len(), Config::variables().len());
    }
}
