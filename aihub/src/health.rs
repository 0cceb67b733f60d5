//! `GET /api/v1/monitoring/health`: each component of the platform with a status and the figures
//! behind it — PostgreSQL, each Kafka broker, the relay's lag, each projection's lag, each
//! provider deployment's circuit breaker — and the same lags as Prometheus gauges at scrape time.
//!
//! Served by the processes that run the gateway (the breakers live there); the edge routes it to
//! the command API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use platform::access::Permission;
use platform::{ApiError, Config, Principal};
use serde::Serialize;
use utoipa::ToSchema;

/// A projection or the relay counts as stalled once it has been behind, without moving, this long.
const STALL: Duration = Duration::from_secs(10);
/// How long a probe of one broker, or of the topic's offsets, may take.
const PROBE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct HealthState {
    pub config: Config,
    pub pool: platform::db::PgPool,
    pub gateway: Option<Arc<gateway::Gateway>>,
}

/// `ok`: working; `degraded`: working, with a part down or behind; `down`: not working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Degraded,
    Down,
}

/// One component and the figures its status was decided on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Component {
    /// `postgres`, `kafka:<host:port>`, `relay`, `projection:<name>`, `provider:<deployment>`.
    pub name: String,
    pub status: Status,
    /// Why it is not `ok`, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The figures: latency, lag in events and seconds, circuit and last error.
    #[schema(value_type = Object)]
    pub figures: serde_json::Value,
}

/// The platform's health: the worst of its components.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `monitoring.health`.
    pub object: String,
    pub status: Status,
    pub checked_at: String,
    pub components: Vec<Component>,
    /// The organization's synthetic checks with their latest outcomes (`status`: `ok`,
    /// `failing` or `pending`); empty for the platform admin and for plans without them. They
    /// do not count in the platform's `status`: they tell the organization's own view.
    pub checks: Vec<api::monitoring::HealthCheck>,
}

/// The pipeline's lag: journal rows not yet on the topic, and each projection's distance from
/// the topic's end.
#[derive(Debug, Clone, Default)]
pub struct Lag {
    pub relay_events: i64,
    pub relay_seconds: f64,
    /// (projection, events behind, seconds since it last advanced while behind); `None` when
    /// the topic's offsets could not be read.
    pub projections: Option<Vec<(String, i64, f64)>>,
}

pub async fn lag(config: &Config, pool: &platform::db::PgPool) -> anyhow::Result<Lag> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            // The oldest row's age from its own journal row, found by key: a join of the outbox
            // with the journal scanned the whole journal whenever the relay was behind.
            "SELECT (SELECT count(*) FROM journal_outbox),
                    COALESCE(EXTRACT(EPOCH FROM now() - (
                        SELECT j.recorded_at FROM journal j
                        WHERE j.global_position = (SELECT min(global_position) FROM journal_outbox)
                    ))::float8, 0)",
            &[],
        )
        .await?;
    let mut lag = Lag {
        relay_events: row.get(0),
        relay_seconds: row.get(1),
        projections: None,
    };
    let ends = tokio::time::timeout(
        PROBE,
        projectors::replay::end_offsets(&config.kafka, &config.topic),
    )
    .await;
    let Ok(Ok(ends)) = ends else { return Ok(lag) };
    let rows = client
        .query(
            "SELECT projection, partition, next_offset,
                    EXTRACT(EPOCH FROM now() - updated_at)::float8 AS idle
             FROM projector_offsets WHERE topic = $1",
            &[&config.topic],
        )
        .await?;
    let mut projections = Vec::new();
    for projection in projectors::all() {
        let name = projection.name();
        let mut behind = 0i64;
        let mut idle = 0f64;
        for (&partition, &end) in &ends {
            let row = rows.iter().find(|r| {
                r.get::<_, String>("projection") == name
                    && r.get::<_, i32>("partition") == partition
            });
            let (next, since) = match row {
                Some(r) => (r.get::<_, i64>("next_offset"), r.get::<_, f64>("idle")),
                None => (0, f64::INFINITY),
            };
            if end > next {
                behind += end - next;
                idle = idle.max(since);
            }
        }
        if idle.is_infinite() {
            // Behind on a partition it never read: since when is unknown; count it stalled.
            idle = STALL.as_secs_f64() * 10.0;
        }
        projections.push((
            name.to_string(),
            behind,
            if behind > 0 { idle } else { 0.0 },
        ));
    }
    lag.projections = Some(projections);
    Ok(lag)
}

/// Sets the lag gauges (before `/metrics` is rendered); a failure leaves the last values.
pub async fn export_lag(config: &Config, pool: &platform::db::PgPool) {
    match lag(config, pool).await {
        Ok(lag) => {
            platform::metrics::RELAY_LAG_EVENTS
                .with_label_values::<&str>(&[])
                .set(lag.relay_events as f64);
            platform::metrics::RELAY_LAG_SECONDS
                .with_label_values::<&str>(&[])
                .set(lag.relay_seconds);
            for (name, events, seconds) in lag.projections.unwrap_or_default() {
                platform::metrics::PROJECTION_LAG_EVENTS
                    .with_label_values(&[&name])
                    .set(events as f64);
                platform::metrics::PROJECTION_LAG_SECONDS
                    .with_label_values(&[&name])
                    .set(seconds);
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not measure the pipeline's lag"),
    }
}

fn component(
    name: String,
    status: Status,
    reason: Option<String>,
    figures: serde_json::Value,
) -> Component {
    Component {
        name,
        status,
        reason,
        figures,
    }
}

/// Whether one broker accepts a connection (the brokers named in `KAFKA_BROKERS`).
async fn broker(address: &str) -> (Status, Option<String>, f64) {
    let started = Instant::now();
    let connected = tokio::time::timeout(PROBE, tokio::net::TcpStream::connect(address)).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match connected {
        Ok(Ok(_)) => (Status::Ok, None, ms),
        Ok(Err(e)) => (Status::Down, Some(format!("connecting failed: {e}")), ms),
        Err(_) => (Status::Down, Some("no answer within 2 s".into()), ms),
    }
}

/// The health of the platform's components, as this process sees them.
#[utoipa::path(get, path = "/monitoring/health", tag = "monitoring",
    responses(
        (status = 200, description = "Each component with its status and figures; `status` is the worst of them.", body = Health),
        (status = 403, description = "No `monitoring:read`, or a plan without monitoring (`plan_feature_required`).", body = platform::ErrorResponse),
    ))]
