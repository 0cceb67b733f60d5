//! Assembles the roles of one process: the HTTP server (command and read routes, health,
//! metrics, docs), the outbox relay, the projection listener and the projectors.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Extension, Json, Router};
use command_api::relay::{RelayConfig, RelayStatus};
use command_api::{CommandState, Consistency};
use platform::auth::{AuthCache, Authenticator};
use platform::db::PgPool;
use platform::{http, metrics, Config};
use projectors::{ProjectorConfig, ProjectorStatus};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Resolved API keys one process keeps; about 1 KiB each.
const AUTH_CACHE_CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct Roles {
    /// Write routes, the relay and the projection listener.
    pub command_api: bool,
    pub read_api: bool,
    pub projectors: bool,
}

impl Roles {
    pub fn all() -> Self {
        Self {
            command_api: true,
            read_api: true,
            projectors: true,
        }
    }

    pub fn none() -> Self {
        Self {
            command_api: false,
            read_api: false,
            projectors: false,
        }
    }

    fn http(&self) -> bool {
        self.command_api || self.read_api
    }
}

/// A started process: its address (when it serves HTTP) and its background tasks.
pub struct Running {
    pub addr: Option<SocketAddr>,
    /// The operator port's address, with `AIHUB_OPS_LISTEN`.
    pub ops_addr: Option<SocketAddr>,
    /// Stops the HTTP server accepting; the requests under way go on.
    draining: CancellationToken,
    /// Ends the chat calls still under way (each billed for what it used).
    cut_off: CancellationToken,
    /// Stops the background tasks: the chat-event appender and the quota leases flush first.
    shutdown: CancellationToken,
    http: Option<JoinHandle<()>>,
    in_flight: Option<Arc<gateway::InFlight>>,
    tasks: Vec<JoinHandle<()>>,
    drain: Duration,
}

