//! The harness of the end-to-end tests: each test gets a fresh database (from a migrated
//! template), a topic and consumer groups of its own on the real broker, and a real AI Hub
//! process on a free port. Nothing of our own infrastructure is mocked.

pub mod broker;
pub mod kafka;
pub mod tls;
pub mod upstream;

use std::time::Duration;

use aihub::{Roles, Running};
use events::kafka::KafkaConnection;
use platform::db::Database;
use platform::Config;
use serde_json::Value;
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;

/// The configuration of the test run's environment: `DATABASE_URL` names the Postgres server
/// (its database part is replaced per test; `sslmode` and `AIHUB_DATABASE_CA_FILE` apply), and
/// `KAFKA_BROKERS` with the `KAFKA_*` security variables the broker.
fn environment() -> Config {
    Config::from_env().expect("the test environment's configuration is valid")
}

/// `postgres://user@host:port/db?params` with another database, the parameters kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => server,
        _ => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// The test server's database `name`, reached as the environment says (TLS and CA included).
pub fn database(name: &str) -> Database {
    let server = environment().database;
    server.with_url(with_database(&server.url, name))
}

/// The broker the tests share, reached as the environment says.
pub fn kafka() -> KafkaConnection {
    environment().kafka
}

pub fn brokers() -> String {
    kafka().brokers
}

async fn connect(database: &Database) -> tokio_postgres::Client {
    database.connect().await.expect("Postgres is reachable")
}