pub async fn health(
    State(state): State<HealthState>,
    principal: Principal,
) -> Result<Json<Health>, ApiError> {
    principal.require(Permission::MonitoringRead)?;
    let monitored = principal.key().is_none_or(|key| {
        let features = key.plan.plan().features;
        features.contains(&"basic_monitoring") || features.contains(&"advanced_monitoring")
    });
    if !monitored {
        platform::plans::require_feature(&principal, "basic_monitoring", "Health and metrics")?;
    }
    let mut components = Vec::new();

    let started = Instant::now();
    let postgres = tokio::time::timeout(PROBE, async {
        let client = state.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        anyhow::Ok(())
    })
    .await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, reason) = match postgres {
        Ok(Ok(())) => (Status::Ok, None),
        Ok(Err(e)) => (Status::Down, Some(format!("{e:#}"))),
        Err(_) => (Status::Down, Some("no answer within 2 s".into())),
    };
    components.push(component(
        "postgres".into(),
        status,
        reason,
        serde_json::json!({"latency_ms": ms}),
    ));

    let brokers: Vec<String> = state
        .config
        .kafka
        .brokers
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    let probes = futures::future::join_all(brokers.iter().map(|b| broker(b))).await;
    for (address, (status, reason, ms)) in brokers.iter().zip(probes) {
        components.push(component(
            format!("kafka:{address}"),
            status,
            reason,
            serde_json::json!({"connect_ms": ms}),
        ));
    }

    match lag(&state.config, &state.pool).await {
        Ok(lag) => {
            let stalled = lag.relay_events > 0 && lag.relay_seconds > STALL.as_secs_f64();
            components.push(component(
                "relay".into(),
                if stalled { Status::Down } else { Status::Ok },
                stalled.then(|| format!("{} events wait to be published, the oldest for {:.0} s", lag.relay_events, lag.relay_seconds)),
                serde_json::json!({"unpublished_events": lag.relay_events, "oldest_seconds": lag.relay_seconds}),
            ));
            match lag.projections {
                Some(projections) => {
                    for (name, events, seconds) in projections {
                        let stalled = events > 0 && seconds > STALL.as_secs_f64();
                        components.push(component(
                            format!("projection:{name}"),
                            if stalled { Status::Down } else { Status::Ok },
                            stalled.then(|| {
                                format!(
                                    "{events} events behind and not advancing for {seconds:.0} s"
                                )
                            }),
                            serde_json::json!({"lag_events": events, "lag_seconds": seconds}),
                        ));
                    }
                }
                None => components.push(component(
                    "projections".into(),
                    Status::Degraded,
                    Some("the topic's offsets could not be read: is Kafka up?".into()),
                    serde_json::json!({}),
                )),
            }
        }
        Err(e) => components.push(component(
            "relay".into(),
            Status::Down,
            Some(format!("the journal could not be read: {e:#}")),
            serde_json::json!({}),
        )),
    }

    if let Some(gateway) = &state.gateway {
        for report in gateway.breakers() {
            let (status, circuit) = match report.circuit {
                gateway::routing::Circuit::Closed => (Status::Ok, "closed"),
                gateway::routing::Circuit::HalfOpen => (Status::Degraded, "half_open"),
                gateway::routing::Circuit::Open => (Status::Down, "open"),
            };
            components.push(component(
                format!("provider:{}", report.deployment),
                status,
                (status != Status::Ok).then(|| format!("circuit {circuit} after failures; last: {}", report.last_error.clone().unwrap_or_default())),
                serde_json::json!({
                    "circuit": circuit,
                    "last_error": report.last_error,
                    "last_error_at": report.last_error_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                }),
            ));
        }
    }

    // Worst of all: a component down makes the platform degraded, PostgreSQL or every broker
    // down makes it down.
    let down = |prefix: &str| {
        let of: Vec<&Component> = components
            .iter()
            .filter(|c| c.name.starts_with(prefix))
            .collect();
        !of.is_empty() && of.iter().all(|c| c.status == Status::Down)
    };
    let status = if down("postgres") || down("kafka:") {
        Status::Down
    } else if components.iter().any(|c| c.status != Status::Ok) {
        Status::Degraded
    } else {
        Status::Ok
    };
    let checks = match principal.key() {
        Some(key) => {
            let client = state.pool.get().await?;
            client
                .query(
                    &format!(
                        "{} WHERE c.org_id = $1 ORDER BY c.id LIMIT 100",
                        read_api::routes::health_checks::SELECT
                    ),
                    &[&key.org_id],
                )
                .await?
                .iter()
                .map(read_api::routes::health_checks::from_row)
                .collect()
        }
        None => vec![],
    };
    Ok(Json(Health {
        object: "monitoring.health".into(),
        status,
        checked_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        components,
        checks,
    }))
}
