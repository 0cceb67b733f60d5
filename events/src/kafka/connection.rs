//! How the platform reaches its brokers: the addresses, and the transport security and
//! authentication a managed Kafka (MSK, Confluent Cloud, Aiven) asks for. `client_config` is the
//! one place an rdkafka client's connection settings are made; every producer, consumer and
//! admin client starts from it.
//!
//! TLS is librdkafka's, on the system OpenSSL: the broker's certificate and host name are always
//! verified. SASL `PLAIN` and `SCRAM-SHA-256/512` are built into librdkafka; GSSAPI (Kerberos)
//! and OAUTHBEARER are not offered.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

/// The variables the connection is configured by, named in errors.
pub const BROKERS_VAR: &str = "KAFKA_BROKERS";
pub const SECURITY_PROTOCOL_VAR: &str = "KAFKA_SECURITY_PROTOCOL";
pub const SASL_MECHANISM_VAR: &str = "KAFKA_SASL_MECHANISM";
pub const SASL_USERNAME_VAR: &str = "KAFKA_SASL_USERNAME";
pub const SASL_PASSWORD_VAR: &str = "KAFKA_SASL_PASSWORD";
pub const SSL_CA_FILE_VAR: &str = "KAFKA_SSL_CA_FILE";

/// Kafka's `security.protocol`: whether the connection is encrypted, and whether it
/// authenticates with SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const NAMES: &'static str = "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!("`{value}` is not {}", Self::NAMES)),
        }
    }
}

/// The SASL mechanisms librdkafka has built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const NAMES: &'static str = "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err(format!("`{value}` is not {}", Self::NAMES)),
        }
    }
}

/// SASL credentials. The password never appears in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the brokers are and how to reach them. Build it with [`KafkaConnection::plaintext`] or
/// [`KafkaConnection::new`], which refuses settings that do not go together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConnection {
    /// Bootstrap servers, `host:port,host:port`.
    pub brokers: String,
    pub security_protocol: SecurityProtocol,
    /// Present exactly when the protocol is `SASL_*`.
    pub sasl: Option<SaslCredentials>,
    /// PEM certificates the broker's certificate must chain to, instead of the system's trust
    /// store (only with `SSL` or `SASL_SSL`).
    pub ssl_ca_file: Option<String>,
}

/// The settings as configured, before they are checked to go together.
#[derive(Debug, Clone, Default)]
pub struct KafkaSettings {
    pub brokers: String,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    pub ssl_ca_file: Option<String>,
}

