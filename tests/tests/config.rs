//! Configuration is parsed strictly: a malformed value of any variable stops the real binary at
//! once, before it connects to anything, with a message naming the variable; the effective
//! configuration is logged at start with its secrets redacted.

use std::{process::Stdio, time::Duration};

use e2e::aihub_binary;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A malformed value for every variable `platform::Config` reads. A new variable without an entry
/// here fails `every_variable_has_a_malformed_example`.
const MALFORMED: &[(&str, &str)] = &[
    ("DATABASE_URL", "mysql://db/aihub"),
    ("AIHUB_DATABASE_CA_FILE", "/"),
    ("KAFKA_BROKERS", "broker-without-port"),
    ("KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("KAFKA_SASL_MECHANISM", "GSSAPI"),
    ("KAFKA_SASL_USERNAME", " aihub"),
    ("KAFKA_SASL_PASSWORD", "kafka-password\n"),
    ("KAFKA_SSL_CA_FILE", "/nonexistent/ca.pem"),
    ("AIHUB_TOPIC", "events topic"),
    ("AIHUB_TOPIC_PARTITIONS", "twelve"),
    ("AIHUB_TOPIC_REPLICATION", "0"),
    ("AIHUB_LISTEN", "127.0.0.1:99999"),
    ("AIHUB_OPS_LISTEN", "9090"),
    ("AIHUB_ADMIN_TOKEN", "token\twith a tab"),
    ("AIHUB_PAYMENT_WEBHOOK_SECRET", " whsec_with_a_space"),
    ("AIHUB_ADMIN_TOKENS", "alice:token-without-equals-sign"),
    ("AIHUB_CONSISTENCY_TIMEOUT_MS", "2s"),
    ("AIHUB_CONSUMER_GROUP_PREFIX", "group/prefix"),
    ("AIHUB_RELAY_MESSAGE_TIMEOUT_MS", "0"),
    ("AIHUB_RELAY_SWEEP_MS", "-5"),
    ("AIHUB_PROJECTOR_LINGER_MS", "0.2s"),
    ("AIHUB_RELAY_LINGER_MS", "-1"),
    ("AIHUB_MAX_BODY_BYTES", "1MB"),
    ("AIHUB_EXPORT_CONNECTIONS", "0"),
    ("AIHUB_BACKGROUND_THREADS", "65"),
    ("AIHUB_BACKGROUND_NICE", "20"),
    ("AIHUB_BACKGROUND_IDLE", "mostly"),
    ("AIHUB_EXPORT_STATEMENT_TIMEOUT_MS", "5min"),
    ("AIHUB_AUTH_FAILURE_WINDOW_MS", "5 s"),
    ("AIHUB_AUTH_CACHE_TTL_MS", "1e4"),
    ("AIHUB_SSO_JWKS_REFETCH_MS", "0"),
    ("AIHUB_SSO_ALLOW_LOOPBACK_HTTP", "sometimes"),
    ("AIHUB_SHUTDOWN_TIMEOUT_MS", "30s"),
    ("AIHUB_AUDIT_SIGNING_KEY", "not-a-hex-seed"),
    ("AIHUB_PERSONAL_DATA_SECRET", "0123"),
    ("AIHUB_AUDIT_CHECKPOINT_MS", "1min"),
    ("AIHUB_ALERT_EVAL_MS", "0"),
    ("AIHUB_NOTIFY_BACKOFF_MS", "1s"),
    ("AIHUB_SMTP_URL", "mail.example.com:25"),
    ("AIHUB_SMTP_FROM", "alerts at example dot com"),
    ("AIHUB_WEBHOOK_ALLOW_NETWORKS", "10.0.0.0/33"),
    ("OPENROUTER_API_KEY", " sk-or-pasted-with-a-space"),
    ("OPENROUTER_BASE_URL", "openrouter.ai/api/v1"),
    ("GEMINI_API_KEY", "key\n"),
    ("GEMINI_BASE_URL", "ftp://generativelanguage.googleapis.com"),
    ("OPENAI_API_KEY", "sk-openai "),
    ("OPENAI_BASE_URL", "http://"),
    ("AIHUB_MODELS_FILE", "/nonexistent/models.json"),
    ("AIHUB_UPSTREAM_CA_FILE", "/"),
    ("AIHUB_CATALOG_REFRESH_MS", "0"),
    ("AIHUB_UPSTREAM_TIMEOUT_MS", "thirty seconds"),
    ("AIHUB_CHAT_DEADLINE_MS", ""),
    ("AIHUB_STREAM_IDLE_MS", "60000.5"),
    ("AIHUB_BREAKER_FAILURES", "0"),
    ("AIHUB_BREAKER_COOLDOWN_MS", "soon"),
    ("AIHUB_QUOTA_LEASES", "maybe"),
    ("AIHUB_QUOTA_FLUSH_MS", "0"),
    ("AIHUB_QUOTA_LEASE_IDLE_MS", "2000ms"),
    ("AIHUB_QUOTA_MAX_LEASE_TOKENS", "-1"),
    ("AIHUB_SPOOL_DIR", "/etc/hostname"),
    ("AIHUB_SPOOL_FSYNC", "sometimes"),
    ("AIHUB_EVENT_QUEUE", "0"),
    ("AIHUB_SPOOL_BACKLOG", "half a million"),
    ("AIHUB_JOURNAL_DEFER_MS", "20s"),
    ("AIHUB_FAKE_NOW", "garbage"),
    ("AIHUB_BILLING_CLOSE_EVERY_MS", "15m"),
    ("AIHUB_BILLING_CLOSE_GRACE_MS", "1h"),
    // Read by the logger, before the rest.
    ("AIHUB_LOG_FORMAT", "xml"),
    ("RUST_LOG", "aihub=loud"),
];

/// Variables where an empty value is the malformed example's point: it counts as unset.
const EMPTY_IS_UNSET: &[&str] = &["AIHUB_CHAT_DEADLINE_MS"];

#[test]
fn the_secrets_are_known_as_secrets() {
    let secrets = platform::Config::secret_variables();
    for name in [
        "AIHUB_ADMIN_TOKEN",
        "AIHUB_ADMIN_TOKENS",
        "AIHUB_PAYMENT_WEBHOOK_SECRET",
        "OPENROUTER_API_KEY",
        "GEMINI_API_KEY",
        "OPENAI_API_KEY",
    ] {
        assert!(secrets.iter().any(|s| s == name), "{name} is not redacted");
    }
}

#[test]
fn every_variable_has_a_malformed_example() {
    for name in platform::Config::variables() {
        assert!(
            MALFORMED.iter().any(|(n, _)| *n == name),
            "{name} has no malformed example in tests/tests/config.rs"
        );
    }
}

/// `aihub serve` with one variable malformed (the rest unset) exits non-zero, naming it, without
/// reaching for the database or the broker (both point at closed ports, so a process that went on
/// would hang on them rather than exit).
#[tokio::test]
async fn a_malformed_variable_stops_the_binary_and_is_named() {
    let mut checks = Vec::new();
    for (name, bad) in MALFORMED {
        if EMPTY_IS_UNSET.contains(name) {
            continue;
        }
        checks.push(async move {
            let mut command = tokio::process::Command::new(aihub_binary());
            command
                .arg("serve")
                .env_clear()
                .env(
                    "DATABASE_URL",
                    "postgres://postgres@127.0.0.1:1/unreachable",
                )
                .env("KAFKA_BROKERS", "127.0.0.1:1")
                .env("AIHUB_LISTEN", "127.0.0.1:0")
                .env(name, bad)
                .kill_on_drop(true);
            let output = tokio::time::timeout(Duration::from_secs(30), command.output())
                .await
                .unwrap_or_else(|_| panic!("{name}={bad:?}: the binary did not stop"))
                .expect("aihub runs");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                !output.status.success(),
                "{name}={bad:?}: exited successfully"
            );
            assert!(
                stderr.contains(&format!("{name}=")) && stderr.contains("is not valid"),
                "{name}={bad:?}: the message does not name the variable: {stderr}"
            );
            assert!(
                !stderr.contains("panicked"),
                "{name}={bad:?}: panicked: {stderr}"
            );
            if platform::Config::secret_variables()
                .iter()
                .any(|s| s == name)
            {
                assert!(
                    !stderr.contains(bad.trim()),
                    "{name}: the secret is echoed: {stderr}"
                );
            }
        });
    }
    futures::future::join_all(checks).await;
}

