//! The Postgres pool and the migrations in `schemas/sql/`.

use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use deadpool_postgres::{Object as Connection, Pool as PgPool, PoolError, Transaction};

/// Migrations, applied in order, each once, recorded in `schema_migrations`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_journal",
        include_str!("../../schemas/sql/0001_journal.sql"),
    ),
    (
        "0002_projectors",
        include_str!("../../schemas/sql/0002_projectors.sql"),
    ),
    (
        "0003_read_tenancy",
        include_str!("../../schemas/sql/0003_read_tenancy.sql"),
    ),
    (
        "0004_read_audit",
        include_str!("../../schemas/sql/0004_read_audit.sql"),
    ),
    (
        "0005_read_access",
        include_str!("../../schemas/sql/0005_read_access.sql"),
    ),
    (
        "0006_read_usage",
        include_str!("../../schemas/sql/0006_read_usage.sql"),
    ),
    (
        "0007_read_billing",
        include_str!("../../schemas/sql/0007_read_billing.sql"),
    ),
    (
        "0008_quota",
        include_str!("../../schemas/sql/0008_quota.sql"),
    ),
    (
        "0009_read_invoices",
        include_str!("../../schemas/sql/0009_read_invoices.sql"),
    ),
    (
        "0010_read_catalog",
        include_str!("../../schemas/sql/0010_read_catalog.sql"),
    ),
    (
        "0011_key_blocks",
        include_str!("../../schemas/sql/0011_key_blocks.sql"),
    ),
    (
        "0012_read_metrics",
        include_str!("../../schemas/sql/0012_read_metrics.sql"),
    ),
    (
        "0014_audit_chain",
        include_str!("../../schemas/sql/0014_audit_chain.sql"),
    ),
    (
        "0016_read_sso",
        include_str!("../../schemas/sql/0016_read_sso.sql"),
    ),
    (
        "0017_rate_limits",
        include_str!("../../schemas/sql/0017_rate_limits.sql"),
    ),
    (
        "0018_alerting",
        include_str!("../../schemas/sql/0018_alerting.sql"),
    ),
    (
        "0020_read_custom_metrics",
        include_str!("../../schemas/sql/0020_read_custom_metrics.sql"),
    ),
    (
        "0021_read_health_checks",
        include_str!("../../schemas/sql/0021_read_health_checks.sql"),
    ),
    (
        "0023_person_keys",
        include_str!("../../schemas/sql/0023_person_keys.sql"),
    ),
    (
        "0024_read_metrics_rollup",
        include_str!("../../schemas/sql/0024_read_metrics_rollup.sql"),
    ),
    (
        "0025_chain_head_per_statement",
        include_str!("../../schemas/sql/0025_chain_head_per_statement.sql"),
    ),
    (
        "0026_audit_log_lz4",
        include_str!("../../schemas/sql/0026_audit_log_lz4.sql"),
    ),
    (
        "0027_journal_outbox",
        include_str!("../../schemas/sql/0027_journal_outbox.sql"),
    ),
    (
        "0028_chain_linked_by_writer",
        include_str!("../../schemas/sql/0028_chain_linked_by_writer.sql"),
    ),
    (
        "0029_metrics_rollup_answers_from_key",
        include_str!("../../schemas/sql/0029_metrics_rollup_answers_from_key.sql"),
    ),
    (
        "0030_journal_envelope_as_written",
        include_str!("../../schemas/sql/0030_journal_envelope_as_written.sql"),
    ),
    (
        "0031_audit_log_json_unanalyzed",
        include_str!("../../schemas/sql/0031_audit_log_json_unanalyzed.sql"),
    ),
    (
        "0032_journal_wake_says_who",
        include_str!("../../schemas/sql/0032_journal_wake_says_who.sql"),
    ),
    (
        "0033_audit_row_lean",
        include_str!("../../schemas/sql/0033_audit_row_lean.sql"),
    ),
];

/// The versions of the migrations this build has, in the order they apply.
pub fn migration_versions() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|(version, _)| *version).collect()
}