impl KafkaConnection {
    /// Brokers reached without TLS or SASL, as on one machine.
    pub fn plaintext(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            ssl_ca_file: None,
        }
    }

    /// Checks that the settings go together; the error names the variable to fix.
    pub fn new(settings: KafkaSettings) -> Result<Self, String> {
        let KafkaSettings {
            brokers,
            security_protocol: protocol,
            sasl_mechanism,
            sasl_username,
            sasl_password,
            ssl_ca_file,
        } = settings;
        if brokers.trim().is_empty() {
            return Err(format!("{BROKERS_VAR} is empty"));
        }
        let sasl = if protocol.sasl() {
            let Some(mechanism) = sasl_mechanism else {
                return Err(format!(
                    "{SASL_MECHANISM_VAR} must be {} when {SECURITY_PROTOCOL_VAR} is {protocol}",
                    SaslMechanism::NAMES
                ));
            };
            let Some(username) = sasl_username.filter(|u| !u.is_empty()) else {
                return Err(format!(
                    "{SASL_USERNAME_VAR} is required when {SECURITY_PROTOCOL_VAR} is {protocol}"
                ));
            };
            let Some(password) = sasl_password.filter(|p| !p.is_empty()) else {
                return Err(format!(
                    "{SASL_PASSWORD_VAR} is required when {SECURITY_PROTOCOL_VAR} is {protocol}"
                ));
            };
            Some(SaslCredentials {
                mechanism,
                username,
                password,
            })
        } else {
            // Credentials that would be silently ignored are a mistake worth stopping for.
            let given = [
                (SASL_MECHANISM_VAR, sasl_mechanism.is_some()),
                (SASL_USERNAME_VAR, sasl_username.is_some()),
                (SASL_PASSWORD_VAR, sasl_password.is_some()),
            ];
            if let Some((var, _)) = given.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{var} is set but {SECURITY_PROTOCOL_VAR} is {protocol}: SASL needs SASL_SSL (or SASL_PLAINTEXT)"
                ));
            }
            None
        };
        if let Some(path) = &ssl_ca_file {
            if !protocol.tls() {
                return Err(format!(
                    "{SSL_CA_FILE_VAR} is set but {SECURITY_PROTOCOL_VAR} is {protocol}: a CA file needs SSL or SASL_SSL"
                ));
            }
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("{SSL_CA_FILE_VAR}: reading {path}: {e}"))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "{SSL_CA_FILE_VAR}: {path} holds no PEM certificate"
                ));
            }
        }
        Ok(Self {
            brokers,
            security_protocol: protocol,
            sasl,
            ssl_ca_file,
        })
    }

    /// The same servers with other brokers (a test's own, say).
    pub fn with_brokers(&self, brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            ..self.clone()
        }
    }

    /// An rdkafka configuration holding only the connection: the bootstrap servers, the
    /// security protocol, the SASL credentials and the trusted CA. Callers add their own
    /// producer, consumer or admin settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("security.protocol", self.security_protocol.as_str());
        if self.security_protocol.tls() {
            // The default since librdkafka 2.0; set so that no build can turn it off.
            config
                .set("enable.ssl.certificate.verification", "true")
                .set("ssl.endpoint.identification.algorithm", "https");
            if let Some(path) = &self.ssl_ca_file {
                config.set("ssl.ca.location", path);
            }
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        config
    }

    /// Asks the brokers for their metadata, within `limit`; blocks (call it off async
    /// threads). Fails, saying why, as soon as a broker refuses the TLS handshake or the SASL
    /// credentials (which no retry would fix) or every broker is down; otherwise after `limit`.
    pub fn check(&self, limit: Duration) -> Result<(), ConnectionError> {
        let unreachable = |message: String| ConnectionError {
            kind: ConnectionErrorKind::Unreachable,
            message,
        };
        let producer: BaseProducer<Recorder> = self
            .client_config()
            .create_with_context(Recorder::default())
            .map_err(|e| unreachable(format!("creating a Kafka client: {e}")))?;
        let started = Instant::now();
        let outcome = loop {
            let step = Duration::from_millis(250).min(limit.saturating_sub(started.elapsed()));
            let fetched = producer.client().fetch_metadata(None, step);
            // Serves the error callback, which records why connections failed.
            producer.poll(Duration::ZERO);
            if fetched.is_ok() {
                break Ok(());
            }
            if let Some(error) = producer.context().verdict() {
                break Err(self.explain(error));
            }
            if started.elapsed() >= limit {
                let reason = fetched.err().map(|e| e.to_string()).unwrap_or_default();
                break Err(unreachable(format!(
                    "no answer from the Kafka brokers at {} within {limit:?} ({reason})",
                    self.brokers
                )));
            }
        };
        // Destroying the client waits on the broker: not on the caller's time.
        std::thread::spawn(move || drop(producer));
        outcome
    }

    fn explain(&self, (code, reason): (Option<RDKafkaErrorCode>, String)) -> ConnectionError {
        let brokers = &self.brokers;
        match code {
            Some(RDKafkaErrorCode::Authentication) if self.sasl.is_some() => ConnectionError {
                kind: ConnectionErrorKind::Authentication,
                message: format!(
                    "the Kafka brokers at {brokers} refused the SASL credentials ({SASL_MECHANISM_VAR}, {SASL_USERNAME_VAR}, {SASL_PASSWORD_VAR}): {reason}"
                ),
            },
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL) => ConnectionError {
                kind: ConnectionErrorKind::Tls,
                message: format!(
                    "TLS with the Kafka brokers at {brokers} failed ({SECURITY_PROTOCOL_VAR}, {SSL_CA_FILE_VAR}): {reason}"
                ),
            },
            _ => {
                // A TLS listener hangs up on a client that does not speak TLS, and librdkafka
                // then reports only that the brokers are down.
                let hint = if reason.ends_with("brokers are down") && !self.security_protocol.tls()
                {
                    " (a TLS listener answers a plaintext client so: is the protocol right?)"
                } else {
                    ""
                };
                ConnectionError {
                    kind: ConnectionErrorKind::Unreachable,
                    message: format!(
                        "the Kafka brokers at {brokers} are not reachable with {SECURITY_PROTOCOL_VAR}={}: {reason}{hint}",
                        self.security_protocol
                    ),
                }
            }
        }
    }
}

/// Why the brokers could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionErrorKind {
    /// Down, or not answering: may pass.
    Unreachable,
    /// The TLS handshake failed: the certificate does not verify, or the listener is not TLS.
    Tls,
    /// The brokers refused the SASL credentials.
    Authentication,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectionError {
    pub kind: ConnectionErrorKind,
    pub message: String,
}

impl ConnectionError {
    /// A configuration error that waiting will not fix.
    pub fn is_misconfiguration(&self) -> bool {
        self.kind != ConnectionErrorKind::Unreachable
    }
}

/// Keeps the errors librdkafka reports, and the first connection failure it logs (which says
/// more than "1/1 brokers are down"), for `check` to explain.
#[derive(Default)]
struct Recorder {
    errors: Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
    failure: Mutex<Option<String>>,
}

impl Recorder {
    /// The error that ends a check: a refused handshake or credentials at once; otherwise only
    /// once every broker is down (one broker of several being away is no reason to stop), with
    /// the most telling reason.
    fn verdict(&self) -> Option<(Option<RDKafkaErrorCode>, String)> {
        let errors = self.errors.lock().ok()?;
        let fatal = |code| {
            matches!(
                code,
                Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
            )
        };
        if let Some(error) = errors.iter().find(|(code, _)| fatal(*code)) {
            return Some(error.clone());
        }
        let all_down = Some(RDKafkaErrorCode::AllBrokersDown);
        let (code, reason) = errors.iter().find(|(code, _)| *code == all_down)?.clone();
        let telling = errors
            .iter()
            .find(|(code, _)| *code != all_down)
            .map(|(_, reason)| reason.clone())
            .or_else(|| self.failure.lock().ok().and_then(|f| f.clone()));
        Some((code, telling.unwrap_or(reason)))
    }
}

