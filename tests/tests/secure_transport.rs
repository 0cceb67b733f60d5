//! AI Hub over the transports managed services require: PostgreSQL over TLS with a password, and
//! Kafka over SASL_SSL (SCRAM and PLAIN) or SSL, against our own servers configured that way
//! (`infra/local/secure.sh up`: Debian's PostgreSQL accepting only TLS, and a broker with
//! SASL_SSL and SSL listeners, both presenting a certificate of a throwaway CA).
//!
//! The tests need those servers, named by the environment `secure.sh up` prints, so they are
//! ignored in an ordinary run; `infra/local/test.sh` runs them:
//!
//! ```text
//! eval "$(infra/local/secure.sh up)"
//! cargo test -p e2e --test secure_transport -- --include-ignored
//! ```

use std::time::{Duration, Instant};

use e2e::upstream::Upstream;
use e2e::{admin_key, kafka, wait_for, Env, Tenant};
use events::kafka::{
    ConnectionErrorKind, KafkaConnection, KafkaSettings, SaslMechanism, SecurityProtocol,
};
use platform::config::ProviderConfig;
use platform::db::Database;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio_postgres::config::SslMode;

const NEEDS: &str = "needs the TLS PostgreSQL and the SASL_SSL broker: infra/local/test.sh runs it (or eval \"$(infra/local/secure.sh up)\" and --include-ignored)";

/// The secure environment, checked: a run pointed at plaintext servers would prove nothing.
fn secure() -> platform::Config {
    let config = platform::Config::from_env().expect("the environment's configuration is valid");
    assert_eq!(
        config
            .database
            .config()
            .expect("DATABASE_URL")
            .get_ssl_mode(),
        SslMode::Require,
        "DATABASE_URL must have sslmode=require: {NEEDS}"
    );
    assert!(
        config.database.ca_file.is_some(),
        "AIHUB_DATABASE_CA_FILE must name the test CA: {NEEDS}"
    );
    assert_eq!(
        config.kafka.security_protocol,
        SecurityProtocol::SaslSsl,
        "KAFKA_SECURITY_PROTOCOL must be SASL_SSL: {NEEDS}"
    );
    config
}

/// The broker's SSL listener (no SASL), which `secure.sh` names in this variable.
fn ssl_listener() -> String {
    std::env::var("AIHUB_TEST_KAFKA_SSL_BROKERS")
        .unwrap_or_else(|_| panic!("AIHUB_TEST_KAFKA_SSL_BROKERS is not set: {NEEDS}"))
}

/// A PEM file of a CA that signed nothing of our servers.
fn stranger_ca() -> String {
    e2e::tls::private_ca().ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the TLS PostgreSQL and the SASL_SSL broker (infra/local/test.sh runs it)"]
async fn the_platform_runs_over_postgres_tls_and_kafka_sasl_ssl() {
    secure();
    let provider = Upstream::start().await;
    let mut env = Env::new().await;
    let catalog = json!([{"name": "gpt-4o", "tier": "basic", "context_length": 128000,
        "input_micros_per_mtok": 2_500_000, "output_micros_per_mtok": 10_000_000,
        "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o"}]}]);
    let file = std::env::temp_dir().join(format!("aihub-models-{}.json", env.database));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: provider.openai_base_url(),
        api_key: "or-test".into(),
    }];

    // The test's own connection is TLS, and the server takes nothing else.
    let db = env.db().await;
    let ssl: bool = db
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "the test's Postgres connection is not TLS");
    let plain = env.config.database.with_url(
        env.config
            .database
            .url
            .replace("sslmode=require", "sslmode=disable"),
    );
    let refused = plain.connect().await.expect_err("a plain connection");
    assert!(
        format!("{refused:#}").contains("no encryption"),
        "the server refuses plain connections: {refused:#}"
    );

    // A write goes through the journal, the SASL_SSL topic and the projectors, and is read
    // back (201: read-your-writes held).
    let (app, admin) = env.app().await;
    let tenant = Tenant::create(&admin, "secure").await;
    let read = admin
        .get(&format!("/api/v1/organizations/{}", tenant.org_id))
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["checks"]["broker"], true);

    // A chat call is answered and billed.
    let key = admin_key(
        &admin,
        &tenant.org_id,
        Some(&tenant.owner_id),
        &["chat:write".into()],
    )
    .await;
    let reply = admin
        .with_token(&key)
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello over TLS"}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_for(Duration::from_secs(30), "the chat call billed", || async {
        env.count(
            "SELECT count(*) FROM read.chat_calls WHERE outcome = 'succeeded' AND cost_micros > 0",
        )
        .await
            == 1
    })
    .await;
    env.wait_until_projected(Duration::from_secs(30)).await;
    env.assert_every_event_applied_once().await;

    // The events are on the topic, read by a consumer of our own over SASL_SSL.
    let journal = env.count("SELECT count(*) FROM journal").await as usize;
    let messages = kafka::read_until(
        &env.config.kafka,
        &env.config.topic,
        Duration::from_secs(60),
        |seen| seen.len() >= journal,
    )
    .await;
    assert!(messages
        .iter()
        .any(|m| kafka::key(m) == tenant.org_id && m.payload().is_some()));
    app.stop().await;
}