impl Running {
    /// Drains the process within its bound (`AIHUB_SHUTDOWN_TIMEOUT_MS`, 30 s by default): stops
    /// accepting connections; lets the requests and chat calls under way finish for all but the
    /// last quarter of the bound (at most 5 s of it), then ends the remaining calls, each billed
    /// for what it used; then stops every background task at once, which appends the queued chat
    /// events, gives back the quota leases, and lets the projectors commit their batch.
    pub async fn stop(self) {
        let started = tokio::time::Instant::now();
        let deadline = started + self.drain;
        let reserve = (self.drain / 4).min(Duration::from_secs(5));
        self.draining.cancel();
        let in_flight = self.in_flight.clone();
        let requests_done = async {
            if let Some(http) = self.http {
                let _ = http.await;
            }
            if let Some(calls) = &in_flight {
                calls.idle().await;
            }
        };
        if tokio::time::timeout_at(deadline - reserve, requests_done)
            .await
            .is_err()
        {
            let calls = in_flight.as_ref().map_or(0, |c| c.count());
            tracing::warn!(
                calls,
                "requests still under way as the shutdown bound nears; ending them"
            );
            self.cut_off.cancel();
            if let Some(calls) = &in_flight {
                let _ = tokio::time::timeout_at(deadline - reserve / 2, calls.idle()).await;
            }
        }
        self.shutdown.cancel();
        let stopped =
            tokio::time::timeout_at(deadline, futures::future::join_all(self.tasks)).await;
        let took_ms = started.elapsed().as_millis() as u64;
        match stopped {
            Ok(_) => tracing::info!(took_ms, "stopped"),
            Err(_) => tracing::warn!(
                took_ms,
                "stopped at the shutdown bound with tasks still running"
            ),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Health {
    pool: PgPool,
    roles: Roles,
    relay: Arc<RelayStatus>,
    projectors: Arc<ProjectorStatus>,
    broker: Arc<BrokerProbe>,
}

/// The broker check of `/readyz`: one client made once and kept, and one metadata request a
/// second at most, its answer shared — so polling `/readyz` (or hammering it: it needs no
/// token) neither builds a Kafka client per call nor queues blocking threads.
struct BrokerProbe {
    kafka: events::kafka::KafkaConnection,
    client: std::sync::Mutex<Option<Arc<BaseConsumer>>>,
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl BrokerProbe {
    fn new(kafka: events::kafka::KafkaConnection) -> Self {
        Self {
            kafka,
            client: std::sync::Mutex::new(None),
            last: tokio::sync::Mutex::new(None),
        }
    }

    async fn reachable(&self) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last {
            if at.elapsed() < Duration::from_secs(1) {
                return answer;
            }
        }
        let client = {
            let mut held = self.client.lock().unwrap_or_else(|p| p.into_inner());
            match held.as_ref() {
                Some(client) => Some(client.clone()),
                None => {
                    let made: Option<Arc<BaseConsumer>> =
                        self.kafka.client_config().create().ok().map(Arc::new);
                    held.clone_from(&made);
                    made
                }
            }
        };
        let answer = match client {
            Some(client) => tokio::task::spawn_blocking(move || {
                client.fetch_metadata(None, Duration::from_secs(2)).is_ok()
            })
            .await
            .unwrap_or(false),
            None => false,
        };
        metrics::READINESS_PROBES
            .with_label_values(&[if answer { "ok" } else { "failed" }])
            .inc();
        *last = Some((Instant::now(), answer));
        answer
    }
}

pub async fn start(config: Config, roles: Roles) -> anyhow::Result<Running> {
    // Credentials or a certificate the brokers refuse stop the start, named; brokers that are
    // away do not (the journal takes writes meanwhile, and the relay catches up).
    if let Err(e) = check_broker(&config.kafka).await {
        match e.downcast_ref::<events::kafka::ConnectionError>() {
            Some(error) if !error.is_misconfiguration() => {
                tracing::warn!(error = %error, "the Kafka brokers do not answer yet; starting anyway")
            }
            _ => return Err(e),
        }
    }
    let pool = config.database.pool_named("aihub requests", 16)?;
    platform::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    // Bookkeeping runs on a runtime of its own at a lower CPU priority, with a pool of its own:
    // a pooled connection's driver runs where it was made, so sharing the request pool would
    // put requests' round trips behind the background's priority.
    let background = platform::background::handle(platform::background::BackgroundSettings {
        threads: config.background_threads,
        nice: config.background_nice,
        idle: config.background_idle,
    })
    .context("starting the background runtime")?;
    let background_pool = if config.background_threads == 0 {
        pool.clone()
    } else {
        config.database.pool_named("aihub background", 8)?
    };
    let shutdown = CancellationToken::new();
    let draining = CancellationToken::new();
    let cut_off = CancellationToken::new();
    let mut in_flight = None;
    let mut tasks = vec![tokio::spawn(ensure_topic(config.clone(), shutdown.clone()))];
    let relay_status = Arc::new(RelayStatus::default());
    let projector_status = Arc::new(ProjectorStatus::default());

    let mut api = Router::new();
    let mut failures = None;
    let auth_cache = AuthCache::new(config.auth_cache_ttl, AUTH_CACHE_CAPACITY);
    let mut data_gateway: Option<Arc<gateway::Gateway>> = None;
    // One limiter per process: the requests counted at authentication and the gateway's tokens
    // share its windows.
    let rate = platform::ratelimit::RateLimiter::new(pool.clone());
    // Single sign-on records first sign-ins through the command path, in every HTTP process.
    let mut provisioner: Option<Arc<dyn platform::sso::Provisioner>> = None;
    if roles.command_api {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        failures = Some(tx);
        let journal = command_api::Journal::new(background_pool.clone());
        tasks.push(background.spawn(command_api::auth_failures::run(
            journal,
            rx,
            config.auth_failure_window,
            shutdown.clone(),
        )));
        let consistency = Consistency::new(pool.clone());
        tasks.push(tokio::spawn(consistency.clone().listen(
            config.database.clone(),
            Some(auth_cache.clone()),
            shutdown.clone(),
        )));
        let relay_config = RelayConfig {
            database: config.database.clone(),
            kafka: config.kafka.clone(),
            topic: config.topic.clone(),
            message_timeout: config.relay_message_timeout,
            sweep: config.relay_sweep,
            linger: config.relay_linger,
        };
        tasks.push(background.spawn(command_api::relay::run(
            relay_config,
            relay_status.clone(),
            shutdown.clone(),
        )));
        let state = CommandState::new(
            pool.clone(),
            consistency,
            config.consistency_timeout,
            config.clock,
        )
        .with_payment_webhook_secret(config.payment_webhook_secret.clone())
        .with_sso_loopback_http(config.sso_allow_loopback_http)
        .with_audit_public_key(config.audit_signing_key.as_ref().map(|k| k.public_hex()));
        provisioner = Some(Arc::new(
            command_api::sso::provision::JournalProvisioner::new(state.clone()),
        ));
        api = api.merge(command_api::routes(state));
        let mut gateway_config = config.gateway.clone();
        gateway_config.spool_dir =
            gateway::spool::dir_for(&config.gateway.spool_dir, &config.database.url);
        // The chat events' appender on the background runtime, with a pool of its own (its
        // backends named "aihub journal", for a host to set their priority: OPERATIONS.md).
        let journal_pool = if config.background_threads == 0 {
            pool.clone()
        } else {
            config.database.pool_named("aihub journal", 4)?
        };
        let (data_plane, appender) = gateway::Gateway::new(
            gateway_config,
            command_api::Journal::new(pool.clone()),
            gateway::Bookkeeping {
                journal: command_api::Journal::new(journal_pool),
                runtime: background.clone(),
            },
            config.clock,
            shutdown.clone(),
            cut_off.clone(),
            Some(rate.clone()),
        )
        .await?;
        in_flight = Some(data_plane.in_flight.clone());
        tasks.push(appender);
        data_gateway = Some(data_plane.clone());
        let (chat_routes, _) = gateway::router(data_plane.clone()).split_for_parts();
        api = api.merge(chat_routes);
        api = api.merge(
            Router::new()
                .route("/monitoring/health", get(crate::health::health))
                .with_state(crate::health::HealthState {
                    config: config.clone(),
                    pool: pool.clone(),
                    gateway: Some(data_plane),
                }),
        );
        if let (Some(signer), false) = (
            config.audit_signing_key.clone(),
            config.audit_checkpoint_every.is_zero(),
        ) {
            tasks.push(
                background.spawn(command_api::audit::checkpoint_periodically(
                    command_api::Journal::new(background_pool.clone()),
                    signer,
                    config.audit_checkpoint_every,
                    shutdown.clone(),
                )),
            );
        }
        if !config.billing_close_every.is_zero() {
            tasks.push(
                background.spawn(command_api::billing::close::close_periods_when_due(
                    command_api::Journal::new(background_pool.clone()),
                    config.clock,
                    config.billing_close_every,
                    config.billing_close_grace,
                    shutdown.clone(),
                )),
            );
        }
    }
    if roles.read_api && !roles.command_api {
        // Without a projection listener here a first sign-in waits out the consistency timeout
        // (then answers from the journal's state); later ones find the user in the read models.
        let state = CommandState::new(
            pool.clone(),
            Consistency::new(pool.clone()),
            config.consistency_timeout,
            config.clock,
        );
        provisioner = Some(Arc::new(
            command_api::sso::provision::JournalProvisioner::new(state),
        ));
        // No projection listener in this process to feed the cache: a listener of its own.
        let cache = auth_cache.clone();
        tasks.push(tokio::spawn(platform::notify::listen(
            config.database.clone(),
            vec![platform::auth::AUTH_CHANNEL],
            move |heard| cache.heard(heard),
            shutdown.clone(),
        )));
    }
    if roles.read_api {
        let export_pool = config
            .database
            .pool_named("aihub exports", config.export_connections)?;
        api = api.merge(read_api::routes(read_api::ReadState {
            pool: pool.clone(),
            clock: config.clock,
            exports: read_api::routes::usage::Exports::new(
                export_pool,
                config.export_statement_timeout,
            ),
            audit: read_api::AuditSources {
                kafka: config.kafka.clone(),
                topic: config.topic.clone(),
                public_key: config.audit_signing_key.as_ref().map(|k| k.public()),
            },
        }));
    }
    if roles.projectors {
        let projector_config = ProjectorConfig {
            kafka: config.kafka.clone(),
            topic: config.topic.clone(),
            group_prefix: config.consumer_group_prefix.clone(),
            linger: config.projector_linger,
        };
        // The alert evaluator and notifier: one leader across processes, as the relay.
        tasks.push(
            background.spawn(command_api::alerts::run(
                command_api::alerts::AlertsConfig {
                    database: config.database.clone(),
                    pool: background_pool.clone(),
                    eval_every: config.alert_eval,
                    notify: command_api::alerts::notify::NotifyConfig {
                        smtp_url: config.smtp_url.clone(),
                        smtp_from: config.smtp_from.clone(),
                        allow_networks: config
                            .webhook_allow_networks
                            .clone()
                            .map(|n| n.0)
                            .unwrap_or_default(),
                        backoff: config.notify_backoff,
                        ..Default::default()
                    },
                },
                Arc::new(command_api::alerts::AlertsStatus::default()),
                shutdown.clone(),
            )),
        );
        for projection in projectors::all() {
            tasks.push(background.spawn(projectors::runner::run(
                projection,
                background_pool.clone(),
                projector_config.clone(),
                projector_status.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(background.spawn(crate::monitors::run(
            crate::monitors::Monitors {
                database: config.database.clone(),
                pool: background_pool.clone(),
                projectors: projector_config.clone(),
                gateway: data_gateway.clone(),
                clock: config.clock,
            },
            shutdown.clone(),
        )));
    }

    let health = Health {
        pool: pool.clone(),
        roles,
        relay: relay_status,
        projectors: projector_status,
        broker: Arc::new(BrokerProbe::new(config.kafka.clone())),
    };
    // What a scrape refreshes first: the breakers' gauges and the pipeline's lag.
    let scrape = crate::health::HealthState {
        config: config.clone(),
        pool: pool.clone(),
        gateway: data_gateway,
    };
    let mut ops_addr = None;
    if let Some(ops_listen) = &config.ops_listen {
        let listener = tokio::net::TcpListener::bind(ops_listen)
            .await
            .with_context(|| format!("binding the operator port {ops_listen}"))?;
        ops_addr = Some(listener.local_addr()?);
        let ops = ops_router(health.clone(), scrape.clone());
        // Up until the background stops: probes and scrapes see the drain.
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let server = axum::serve(listener, ops.into_make_service())
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "operator HTTP server failed");
            }
        }));
    }

    let mut addr = None;
    let mut http = None;
    if roles.http() {
        let authenticator = Authenticator::new(
            config.admin_token.clone(),
            Some(pool.clone()),
            failures,
            config.clock,
        )
        .with_named_admins(
            &config
                .admin_tokens
                .clone()
                .map(|named| named.0)
                .unwrap_or_default(),
        )
        .with_cache(auth_cache)
        .with_rate_limits(rate)
        .with_sso(Arc::new(platform::sso::Sso::new(
            platform::sso::SsoSettings {
                jwks_refetch: config.sso_jwks_refetch,
                allow_loopback_http: config.sso_allow_loopback_http,
            },
            provisioner,
        )));
        let router = router(api, health, authenticator, &config, scrape);
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        addr = Some(listener.local_addr()?);
        // Stream chunks are small writes; Nagle's algorithm would hold each behind the last ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let stop = draining.clone();
        http = Some(tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let server = axum::serve(listener, service)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));
    }
    Ok(Running {
        addr,
        ops_addr,
        draining,
        cut_off,
        shutdown,
        http,
        in_flight,
        tasks,
        drain: config.shutdown_timeout,
    })
}

/// How long a start waits for the brokers to answer its connection check.
const BROKER_CHECK: Duration = Duration::from_secs(10);

/// Connects to the brokers once: an error says whether they refused the TLS handshake or the
/// SASL credentials (a misconfiguration) or did not answer.
pub async fn check_broker(kafka: &events::kafka::KafkaConnection) -> anyhow::Result<()> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || kafka.check(BROKER_CHECK))
        .await
        .context("checking the broker connection")?
        .map_err(anyhow::Error::from)
}

