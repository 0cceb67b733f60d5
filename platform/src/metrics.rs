//! The Prometheus registry of the process and the metrics every role shares.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    // Registering the same static twice is impossible; a failure here would only drop a metric.
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
}

pub static HTTP_REQUESTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "aihub_http_request_duration_seconds",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static READINESS_PROBES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_readiness_broker_probes_total",
                "Broker metadata requests /readyz made (answers within a second share one)",
            ),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static AUTH_CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_auth_cache_lookups_total",
                "API key lookups by outcome: hit, miss (read from Postgres and cached) or bypass (read from Postgres, cache not usable)",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_auth_failures_total",
                "Refused authentications by reason",
            ),
            &["reason"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_rate_limited_total",
                "Calls refused by a rate limit (429 rate_limit_exceeded or too_many_streams), by what ran out: requests, tokens or streams",
            ),
            &["limit"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static RATE_LIMIT_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_rate_limit_errors_total",
                "Rate-limit windows that could not be read from PostgreSQL (the call was admitted)",
            ),
            &["store"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static EVENTS_PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_relay_events_total",
                "Journal rows the relay handled, by outcome",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static EVENTS_PROJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_projector_events_total",
                "Events seen by projections, by outcome",
            ),
            &["projection", "outcome"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static COMMANDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_commands_total",
                "Commands by outcome: projected in time, accepted (202) or refused",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

pub static RUNNING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "aihub_component_running",
                "1 while a background component runs",
            ),
            &["component"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

/// The text exposition of every registered metric.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}
