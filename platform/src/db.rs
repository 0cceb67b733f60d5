//! The Postgres pool and the migrations in `schemas/sql/`.

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

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
];

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

pub fn pool(database_url: &str, max_size: usize) -> anyhow::Result<Pool> {
    let pg: tokio_postgres::Config = database_url
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    let manager = Manager::from_config(
        pg,
        NoTls,
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
/// The returned task drives the connection and yields its asynchronous messages.
pub async fn dedicated(
    database_url: &str,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
)> {
    tokio_postgres::connect(database_url, NoTls)
        .await
        .context("connecting to Postgres")
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

/// Creates the database named in the URL if it does not exist, connecting to `postgres`.
pub async fn create_database_if_missing(database_url: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = database_url
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin
        .connect(NoTls)
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

#[cfg(test)]
mod tests {
    use super::*;

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