/// Produces one message to a topic of its own and reads it back, over `connection`.
async fn round_trip(connection: &KafkaConnection) {
    let topic = format!("aihub.test.secure.{}", uuid::Uuid::now_v7().simple());
    events::kafka::ensure_topic(connection, &topic, 1, 1)
        .await
        .unwrap_or_else(|e| panic!("{connection:?}: creating {topic}: {e}"));
    let producer: FutureProducer = events::kafka::producer_config(connection)
        .create()
        .expect("producer");
    let payload = format!("over {}", connection.security_protocol);
    producer
        .send(
            FutureRecord::to(&topic).key("k").payload(&payload),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("{connection:?}: producing: {e}"));
    let consumer: StreamConsumer =
        events::kafka::consumer_config(connection, &format!("{topic}.reader"))
            .create()
            .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("{connection:?}: nothing consumed"))
        .expect("message");
    assert_eq!(message.payload(), Some(payload.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the TLS PostgreSQL and the SASL_SSL broker (infra/local/test.sh runs it)"]
async fn every_sasl_mechanism_and_ssl_alone_produce_and_consume() {
    let sasl_ssl = secure().kafka;
    let credentials = sasl_ssl.sasl.clone().expect("SASL credentials");
    for mechanism in [
        SaslMechanism::ScramSha512,
        SaslMechanism::ScramSha256,
        SaslMechanism::Plain,
    ] {
        let mut connection = sasl_ssl.clone();
        if let Some(sasl) = connection.sasl.as_mut() {
            sasl.mechanism = mechanism;
        }
        connection
            .check(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        round_trip(&connection).await;
    }
    // The SSL listener: TLS, no SASL.
    let ssl = KafkaConnection::new(KafkaSettings {
        brokers: ssl_listener(),
        security_protocol: SecurityProtocol::Ssl,
        ssl_ca_file: sasl_ssl.ssl_ca_file.clone(),
        ..KafkaSettings::default()
    })
    .expect("SSL settings");
    round_trip(&ssl).await;
    assert_eq!(credentials.username, "aihub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the TLS PostgreSQL and the SASL_SSL broker (infra/local/test.sh runs it)"]
async fn a_wrong_kafka_password_or_an_untrusted_ca_stops_the_start_with_the_reason() {
    secure();
    let mut wrong_password = Env::new().await;
    if let Some(sasl) = wrong_password.config.kafka.sasl.as_mut() {
        sasl.password = "not-the-password".into();
    }
    let mut untrusted = Env::new().await;
    untrusted.config.kafka.ssl_ca_file = Some(stranger_ca());
    let mut plaintext_to_tls = Env::new().await;
    plaintext_to_tls.config.kafka = KafkaConnection::plaintext(&untrusted.config.kafka.brokers);
    for (env, expected, kind) in [
        (
            &wrong_password,
            "refused the SASL credentials",
            ConnectionErrorKind::Authentication,
        ),
        (
            &untrusted,
            "certificate verify failed",
            ConnectionErrorKind::Tls,
        ),
    ] {
        let started = Instant::now();
        let error = match aihub::start(env.config.clone(), aihub::Roles::all()).await {
            Ok(running) => {
                running.stop().await;
                panic!("{expected}: AI Hub started")
            }
            Err(e) => e,
        };
        let reason = format!("{error:#}");
        assert!(reason.contains(expected), "{reason}");
        assert_eq!(
            error
                .downcast_ref::<events::kafka::ConnectionError>()
                .map(|e| e.kind),
            Some(kind),
            "{reason}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{expected}: took {:?}",
            started.elapsed()
        );
    }
    // The binary says the same and exits: `aihub bootstrap` with the wrong password.
    let mut command = tokio::process::Command::new(e2e::aihub_binary());
    wrong_password.connect_command(command.as_std_mut());
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        command
            .arg("bootstrap")
            .env("AIHUB_TOPIC", &wrong_password.config.topic)
            .output(),
    )
    .await
    .expect("aihub bootstrap ends")
    .expect("aihub runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("KAFKA_SASL_PASSWORD") && stderr.contains("invalid credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // A plaintext client on the TLS listener is not a misconfiguration we can tell from a
    // broker that is away: the check says what it saw, quickly, and the start goes on.
    let error = plaintext_to_tls
        .config
        .kafka
        .check(Duration::from_secs(10))
        .expect_err("plaintext to a TLS listener");
    assert_eq!(error.kind, ConnectionErrorKind::Unreachable, "{error}");
    assert!(
        error.to_string().contains("KAFKA_SECURITY_PROTOCOL"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the TLS PostgreSQL and the SASL_SSL broker (infra/local/test.sh runs it)"]
async fn postgres_refuses_a_certificate_it_cannot_verify() {
    secure();
    let database = e2e::database("postgres");
    // Our CA: connects (and `prefer` takes TLS when offered).
    database.connect().await.expect("verified TLS");
    let prefer = database.with_url(database.url.replace("sslmode=require", "sslmode=prefer"));
    let client = prefer.connect().await.expect("prefer takes TLS");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl);
    // Only the public roots, or another CA: the certificate does not verify, and the error
    // says so at once.
    for ca_file in [None, Some(stranger_ca())] {
        let untrusted = Database::new(database.url.clone(), ca_file.clone());
        let started = Instant::now();
        let error = untrusted.connect().await.expect_err("an unverified server");
        let reason = format!("{error:#}");
        assert!(
            reason.contains("invalid peer certificate") || reason.contains("UnknownIssuer"),
            "{ca_file:?}: {reason}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{reason}");
        assert!(untrusted.pool(1).expect("pool").get().await.is_err());
    }
    // The host name is verified too: the certificate names 127.0.0.1 and localhost only. The
    // same server, reached by address under another name, is refused.
    let other_name = database.with_url(format!(
        "{}&hostaddr=127.0.0.1",
        database
            .url
            .replace("@127.0.0.1:", "@db.other-name.example:")
    ));
    let error = format!(
        "{:#}",
        other_name.connect().await.expect_err("another host name")
    );
    assert!(error.contains("not valid for name"), "{error}");
}