impl ClientContext for Recorder {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < 32 {
                errors.push((error.rdkafka_error_code(), reason.to_string()));
            }
        }
    }

    fn log(&self, _: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility == "FAIL" {
            if let Ok(mut failure) = self.failure.lock() {
                failure.get_or_insert_with(|| message.to_string());
            }
        }
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(protocol: SecurityProtocol) -> KafkaSettings {
        KafkaSettings {
            brokers: "b1:9096,b2:9096".into(),
            security_protocol: protocol,
            ..KafkaSettings::default()
        }
    }

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("aihub-kafka-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write");
        path
    }

    fn value(config: &ClientConfig, key: &str) -> Option<String> {
        config.get(key).map(str::to_string)
    }

    #[test]
    fn names_parse_in_any_case() {
        assert_eq!(
            "sasl_ssl".parse::<SecurityProtocol>(),
            Ok(SecurityProtocol::SaslSsl)
        );
        assert_eq!(
            "SCRAM-SHA-512".parse::<SaslMechanism>(),
            Ok(SaslMechanism::ScramSha512)
        );
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert!("GSSAPI".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn plaintext_sets_only_the_brokers_and_protocol() {
        let config = KafkaConnection::new(settings(SecurityProtocol::Plaintext))
            .expect("valid")
            .client_config();
        assert_eq!(
            value(&config, "bootstrap.servers").as_deref(),
            Some("b1:9096,b2:9096")
        );
        assert_eq!(
            value(&config, "security.protocol").as_deref(),
            Some("PLAINTEXT")
        );
        assert_eq!(value(&config, "sasl.username"), None);
        assert_eq!(value(&config, "ssl.ca.location"), None);
    }

    #[test]
    fn sasl_ssl_sets_credentials_and_verification() {
        let ca = temp_file(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        let connection = KafkaConnection::new(KafkaSettings {
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("aihub".into()),
            sasl_password: Some("s3cret".into()),
            ssl_ca_file: Some(ca.display().to_string()),
            ..settings(SecurityProtocol::SaslSsl)
        })
        .expect("valid");
        let config = connection.client_config();
        assert_eq!(
            value(&config, "security.protocol").as_deref(),
            Some("SASL_SSL")
        );
        assert_eq!(
            value(&config, "sasl.mechanism").as_deref(),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(value(&config, "sasl.username").as_deref(), Some("aihub"));
        assert_eq!(value(&config, "sasl.password").as_deref(), Some("s3cret"));
        assert_eq!(
            value(&config, "ssl.ca.location"),
            Some(ca.display().to_string())
        );
        assert_eq!(
            value(&config, "ssl.endpoint.identification.algorithm").as_deref(),
            Some("https")
        );
        let debug = format!("{connection:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn settings_that_do_not_go_together_name_the_variable() {
        let error = |s: KafkaSettings| KafkaConnection::new(s).expect_err("refused");
        let sasl = settings(SecurityProtocol::SaslSsl);
        assert!(error(sasl.clone()).contains(SASL_MECHANISM_VAR));
        let with_mechanism = KafkaSettings {
            sasl_mechanism: Some(SaslMechanism::Plain),
            ..sasl
        };
        assert!(error(with_mechanism.clone()).contains(SASL_USERNAME_VAR));
        let with_user = KafkaSettings {
            sasl_username: Some("aihub".into()),
            ..with_mechanism
        };
        assert!(error(with_user.clone()).contains(SASL_PASSWORD_VAR));
        // Credentials without SASL would be ignored.
        let ignored = KafkaSettings {
            sasl_username: Some("aihub".into()),
            ..settings(SecurityProtocol::Ssl)
        };
        assert!(error(ignored).contains(SASL_USERNAME_VAR));
        // A CA file without TLS, or one that is missing or holds no certificate.
        let not_pem_file = temp_file("not-pem", "hello").display().to_string();
        let no_tls = KafkaSettings {
            ssl_ca_file: Some(not_pem_file.clone()),
            ..settings(SecurityProtocol::Plaintext)
        };
        assert!(error(no_tls).contains(SSL_CA_FILE_VAR));
        let missing = KafkaSettings {
            ssl_ca_file: Some("/nonexistent/ca.pem".into()),
            ..settings(SecurityProtocol::Ssl)
        };
        assert!(error(missing).contains(SSL_CA_FILE_VAR));
        let not_pem = KafkaSettings {
            ssl_ca_file: Some(not_pem_file.clone()),
            ..settings(SecurityProtocol::Ssl)
        };
        assert!(error(not_pem).contains("no PEM certificate"));
        let empty = KafkaSettings {
            brokers: " ".into(),
            ..settings(SecurityProtocol::Plaintext)
        };
        assert!(error(empty).contains(BROKERS_VAR));
    }
}