/// A migrated template database, made once per set of migrations, under a lock.
async fn template() -> String {
    let name = format!("aihub_tpl_{}", platform::db::migrations_fingerprint());
    let admin = connect(&database("postgres")).await;
    admin
        .execute("SELECT pg_advisory_lock(4242)", &[])
        .await
        .expect("lock");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query");
    if exists.is_none() {
        let building = format!("{name}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
            .await
            .expect("drop");
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .expect("create template");
        let pool = database(&building).pool(1).expect("pool");
        platform::db::migrate(&pool)
            .await
            .expect("migrate template");
        pool.close();
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await
            .expect("rename");
    }
    admin
        .execute("SELECT pg_advisory_unlock(4242)", &[])
        .await
        .expect("unlock");
    name
}

/// The seed of the tests' audit checkpoint key (`AIHUB_AUDIT_SIGNING_KEY`).
pub const TEST_AUDIT_SEED: &str =
    "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// A fresh database and topic for one test.
pub struct Env {
    pub config: Config,
    pub database: String,
}

impl Env {
    pub async fn new() -> Self {
        Self::with_kafka(kafka(), 1).await
    }

    /// With brokers of the test's own, reached in plaintext (tests/src/broker.rs).
    pub async fn with_brokers(brokers: &str) -> Self {
        Self::with_replicas(brokers, 1).await
    }

    /// On a cluster of the test's own: the test's topic has `replication` replicas (two in sync
    /// for three).
    pub async fn with_replicas(brokers: &str, replication: i32) -> Self {
        Self::with_kafka(KafkaConnection::plaintext(brokers), replication).await
    }

    pub async fn with_kafka(kafka: KafkaConnection, replication: i32) -> Self {
        let template = template().await;
        let tag = Uuid::now_v7().simple().to_string();
        let database = format!("aihub_test_{tag}");
        let admin = connect(&self::database("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {database} TEMPLATE {template}"))
            .await
            .expect("create test database");
        let topic = format!("aihub.test.{tag}");
        events::kafka::ensure_topic(&kafka, &topic, PARTITIONS, replication)
            .await
            .expect("create test topic");
        let mut config = environment();
        config.database = self::database(&database);
        config.kafka = kafka;
        config.topic = topic;
        config.topic_partitions = PARTITIONS;
        config.topic_replication = replication;
        config.listen = "127.0.0.1:0".into();
        config.admin_token = Some(format!("admin-{}", Uuid::new_v4()));
        config.consumer_group_prefix = format!("aihub-test-{tag}");
        // Generous, so a slow machine still shows read-your-writes rather than 202s.
        config.consistency_timeout = Duration::from_secs(15);
        config.relay_message_timeout = Duration::from_secs(5);
        config.relay_sweep = Duration::from_millis(200);
        config.auth_failure_window = Duration::from_millis(300);
        // Spooled chat events in a directory per test database, outside the source tree.
        config.gateway.spool_dir = std::env::temp_dir()
            .join("aihub-test-spool")
            .display()
            .to_string();
        // Tests that want the scheduled invoicing job turn it on.
        config.billing_close_every = Duration::ZERO;
        // Audit checkpoints are signed with a fixed test key; tests that want them written
        // periodically set `audit_checkpoint_every`.
        config.audit_signing_key = Some(
            events::audit::CheckpointSigner::from_seed_hex(TEST_AUDIT_SEED).expect("test seed"),
        );
        config.audit_checkpoint_every = Duration::ZERO;
        Self { config, database }
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.config.database).await
    }

    pub async fn start(&self, roles: Roles) -> Running {
        aihub::start(self.config.clone(), roles)
            .await
            .expect("AI Hub starts")
    }

    /// Starts every role and returns a client for it.
    pub async fn app(&self) -> (Running, Api) {
        let running = self.start(Roles::all()).await;
        let api = self.api(&running);
        (running, api)
    }

    pub fn api(&self, running: &Running) -> Api {
        let addr = running.addr.expect("serves HTTP");
        Api {
            base: format!("http://{addr}"),
            token: self.config.admin_token.clone().unwrap_or_default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// Rows of a table as JSON, in a stable order: what "identical read models" compares.
    pub async fn dump(&self, table: &str, order_by: &str) -> Vec<Value> {
        let db = self.db().await;
        let rows = db
            .query(
                &format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order_by}"),
                &[],
            )
            .await
            .expect("dump");
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).expect("json"))
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db()
            .await
            .query_one(sql, &[])
            .await
            .expect("count")
            .get(0)
    }

    /// How many of the journal's events `projection` marks in `projector_applied`: those of the
    /// types it handles (the others it skips unread, `Projection::handles`) and marks (a chat
    /// call's idempotent rows go unmarked, `Projection::marks`).
    pub async fn journal_events_for(&self, projection: &dyn projectors::Projection) -> i64 {
        self.db()
            .await
            .query(
                "SELECT event_type, count(*) FROM journal GROUP BY event_type",
                &[],
            )
            .await
            .expect("journal types")
            .iter()
            .filter(|row| projection.handles(row.get(0)) && projection.marks(row.get(0)))
            .map(|row| row.get::<_, i64>(1))
            .sum()
    }

    /// Waits until every projection has applied every journal event it handles, or panics
    /// after `limit`.
    ///
    /// The target is counted again on every poll: background writers (the audit checkpointer,
    /// an export job) may append while we wait, and a target counted once would then be
    /// overshot for good.
    pub async fn wait_until_projected(&self, limit: Duration) {
        // The chat calls answered so far by this test's gateways in this process: their events
        // in the journal first (the appender holds them while calls keep coming, and gathers
        // them for a few milliseconds after).
        let spool = std::path::PathBuf::from(gateway::spool::dir_for(
            &self.config.gateway.spool_dir,
            &self.config.database.url,
        ));
        wait_for(limit, "every chat event spooled in the journal", || {
            let pending = gateway::spool::pending_in(&spool);
            async move { pending == 0 }
        })
        .await;
        wait_for(
            limit,
            "every event projected by every projection",
            || async {
                let mut target = 0;
                for projection in projectors::all() {
                    target += self.journal_events_for(projection.as_ref()).await;
                }
                self.count("SELECT count(*) FROM projector_applied").await == target
            },
        )
        .await;
        // The events no projection marks (chat calls in most of them) count by the stored
        // offsets: once every row is published, every projection's offsets reach the topic's end.
        let projections = projectors::all().len() as i64;
        wait_for(
            limit,
            "every projection's offsets at the end of the topic",
            || async {
                self.count("SELECT count(*) FROM journal_outbox").await == 0
                    && self
                        .count(
                            "SELECT COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets",
                        )
                        .await
                        == self.topic_messages().await * projections
            },
        )
        .await;
    }

    /// The `aihub` binary at `binary`, configured for this test's database, broker, topic and
    /// consumer groups: add the subcommand.
    pub fn aihub_command(&self, binary: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binary);
        self.connect_command(command.as_std_mut());
        command.env("AIHUB_TOPIC", &self.config.topic).env(
            "AIHUB_CONSUMER_GROUP_PREFIX",
            &self.config.consumer_group_prefix,
        );
        command
    }

    /// Points a command at this test's database and broker, reached the same way (TLS, SASL).
    pub fn connect_command<'a>(
        &self,
        command: &'a mut std::process::Command,
    ) -> &'a mut std::process::Command {
        for (name, value) in self.config.connection_vars() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }

    /// Messages on the test's topic: the sum of its partitions' end offsets.
    pub async fn topic_messages(&self) -> i64 {
        projectors::replay::end_offsets(&self.config.kafka, &self.config.topic)
            .await
            .expect("end offsets")
            .values()
            .sum()
    }

    /// Exactly once, once everything is projected: one audit row for each journal event (the
    /// same ids), one usage row for each chat call, one applied mark per event in every
    /// projection that handles and marks its type, and stored offsets that cover every message
    /// of the topic (nothing skipped).
    pub async fn assert_every_event_applied_once(&self) {
        let journal = self.count("SELECT count(*) FROM journal").await;
        assert_eq!(
            self.count("SELECT count(*) FROM read.audit_log").await,
            journal
        );
        assert_eq!(
            self.count("SELECT count(*) FROM journal j JOIN read.audit_log a USING (event_id)")
                .await,
            journal
        );
        assert_eq!(
            self.count("SELECT count(*) FROM journal j JOIN read.chat_calls c USING (event_id)")
                .await,
            self.count("SELECT count(*) FROM read.chat_calls").await,
            "a usage row without its chat event"
        );
        assert_eq!(
            self.count("SELECT count(*) FROM read.chat_calls").await,
            self.count(
                "SELECT count(*) FROM journal
                 WHERE event_type IN ('chat.completion.succeeded', 'chat.completion.failed')"
            )
            .await,
            "a chat call without its usage row"
        );
        let db = self.db().await;
        for projection in projectors::all() {
            let applied: i64 = db
                .query_one(
                    "SELECT count(*) FROM projector_applied WHERE projection = $1",
                    &[&projection.name()],
                )
                .await
                .expect("count")
                .get(0);
            let handled = self.journal_events_for(projection.as_ref()).await;
            assert_eq!(
                applied,
                handled,
                "{} applied {applied} of the {handled} events it handles",
                projection.name()
            );
        }
        // A projection that handles none of the events marks none, so the wait for the marks
        // does not wait for it: its offsets may still be on their way (seen after a broker was
        // killed). They must reach the end of the topic, exactly.
        let projections = projectors::all().len() as i64;
        let covered = || async {
            self.count("SELECT COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets")
                .await
        };
        wait_for(
            Duration::from_secs(60),
            "every projection's stored offsets at the end of the topic",
            || async { covered().await == self.topic_messages().await * projections },
        )
        .await;
    }
}

