//! The monitoring leader: one process at a time (a session advisory lock, as the relay's) runs
//! the back-fills of new meters (`projectors::backfill`) and the organizations' synthetic health
//! checks. A check of a model is a chat call on the organization's behalf through the gateway
//! (`gateway::chat::on_behalf`): plan, rate limits and quota apply and its
//! `chat.completion.*` event bills it. Each run's outcome is a `health_check.completed` event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::monitoring::{CheckTarget, HealthCheckCompleted};
use events::{Actor, ActorType, EventEnvelope, EventPayload, StreamId};
use platform::db::{Database, PgPool};
use platform::Principal;
use projectors::ProjectorConfig;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `aihub_mn`: the monitoring leader's advisory lock.
const MONITOR_LOCK: i64 = 0x6169_6875_625f_6d6e;
const TICK: Duration = Duration::from_secs(1);
/// How long one run of a check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// The tiny prompt a model check sends.
const PROMPT: &str = "Reply with OK.";

pub struct Monitors {
    pub database: Database,
    pub pool: PgPool,
    pub projectors: ProjectorConfig,
    pub gateway: Option<Arc<gateway::Gateway>>,
    pub clock: platform::clock::Clock,
}

/// Leads when it can, until `shutdown`.
pub async fn run(monitors: Monitors, shutdown: CancellationToken) {
    let monitors = Arc::new(monitors);
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(&monitors, &shutdown).await {
            tracing::warn!(error = %format!("{e:#}"), "monitoring leader failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn lead(monitors: &Arc<Monitors>, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let (client, connection) = monitors.database.dedicated().await?;
    // The lock lives as long as this connection: when it dies, another process takes over.
    let driver = tokio::spawn(connection);
    let result = async {
        loop {
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&MONITOR_LOCK])
                .await?
                .get(0);
            if locked {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        tracing::info!("monitoring leader: back-fills and health checks run here");
        let mut backfill: Option<tokio::task::JoinHandle<()>> = None;
        let mut started: HashMap<Uuid, Instant> = HashMap::new();
        let mut warned = false;
        loop {
            anyhow::ensure!(!driver.is_finished(), "the leader's connection closed");
            if backfill.as_ref().is_none_or(|t| t.is_finished()) {
                let (pool, config, stop) = (
                    monitors.pool.clone(),
                    monitors.projectors.clone(),
                    shutdown.clone(),
                );
                backfill = Some(tokio::spawn(async move {
                    if let Err(e) = projectors::backfill::run_pending(&pool, &config, &stop).await {
                        tracing::warn!(error = %format!("{e:#}"), "meter back-fill failed; retrying");
                    }
                }));
            }
            match &monitors.gateway {
                Some(gateway) => {
                    if let Err(e) = run_due(monitors, gateway, &mut started).await {
                        tracing::warn!(error = %format!("{e:#}"), "could not run health checks");
                    }
                }
                None if !warned => {
                    warned = true;
                    tracing::warn!("this process leads monitoring but has no gateway: health checks run only in a process with the command API (aihub serve)");
                }
                None => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
    .await;
    driver.abort();
    result
}

/// Starts every check whose interval has passed since its last run (as the read model knows
/// it, or as this leader started it).
async fn run_due(
    monitors: &Arc<Monitors>,
    gateway: &Arc<gateway::Gateway>,
    started: &mut HashMap<Uuid, Instant>,
) -> anyhow::Result<()> {
    let client = monitors.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, org_id, target, interval_seconds FROM read.health_checks
             WHERE last_run_at IS NULL OR last_run_at + make_interval(secs => interval_seconds) <= $1",
            &[&monitors.clock.now()],
        )
        .await?;
    for row in rows {
        let check_id: Uuid = row.get(0);
        let org_id: Uuid = row.get(1);
        let interval = Duration::from_secs(u64::try_from(row.get::<_, i32>(3)).unwrap_or(60));
        if started
            .get(&check_id)
            .is_some_and(|at| at.elapsed() < interval)
        {
            continue;
        }
        let Ok(target) = serde_json::from_value::<CheckTarget>(row.get(2)) else {
            continue;
        };
        started.insert(check_id, Instant::now());
        let (monitors, gateway) = (monitors.clone(), gateway.clone());
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(
                CHECK_TIMEOUT,
                run_check(&monitors, &gateway, check_id, org_id, &target),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Outcome {
                    ok: false,
                    latency_ms: CHECK_TIMEOUT.as_millis() as u64,
                    status: None,
                    error: Some("timeout".into()),
                    request_id: None,
                },
            };
            if let Err(e) = record(&monitors.pool, check_id, org_id, outcome).await {
                tracing::warn!(check_id = %check_id, error = %format!("{e:#}"), "could not record a health check's outcome");
            }
        });
    }
    Ok(())
}

struct Outcome {
    ok: bool,
    latency_ms: u64,
    status: Option<u16>,
    error: Option<String>,
    request_id: Option<String>,
}

async fn run_check(
    monitors: &Monitors,
    gateway: &Arc<gateway::Gateway>,
    check_id: Uuid,
    org_id: Uuid,
    target: &CheckTarget,
) -> Outcome {
    let started = Instant::now();
    let elapsed = |s: Instant| s.elapsed().as_millis() as u64;
    match target {
        CheckTarget::Model { model } => {
            let principal = match platform::on_behalf::chat_principal(
                &monitors.pool,
                org_id,
                check_id,
                monitors.clock.now(),
            )
            .await
            {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Outcome {
                        ok: false,
                        latency_ms: 0,
                        status: None,
                        error: Some("organization_not_found".into()),
                        request_id: None,
                    }
                }
                Err(e) => {
                    return Outcome {
                        ok: false,
                        latency_ms: elapsed(started),
                        status: Some(e.status.as_u16()),
                        error: Some(e.code.clone()),
                        request_id: None,
                    }
                }
            };
            let request_id = format!("check_{}", Uuid::now_v7().simple());
            let body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 5,
            });
            let answer = gateway::chat::on_behalf(
                gateway.clone(),
                Principal::ApiKey(principal),
                request_id.clone(),
                body,
            )
            .await;
            match answer {
                Ok(response) => {
                    let status = response.status();
                    // Read to the end: the call's event is recorded once its answer is.
                    let read = axum::body::to_bytes(response.into_body(), 1 << 20).await;
                    let ok = status.is_success() && read.is_ok();
                    Outcome {
                        ok,
                        latency_ms: elapsed(started),
                        status: Some(status.as_u16()),
                        error: (!ok).then(|| format!("http_{}", status.as_u16())),
                        request_id: Some(request_id),
                    }
                }
                Err(e) => Outcome {
                    ok: false,
                    latency_ms: elapsed(started),
                    status: Some(e.status.as_u16()),
                    error: Some(e.code.clone()),
                    request_id: Some(request_id),
                },
            }
        }
        CheckTarget::Http { url } => {
            match gateway
                .http
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status();
                    let ok = status.is_success() || status.is_redirection();
                    Outcome {
                        ok,
                        latency_ms: elapsed(started),
                        status: Some(status.as_u16()),
                        error: (!ok).then(|| format!("http_{}", status.as_u16())),
                        request_id: None,
                    }
                }
                Err(e) => Outcome {
                    ok: false,
                    latency_ms: elapsed(started),
                    status: None,
                    error: Some(if e.is_timeout() {
                        "timeout".into()
                    } else {
                        "connect_error".into()
                    }),
                    request_id: None,
                },
            }
        }
    }
}

async fn record(
    pool: &PgPool,
    check_id: Uuid,
    org_id: Uuid,
    outcome: Outcome,
) -> anyhow::Result<()> {
    let event = EventEnvelope::new(
        EventPayload::HealthCheckCompleted(HealthCheckCompleted {
            check_id,
            ok: outcome.ok,
            latency_ms: outcome.latency_ms,
            status: outcome.status,
            error: outcome.error,
            request_id: outcome.request_id.clone(),
        }),
        Some(org_id),
        StreamId::health_check_run(Uuid::now_v7()),
        1,
        Actor {
            kind: ActorType::System,
            id: format!("health_check:{check_id}"),
            ip: None,
        },
        outcome
            .request_id
            .unwrap_or_else(|| format!("check_{}", Uuid::now_v7().simple())),
    );
    command_api::Journal::new(pool.clone())
        .append(&[event], &[])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