/// Identifies the set of migrations, so a database template made from an older set is not reused.
pub fn migrations_fingerprint() -> String {
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (version, sql) in MIGRATIONS {
        for byte in version.bytes().chain(sql.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Arbitrary constant naming the migration lock, so concurrent starts migrate once.
const MIGRATION_LOCK: i64 = 0x6169_6875_625f_6d69;

/// Where Postgres is and how it is reached: `DATABASE_URL` and the CA file of
/// `AIHUB_DATABASE_CA_FILE`. Every connection of the platform (the pools, the LISTEN and leader
/// connections, the tests' own) is made here.
///
/// TLS follows the URL's `sslmode`, with rustls:
/// - `require` (or libpq's `verify-full`/`verify-ca`, taken as `require`): TLS or no connection;
/// - `prefer`: TLS when the server offers it, plain when it does not;
/// - `disable`, or no `sslmode` at all: plain, as before TLS was supported (libpq would try TLS
///   first; a Debian server's self-signed certificate would then fail every default URL).
///
/// Whenever TLS is used the server's certificate must chain to the public (webpki) roots or to
/// a certificate of the CA file, and name the URL's host: there is no mode that accepts any
/// certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Database {
    pub url: String,
    pub ca_file: Option<String>,
}

/// A connection of its own, outside the pool: its driver yields its asynchronous messages.
pub type DedicatedConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &redact_password(&self.url))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Database {
    pub fn new(url: impl Into<String>, ca_file: Option<String>) -> Self {
        Self {
            url: url.into(),
            ca_file,
        }
    }

    /// The same server and trust, another URL (another database, say).
    pub fn with_url(&self, url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: self.ca_file.clone(),
        }
    }

    /// The URL parsed, with the `sslmode` rules above applied.
    pub fn config(&self) -> anyhow::Result<tokio_postgres::Config> {
        parse_url(&self.url)
    }

    /// The URL parsed, its connections named `name` unless it names them itself.
    fn config_named(&self, name: &str) -> anyhow::Result<tokio_postgres::Config> {
        let mut config = self.config()?;
        if config.get_application_name().is_none() {
            config.application_name(name);
        }
        Ok(config)
    }

    /// The rustls connector: the webpki roots plus the CA file's certificates.
    pub fn tls(&self) -> anyhow::Result<MakeRustlsConnect> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &self.ca_file {
            for certificate in read_ca_file(path)? {
                roots
                    .add(certificate)
                    .map_err(|e| anyhow::anyhow!("AIHUB_DATABASE_CA_FILE {path}: {e}"))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    pub fn pool(&self, max_size: usize) -> anyhow::Result<Pool> {
        self.pool_named("aihub", max_size)
    }

    /// A pool whose connections tell Postgres who they are (`application_name`, as
    /// `pg_stat_activity` shows it) unless the URL names them already: the request pool and the
    /// bookkeeping's are told apart when an operator looks for what a busy backend serves.
    pub fn pool_named(&self, name: &str, max_size: usize) -> anyhow::Result<Pool> {
        let manager = Manager::from_config(
            self.config_named(name)?,
            self.tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .context("building the Postgres pool")
    }

    /// A connection of its own, outside the pool, for LISTEN and session-level advisory locks.
    /// The returned connection must be driven (polled) for the client to work.
    pub async fn dedicated(&self) -> anyhow::Result<(tokio_postgres::Client, DedicatedConnection)> {
        self.config()?
            .connect(self.tls()?)
            .await
            .context("connecting to Postgres")
    }

    /// A client whose connection is driven by a task of its own until the client is dropped.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = self.dedicated().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "Postgres connection ended");
            }
        });
        Ok(client)
    }

    /// Creates the database named in the URL if it does not exist, connecting to `postgres`.
    pub async fn create_database_if_missing(&self) -> anyhow::Result<()> {
        let config = self.config()?;
        let Some(name) = config.get_dbname().map(str::to_owned) else {
            return Ok(());
        };
        let mut admin = config.clone();
        admin.dbname("postgres");
        let (client, connection) = admin
            .connect(self.tls()?)
            .await
            .context("connecting to the postgres database")?;
        let driver = tokio::spawn(connection);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?;
        if exists.is_none() {
            let quoted = name.replace('"', "\"\"");
            if let Err(e) = client
                .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
                .await
            {
                // Another process may have created it meanwhile.
                if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                    return Err(e.into());
                }
            }
        }
        drop(client);
        let _ = driver.await;
        Ok(())
    }
}

/// Parses a Postgres URL (or key=value string) under the `sslmode` rules of [`Database`].
pub fn parse_url(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let (normalized, given) = normalize_sslmode(url);
    let mut config: tokio_postgres::Config = normalized
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    if !given {
        config.ssl_mode(SslMode::Disable);
    }
    Ok(config)
}

/// libpq's `verify-full` and `verify-ca` become `require`, which verifies as much (and, for
/// `verify-ca`, the host name too); tells whether the URL names an `sslmode` at all.
fn normalize_sslmode(url: &str) -> (String, bool) {
    let mut normalized = url.to_string();
    for strict in ["sslmode=verify-full", "sslmode=verify-ca"] {
        normalized = normalized.replace(strict, "sslmode=require");
    }
    let given = if normalized.contains("://") {
        normalized
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("sslmode=")))
    } else {
        normalized
            .split_whitespace()
            .any(|p| p.starts_with("sslmode="))
    };
    (normalized, given)
}