/// Polls `check` every 100 ms until it holds, panicking with `what` after `limit`.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP client of one running AI Hub, authenticated as the platform admin.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the OpenAI error shape and a 4xx status.
    pub fn assert_client_error(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected status, body {}", self.body);
        let error = &self.body["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message in {}",
            self.body
        );
        assert!(error["type"].as_str().is_some(), "no type in {}", self.body);
        assert!(
            error.get("code").is_some() && error.get("param").is_some(),
            "not the OpenAI shape: {}",
            self.body
        );
        error
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Creates an organization and returns its id, asserting read-your-writes (201).
    pub async fn create_org(&self, slug: &str) -> Uuid {
        let reply = self
            .post(
                "/api/v1/organizations",
                &serde_json::json!({"name": format!("Org {slug}"), "slug": slug}),
            )
            .await;
        assert_eq!(reply.status, 201, "create {slug}: {}", reply.body);
        reply.body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("id")
    }
}

pub fn unique_slug(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12])
}

impl Api {
    /// The same server, called with another bearer token (an API key).
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: token.to_string(),
            ..self.clone()
        }
    }
}

/// An organization with an owner and the owner's key holding every permission.
pub struct Tenant {
    pub org_id: String,
    pub owner_id: String,
    pub owner_key: String,
    pub owner: Api,
}

impl Tenant {
    pub async fn create(admin: &Api, prefix: &str) -> Tenant {
        let slug = unique_slug(&prefix.replace('_', "-"));
        let reply = admin
            .post("/api/v1/organizations", &serde_json::json!({"name": slug, "slug": slug, "owner_email": format!("owner@{slug}.example")}))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let org_id = reply.body["id"].as_str().expect("id").to_string();
        let users = admin.get(&format!("/api/v1/users?org_id={org_id}")).await;
        assert_eq!(users.status, 200, "{}", users.body);
        let owner_id = users.body["data"][0]["id"]
            .as_str()
            .expect("owner")
            .to_string();
        let owner_key = admin_key(admin, &org_id, Some(&owner_id), &all_permissions()).await;
        let owner = admin.with_token(&owner_key);
        Tenant {
            org_id,
            owner_id,
            owner_key,
            owner,
        }
    }

    /// A new organization on `plan` (the platform admin moves it there from Free).
    pub async fn create_on(admin: &Api, prefix: &str, plan: &str) -> Tenant {
        let tenant = Self::create(admin, prefix).await;
        let upgraded = admin
            .put(
                &format!("/api/v1/subscriptions/{}/upgrade", tenant.org_id),
                &serde_json::json!({ "plan": plan }),
            )
            .await;
        assert_eq!(upgraded.status, 200, "{}", upgraded.body);
        tenant
    }