/// Makes sure the event topic exists, retrying in the background while the broker is away, so
/// a process starts (and accepts writes into the journal) even when the broker does not answer.
async fn ensure_topic(config: Config, shutdown: CancellationToken) {
    loop {
        match events::kafka::ensure_topic(
            &config.kafka,
            &config.topic,
            config.topic_partitions,
            config.topic_replication,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, topic = %config.topic, "could not make sure the event topic exists; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

fn router(
    api: Router,
    health: Health,
    authenticator: Authenticator,
    config: &Config,
    scrape: crate::health::HealthState,
) -> Router {
    let mut router = Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(health));
    // With an operator port, the metrics and the docs are there only; without one, the docs
    // stay here and the metrics need the platform-admin token.
    if config.ops_listen.is_none() {
        router = router
            .route("/metrics", get(metrics_for_admin).with_state(scrape))
            .route("/openapi.json", get(openapi_json))
            .merge(crate::docs::router());
    }
    router
        .fallback(http::not_found_fallback)
        .method_not_allowed_fallback(http::method_not_allowed_fallback)
        // Shared, not cloned into every request: cloning its pools, caches and channels was
        // a dozen atomic operations on lines both request workers write (issue 17).
        .layer(Extension(std::sync::Arc::new(authenticator)))
        .layer(middleware::from_fn(platform::ratelimit::rate_headers))
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn({
            let max = config.max_body_bytes;
            move |request, next| http::limit_body(max, request, next)
        }))
        .layer(middleware::from_fn(http::error_shape))
        .layer(middleware::from_fn(track))
        .layer(middleware::from_fn(http::request_id))
}

/// The operator port: health, metrics and docs, for every role, no token (it is meant for the
/// cluster's network only: a NetworkPolicy, not the public load balancer).
fn ops_router(health: Health, scrape: crate::health::HealthState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(health))
        .route("/metrics", get(metrics_text).with_state(scrape))
        .route("/openapi.json", get(openapi_json))
        .merge(crate::docs::router())
        .fallback(http::not_found_fallback)
}

