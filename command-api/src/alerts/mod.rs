//! Alerting (issue 11): alert rules and alerts as aggregates, their write routes, and the
//! evaluator and notifier, which run in the projectors role under one leader at a time.

pub mod aggregate;
pub mod evaluator;
pub mod notify;
pub mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The projection serving alert rules and alerts: commands wait for it.
pub const ALERTING: &str = "alerting";

/// Arbitrary constant naming the alerting leader's lock ("aihub_al").
const ALERTS_LOCK: i64 = 0x6169_6875_625f_616c;

/// How often the notifier looks for notifications that are due.
const NOTIFY_POLL: Duration = Duration::from_millis(250);

pub fn rule_stream(id: Uuid) -> events::StreamId {
    events::StreamId::alert_rule(id)
}

pub fn alert_stream(id: Uuid) -> events::StreamId {
    events::StreamId::alert(id)
}

#[derive(Clone)]
pub struct AlertsConfig {
    pub database: platform::db::Database,
    pub pool: platform::db::PgPool,
    /// `AIHUB_ALERT_EVAL_MS`.
    pub eval_every: Duration,
    pub notify: notify::NotifyConfig,
}

/// Whether this process leads alerting now.
#[derive(Default)]
pub struct AlertsStatus {
    pub leader: AtomicBool,
}

/// Evaluates the rules and sends the notifications while this process holds the alerting lock;
/// a standby otherwise. The mechanism is the relay's: a session advisory lock on a connection of
/// its own, freed by Postgres when that connection dies, so a standby takes over within a second.
pub async fn run(config: AlertsConfig, status: Arc<AlertsStatus>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(&config, &status, &shutdown).await {
            tracing::warn!(error = %format!("{e:#}"), "alerting stopped; retrying");
        }
        status.leader.store(false, Ordering::SeqCst);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn lead(
    config: &AlertsConfig,
    status: &AlertsStatus,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let (client, connection) = config.database.dedicated().await?;
    let mut driver = tokio::spawn(connection);
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ALERTS_LOCK])
            .await?
            .get(0);
        if locked {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    status.leader.store(true, Ordering::SeqCst);
    tracing::info!("alerting is the leader");
    let evaluator = evaluator::Evaluator::new(config.pool.clone());
    let notifier = notify::Notifier::new(config.pool.clone(), config.notify.clone());
    let evaluate = async {
        loop {
            if let Err(e) = evaluator.tick().await {
                tracing::warn!(error = %format!("{e:#}"), "alert evaluation failed");
            }
            tokio::time::sleep(config.eval_every).await;
        }
    };
    let deliver = async {
        loop {
            if let Err(e) = notifier.tick().await {
                tracing::warn!(error = %format!("{e:#}"), "notifier failed");
            }
            tokio::time::sleep(NOTIFY_POLL).await;
        }
    };
    let result = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        ended = &mut driver => Err(anyhow::anyhow!("the leader's connection ended: {ended:?}")),
        _ = evaluate => Ok(()),
        _ = deliver => Ok(()),
    };
    driver.abort();
    drop(client);
    result
}