    /// A new user of this organization holding `role`; returns (user id, a key with every permission).
    pub async fn member_with_role(&self, admin: &Api, role: &str) -> (String, String) {
        let user = admin
            .post("/api/v1/users", &serde_json::json!({"org_id": self.org_id, "email": format!("{}@{}.example", role, Uuid::new_v4().simple())}))
            .await;
        assert_eq!(user.status, 201, "{}", user.body);
        let user_id = user.body["id"].as_str().expect("id").to_string();
        let assigned = admin
            .post(
                &format!("/api/v1/users/{user_id}/roles"),
                &serde_json::json!({"role": role}),
            )
            .await;
        assert_eq!(assigned.status, 200, "{}", assigned.body);
        let key = admin_key(admin, &self.org_id, Some(&user_id), &all_permissions()).await;
        (user_id, key)
    }
}

pub fn all_permissions() -> Vec<String> {
    platform::access::Permission::ALL
        .iter()
        .map(|p| p.to_string())
        .collect()
}

/// A key created by the platform admin, acting for `user_id` when given.
pub async fn admin_key(
    admin: &Api,
    org_id: &str,
    user_id: Option<&str>,
    permissions: &[String],
) -> String {
    let reply = admin
        .post(
            "/api/v1/api-keys",
            &serde_json::json!({"org_id": org_id, "user_id": user_id, "name": "test key", "permissions": permissions}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["key"].as_str().expect("key").to_string()
}

/// A port free to listen on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A catalog file with one model, `gpt-4o`, served by OpenRouter as `openai/gpt-4o` at these
/// prices (millionths of a dollar per million tokens).
pub fn one_model_catalog(
    input_micros_per_mtok: i64,
    output_micros_per_mtok: i64,
) -> std::path::PathBuf {
    let catalog = serde_json::json!([{"name": "gpt-4o", "tier": "basic", "context_length": 128000,
        "input_micros_per_mtok": input_micros_per_mtok, "output_micros_per_mtok": output_micros_per_mtok,
        "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o"}]}]);
    let file = std::env::temp_dir().join(format!("aihub-models-{}.json", Uuid::now_v7()));
    std::fs::write(&file, catalog.to_string()).expect("catalog");
    file
}

impl Env {
    /// Routes the gateway of the apps this test starts to `upstream` as OpenRouter, serving the
    /// one model of [`one_model_catalog`] at these prices.
    pub fn route_one_model_to(
        &mut self,
        upstream: &upstream::Upstream,
        input_micros_per_mtok: i64,
        output_micros_per_mtok: i64,
    ) {
        let gateway = &mut self.config.gateway;
        gateway.models_file = Some(
            one_model_catalog(input_micros_per_mtok, output_micros_per_mtok)
                .display()
                .to_string(),
        );
        gateway.providers = vec![platform::config::ProviderConfig {
            name: "openrouter".into(),
            base_url: upstream.openai_base_url(),
            api_key: "or-test".into(),
        }];
    }

    /// `aihub serve` of this test on `port`, with its admin token, the catalog `models_file`
    /// and OpenRouter at `openrouter_base_url`; killed when dropped. Add variables, then spawn.
    pub fn serve_command(
        &self,
        port: u16,
        models_file: &std::path::Path,
        openrouter_base_url: &str,
    ) -> tokio::process::Command {
        let mut command = self.aihub_command(aihub_binary());
        command
            .arg("serve")
            .env(
                "AIHUB_ADMIN_TOKEN",
                self.config.admin_token.as_deref().unwrap_or_default(),
            )
            .env("AIHUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("AIHUB_MODELS_FILE", models_file)
            .env("OPENROUTER_API_KEY", "or-test")
            .env("OPENROUTER_BASE_URL", openrouter_base_url)
            .kill_on_drop(true);
        command
    }

    /// The admin's client of a process started on `port`, once it answers `/healthz`.
    pub async fn serving_at(&self, port: u16) -> Api {
        let admin = Api {
            base: format!("http://127.0.0.1:{port}"),
            token: self.config.admin_token.clone().unwrap_or_default(),
            http: reqwest::Client::new(),
        };
        wait_for(Duration::from_secs(30), "aihub serve answers", || {
            let admin = admin.clone();
            async move { admin.http.get(admin.url("/healthz")).send().await.is_ok() }
        })
        .await;
        admin
    }
}

/// Runs the real `aihub` binary built beside the test.
pub fn aihub_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = dir.join("aihub");
    assert!(
        binary.is_file(),
        "{} is missing: build the workspace first (cargo build)",
        binary.display()
    );
    binary
}

impl Api {
    /// The Prometheus exposition of the process.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}
