//! Migrations against a real PostgreSQL: applied once however many processes start at the same
//! time, never left locked by a start that was cancelled, and refused when an applied file changed.

use std::time::Duration;

use e2e::Env;
use platform::db::Database;
use uuid::Uuid;

/// An empty database of its own (no template).
async fn empty_database(env: &Env) -> Database {
    let name = format!("aihub_test_{}", Uuid::now_v7().simple());
    env.db()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    e2e::database(&name)
}

async fn applied(pool: &platform::db::PgPool) -> i64 {
    let client = pool.get().await.expect("connection");
    client
        .query_one(
            "SELECT count(*) FROM schema_migrations WHERE checksum IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_apply_each_migration_once() {
    let env = Env::new().await;
    let pool = empty_database(&env).await.pool(4).expect("pool");
    let (a, b, c) = tokio::join!(
        platform::db::migrate(&pool),
        platform::db::migrate(&pool),
        platform::db::migrate(&pool)
    );
    let mut counts: Vec<usize> = [a, b, c]
        .into_iter()
        .map(|r| r.expect("migrates").len())
        .collect();
    counts.sort();
    let total = applied(&pool).await;
    assert_eq!(counts[..2], [0, 0], "only one start applies them");
    assert_eq!(counts[2] as i64, total);
    assert!(total >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_start_leaves_no_lock_behind() {
    let env = Env::new().await;
    let database = empty_database(&env).await;
    // One process is cancelled while migrating: its transaction is rolled back and its lock
    // goes with it, though its connection stays in its pool.
    let first = database.pool(2).expect("pool");
    let cancelled =
        tokio::time::timeout(Duration::from_millis(30), platform::db::migrate(&first)).await;
    assert!(cancelled.is_err(), "the first start was cut short");
    // Another process starts.
    let pool = database.pool(2).expect("pool");
    let next = tokio::time::timeout(Duration::from_secs(60), platform::db::migrate(&pool))
        .await
        .expect("the next start does not wait on a lock nobody holds")
        .expect("migrates");
    assert_eq!(next.len() as i64, applied(&pool).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_migration_file_stops_the_start_naming_it() {
    let env = Env::new().await;
    let pool = env.config.database.pool(2).expect("pool");
    // The template was migrated already: nothing to apply, every checksum recorded.
    assert!(platform::db::migrate(&pool)
        .await
        .expect("migrates")
        .is_empty());
    env.db()
        .await
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = '0003_read_tenancy'",
            &[],
        )
        .await
        .expect("tamper");
    let error = platform::db::migrate(&pool).await.expect_err("refused");
    assert!(
        format!("{error:#}").contains("0003_read_tenancy"),
        "{error:#}"
    );
}