#[tokio::test]
async fn an_empty_variable_counts_as_unset() {
    for name in EMPTY_IS_UNSET {
        let config = platform::Config::from_vars([(name.into(), "".into())])
            .unwrap_or_else(|e| panic!("{name}= is rejected: {e}"));
        assert_eq!(config.gateway.deadline, Duration::from_secs(120));
    }
}

/// The effective configuration is logged at start: every variable, defaults marked, secrets and
/// the database password redacted.
#[tokio::test]
async fn the_effective_configuration_is_logged_with_secrets_redacted() {
    let mut child = tokio::process::Command::new(aihub_binary())
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            "postgres://aihub:hunter2-db-password@127.0.0.1:1/aihub",
        )
        .env("KAFKA_BROKERS", "127.0.0.1:1")
        .env("AIHUB_LISTEN", "127.0.0.1:0")
        .env("OPENROUTER_API_KEY", "sk-or-very-secret-key")
        .env("AIHUB_ADMIN_TOKEN", "admin-very-secret-token")
        .env("AIHUB_QUOTA_FLUSH_MS", "250")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("aihub starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut logged = Vec::new();
    let wanted = platform::Config::variables().len();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if platform::Config::variables().iter().any(|name| {
                line.contains(&format!(" {name}=")) || line.contains(&format!(" {name} unset"))
            }) {
                logged.push(line);
                if logged.len() == wanted {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the configuration is logged at start");
    let _ = child.kill().await;
    let text = logged.join("\n");
    assert_eq!(logged.len(), wanted, "{text}");
    for secret in [
        "hunter2-db-password",
        "sk-or-very-secret-key",
        "admin-very-secret-token",
    ] {
        assert!(!text.contains(secret), "{secret} is logged: {text}");
    }
    for expected in [
        "OPENROUTER_API_KEY=<redacted>",
        "AIHUB_ADMIN_TOKEN=<redacted>",
        "DATABASE_URL=postgres://aihub:",
        "AIHUB_QUOTA_FLUSH_MS=250",
        "AIHUB_QUOTA_LEASE_IDLE_MS=2000 (default)",
        "GEMINI_API_KEY unset",
    ] {
        assert!(text.contains(expected), "{expected} is not logged: {text}");
    }
}