/// `/metrics` on the public port: the platform admin's only (Prometheus sends the token as a
/// bearer); an operator port serves it without one.
async fn metrics_for_admin(
    State(scrape): State<crate::health::HealthState>,
    principal: platform::Principal,
) -> Result<String, platform::ApiError> {
    principal.require_admin()?;
    Ok(metrics_text(State(scrape)).await)
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Prometheus metrics, in the text exposition format. On the public port it needs the
/// platform-admin token; with `AIHUB_OPS_LISTEN` it is served on the operator port only, without.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "No platform-admin token (public port)", body = platform::ErrorResponse),
        (status = 403, description = "An API key, not the platform-admin token (public port)", body = platform::ErrorResponse),
    ))]
pub(crate) async fn metrics_text(State(scrape): State<crate::health::HealthState>) -> String {
    if let Some(gateway) = &scrape.gateway {
        gateway.export_breakers();
        gateway.export_spool();
    }
    crate::health::export_lag(&scrape.config, &scrape.pool).await;
    metrics::render()
}

async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::pretty(),
    )
        .into_response()
}

/// Records every request's route, status and duration.
async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    metrics::HTTP_REQUESTS
        .with_label_values(&[&method, &route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Ready when Postgres answers, the broker answers, and the roles of this process run.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready; `checks` says what is missing", body = Object),
    ))]
pub(crate) async fn readyz(State(health): State<Health>) -> Response {
    let postgres = match health.pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let broker = health.broker.reachable().await;
    let relay = !health.roles.command_api || health.relay.running.load(Ordering::SeqCst);
    let stopped = health.projectors.stopped();
    let projectors = !health.roles.projectors || (health.projectors.any() && stopped.is_empty());
    let ready = postgres && broker && relay && projectors;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "postgres": postgres,
            "broker": broker,
            "relay": relay,
            "relay_leader": health.relay.leader.load(Ordering::SeqCst),
            "projectors": projectors,
            "stopped_projections": stopped,
        }
    });
    (status, Json(body)).into_response()
}