fn read_ca_file(path: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("AIHUB_DATABASE_CA_FILE: reading {path}"))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("AIHUB_DATABASE_CA_FILE {path}: {e}"))?;
    if certificates.is_empty() {
        anyhow::bail!("AIHUB_DATABASE_CA_FILE {path}: no PEM certificate in it");
    }
    Ok(certificates)
}

/// Checks a CA file the way connections will read it (for the configuration's parser).
pub fn check_ca_file(path: &str) -> Result<(), String> {
    read_ca_file(path).map(|_| ()).map_err(|e| format!("{e:#}"))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_password(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => value.to_string(),
    }
}

/// How long a start waits for another process's migration before giving up with an error.
const MIGRATION_LOCK_WAIT: &str = "120s";

/// Applies the pending migrations, once across processes: the lock is scoped to one
/// transaction, so a start cancelled halfway (its transaction rolled back when dropped) never
/// leaves it held on a pooled connection. Refuses to run when an applied migration's file has
/// changed since, naming it.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<&'static str>> {
    let mut client = pool
        .get()
        .await
        .context("connecting to Postgres to migrate")?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{MIGRATION_LOCK_WAIT}'"))
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("waiting for another process's migration (lock_timeout)")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version text PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());
         ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text",
    )
    .await?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        let checksum = checksum(sql);
        let row = tx
            .query_opt(
                "SELECT checksum FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?;
        match row.map(|r| r.get::<_, Option<String>>(0)) {
            None => {
                tx.batch_execute(sql)
                    .await
                    .with_context(|| format!("migration {version}"))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    &[version, &checksum],
                )
                .await?;
                applied.push(*version);
            }
            // Applied before checksums were kept: this build's file is taken as the one applied.
            Some(None) => {
                tx.execute(
                    "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
                    &[version, &checksum],
                )
                .await?;
            }
            Some(Some(stored)) if stored != checksum => anyhow::bail!(
                "migration {version} was applied from a different file (checksum {stored}, this build has {checksum}): an applied migration must never change; add a new one instead"
            ),
            Some(Some(_)) => {}
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// SHA-256 of a migration's text, hex.
fn checksum(sql: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(sql.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_follows_the_url_and_defaults_to_plain() {
        let mode = |url: &str| parse_url(url).expect(url).get_ssl_mode();
        assert_eq!(mode("postgres://u@h/db"), SslMode::Disable);
        assert_eq!(mode("postgres://u@h/db?sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://u@h/db?sslmode=prefer"), SslMode::Prefer);
        assert_eq!(mode("postgres://u@h/db?sslmode=require"), SslMode::Require);
        assert_eq!(
            mode("postgres://u@h/db?application_name=x&sslmode=verify-full"),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://u@h/db?sslmode=verify-ca"),
            SslMode::Require
        );
        assert_eq!(mode("host=h user=u sslmode=require"), SslMode::Require);
        assert_eq!(mode("host=h user=u"), SslMode::Disable);
        assert!(parse_url("postgres://u@h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let path = std::env::temp_dir().join(format!("aihub-db-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate").expect("write");
        let path = path.display().to_string();
        let error = check_ca_file(&path).expect_err("refused");
        assert!(error.contains("no PEM certificate"), "{error}");
        assert!(check_ca_file("/nonexistent/ca.pem").is_err());
        let database = Database::new("postgres://u@h/db?sslmode=require", Some(path));
        assert!(database.tls().is_err());
        assert!(Database::new("postgres://u@h/db", None).tls().is_ok());
    }

    #[test]
    fn pools_name_their_connections_unless_the_url_does() {
        let named = |url: &str| {
            Database::new(url, None)
                .config_named("aihub background")
                .expect(url)
                .get_application_name()
                .map(str::to_owned)
        };
        assert_eq!(
            named("postgres://u@h/db").as_deref(),
            Some("aihub background")
        );
        assert_eq!(
            named("postgres://u@h/db?application_name=ops-chose").as_deref(),
            Some("ops-chose")
        );
    }

    #[test]
    fn the_password_is_not_in_debug() {
        let database = Database::new("postgres://aihub:hunter2@db:5432/aihub", None);
        let debug = format!("{database:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn every_file_in_schemas_sql_is_a_migration_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/sql");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("schemas/sql")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .map(|name| name.trim_end_matches(".sql").to_string())
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(files, listed, "schemas/sql and MIGRATIONS differ");
        for (version, sql) in MIGRATIONS {
            let file = std::fs::read_to_string(dir.join(format!("{version}.sql"))).expect("file");
            assert_eq!(&file, sql, "{version}");
        }
        assert_eq!(checksum("").len(), 64);
    }
}
