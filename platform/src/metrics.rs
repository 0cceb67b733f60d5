//! The Prometheus registry of the process and the metrics every role shares.

use std::sync::LazyLock;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
            )
            // From half a millisecond: what the gateway adds to a call is well under the 5 ms
            // where the client library's default buckets begin (issue 17).
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
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

pub static SSO_KEY_FETCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_sso_key_fetches_total",
                "Fetches of identity providers' key sets (discovery, then JWKS) by result",
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

pub static PROJECTOR_BATCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "aihub_projector_batches_total",
                "Batches committed by projections (one transaction each): events per batch is events_total over this",
            ),
            &["projection"],
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

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        GaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
}

/// Chat calls by the model asked for, the provider that served (`none` when none did) and the
/// outcome (`ok`, or the error's code: `insufficient_quota` is a quota refusal).
pub static CHAT_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "aihub_chat_calls_total",
        "Chat calls by model, provider and outcome (ok or the error code)",
        &["model", "provider", "outcome"],
    )
});

pub static CHAT_TOKENS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "aihub_chat_tokens_total",
        "Tokens billed by model, provider and kind (prompt or completion)",
        &["model", "provider", "kind"],
    )
});

pub static CHAT_COST: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "aihub_chat_cost_micros_total",
        "Cost billed, in millionths of a dollar, by model and provider",
        &["model", "provider"],
    )
});

pub static UPSTREAM_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "aihub_upstream_request_duration_seconds",
                "Attempts at a provider by provider and outcome (ok, timeout, http_<status>, ...), until the answer began",
            )
            .buckets(vec![
                0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["provider", "outcome"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition")),
    )
});

/// 0 closed, 1 half-open (a probe may go), 2 open (skipped); read when scraped.
pub static BREAKER_STATE: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "aihub_breaker_state",
        "Circuit breaker of each deployment (provider/upstream model): 0 closed, 1 half-open, 2 open",
        &["deployment"],
    )
});

pub static RELAY_LAG_EVENTS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "aihub_relay_lag_events",
        "Journal rows not yet published to Kafka",
        &[],
    )
});

pub static RELAY_LAG_SECONDS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "aihub_relay_lag_seconds",
        "Age of the oldest journal row not yet published to Kafka (0 when none waits)",
        &[],
    )
});

pub static PROJECTION_LAG_EVENTS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "aihub_projection_lag_events",
        "Events on the topic a projection has not applied yet",
        &["projection"],
    )
});

pub static PROJECTION_LAG_SECONDS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "aihub_projection_lag_seconds",
        "How long a projection that is behind has not advanced (0 when caught up)",
        &["projection"],
    )
});

pub static SPOOL_PENDING_EVENTS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "aihub_spool_pending_events",
        "Chat events spooled that the journal does not have yet (queued, or in the backlog on disk); at AIHUB_SPOOL_BACKLOG new calls get 503",
        &[],
    )
});

/// The text exposition of every registered metric.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}
