//! The data plane of AI Hub: OpenAI-compatible chat and model endpoints in front of OpenRouter,
//! Gemini and any OpenAI-compatible server, with ordered, weighted deployments per model,
//! failover before the first byte reaches the client, a circuit breaker per deployment, monthly
//! token quotas, and one event per call. The control plane (`command-api`) owns the journal and
//! the catalog aggregate this crate reads; it never depends on this crate.
//!
//! - `chat/`: the chat handler and its steps (request, call and its event, dispatch, respond);
//!   `models.rs`: the model lists; `access.rs`: permissions and plans.
//! - `wire/`: one module per provider wire format behind `WireFormat`; `upstream.rs`: the HTTP
//!   client, sending and SSE framing.
//! - `routing.rs`: the pure routing plan and circuit breakers; `catalog.rs`: models and
//!   deployments; `quota/`: token leases (`lease.rs` pure, `leases.rs` the I/O).
//! - `import/`: reading OpenRouter's model list for `aihub models sync`.

pub mod access;
pub mod catalog;
pub mod chat;
pub mod import;
pub mod limits;
pub mod models;
pub mod quota;
pub mod routing;
pub mod spool;
pub mod sse;
pub mod upstream;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use command_api::journal::Encoded;
use events::{EventEnvelope, EventPayload};
use platform::config::{GatewayConfig, ProviderConfig};
use routing::{Breaker, BreakerPolicy, Step};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use catalog::{Catalog, Deployment, Model};
use command_api::catalog::aggregate::{stream_id, ImportedCatalog};
use command_api::command::Loaded;
use command_api::Journal;

/// A deployment's circuit breaker and last failure, as this process sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerReport {
    pub deployment: String,
    pub circuit: routing::Circuit,
    pub last_error: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct Gateway {
    /// The built-in or configured catalog; its names take precedence over imported ones.
    configured: Catalog,
    /// `configured` plus the imported models, swapped whole when a newer sync is seen.
    catalog: RwLock<Arc<Catalog>>,
    imported: tokio::sync::Mutex<Loaded<ImportedCatalog>>,
    journal: Journal,
    pub providers: Vec<ProviderConfig>,
    pub config: GatewayConfig,
    pub http: reqwest::Client,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Each deployment's last failed attempt: its outcome and when.
    last_errors: Mutex<HashMap<String, (String, chrono::DateTime<chrono::Utc>)>>,
    events: mpsc::Sender<Queued>,
    /// Every call's event is written here before its answer completes (see `spool`).
    spool: Arc<spool::Spool>,
    pub pool: platform::db::PgPool,
    pub clock: platform::clock::Clock,
    pub quota: Arc<quota::leases::Leases>,
    /// Tokens per minute (requests are counted at authentication, by the same limiter).
    pub rate: Option<Arc<platform::ratelimit::RateLimiter>>,
    /// Streams open now, by organization and key.
    pub streams: Arc<limits::Streams>,
    /// The chat calls under way in this process (a call ends when its event is queued).
    pub in_flight: Arc<InFlight>,
    /// Cancelled when a draining process stops waiting for its calls: each ends at once, its
    /// client told, and is billed for what it used.
    pub cut_off: CancellationToken,
}

/// Counts the calls under way, so a draining process knows when the last one has ended, and
/// when the last one started or ended, so the appender knows when calls stop coming.
pub struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Milliseconds from `epoch` to the last call's start or end.
    last: AtomicU64,
    epoch: tokio::time::Instant,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            count: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            last: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl InFlight {
    /// One more call under way, until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.touch();
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// No call under way, and none started or ended for `quiet`.
    pub fn quiet_for(&self, quiet: Duration) -> bool {
        let since = self
            .epoch
            .elapsed()
            .as_millis()
            .saturating_sub(u128::from(self.last.load(Ordering::Relaxed)));
        self.count() == 0 && since >= quiet.as_millis()
    }

    /// Returns once no call is under way.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A call under way; dropping it ends it.
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Where the chat events' bookkeeping runs: the appender and the spool's recovery, on `runtime`
/// (the process's background runtime, so under load they wait for idle CPU, the events waiting
/// in the spool meanwhile), appending to `journal` (a pool of their own).
pub struct Bookkeeping {
    pub journal: Journal,
    pub runtime: tokio::runtime::Handle,
}

impl Gateway {
    /// The gateway, with the imported catalog loaded, and the task that appends its events to
    /// the journal in batches. `shutdown` stops the background work (wait for the calls first:
    /// [`InFlight::idle`]); `cut_off` ends the calls still under way.
    pub async fn new(
        config: GatewayConfig,
        journal: Journal,
        bookkeeping: Bookkeeping,
        clock: platform::clock::Clock,
        shutdown: CancellationToken,
        cut_off: CancellationToken,
        rate: Option<Arc<platform::ratelimit::RateLimiter>>,
    ) -> anyhow::Result<(Arc<Self>, tokio::task::JoinHandle<()>)> {
        let configured = Catalog::load(config.models_file.as_deref())?;
        let http = upstream::http_client(config.upstream_ca_file.as_deref())?;
        let (events, rx) = mpsc::channel(config.event_queue as usize);
        let pool = journal.pool().clone();
        let spool_dir = std::path::PathBuf::from(&config.spool_dir);
        let spool = Arc::new(
            spool::Spool::open(&spool_dir, config.spool_fsync).map_err(|e| {
                anyhow::anyhow!("opening the chat event spool {}: {e}", spool_dir.display())
            })?,
        );
        // What a process killed before us left: appended before we serve.
        let recovered = {
            let (spool, journal) = (spool.clone(), bookkeeping.journal.clone());
            bookkeeping
                .runtime
                .spawn(async move { spool.recover(&journal).await })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|recovered| recovered)
        };
        match recovered {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                events = n,
                "appended chat events spooled by a stopped process"
            ),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not recover spooled chat events yet; retrying in the background")
            }
        }
        bookkeeping.runtime.spawn(recover_spools(
            spool.clone(),
            bookkeeping.journal.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(release_expired_reservations(pool.clone(), shutdown.clone()));
        let quota = quota::leases::Leases::new(pool.clone(), lease_config(&config));
        let upkeep = tokio::spawn(quota.clone().run(shutdown.clone()));
        let in_flight: Arc<InFlight> = Arc::default();
        let appender = Appender {
            journal: bookkeeping.journal,
            spool: spool.clone(),
            calls: in_flight.clone(),
            defer: config.journal_defer,
            crowded: config.spool_backlog / 2,
            shutdown: shutdown.clone(),
            writing: None,
        };
        let appender = bookkeeping.runtime.spawn(append_events(appender, rx));
        // The caller waits for this one task at shutdown: leases are given back, events appended.
        let background = tokio::spawn(async move {
            let _ = tokio::join!(upkeep, appender);
        });
        let gateway = Arc::new(Self {
            catalog: RwLock::new(Arc::new(configured.clone())),
            configured,
            imported: tokio::sync::Mutex::new(Loaded {
                state: ImportedCatalog::default(),
                version: 0,
            }),
            journal,
            providers: config.providers.clone(),
            config,
            http,
            breakers: Mutex::new(HashMap::new()),
            last_errors: Mutex::new(HashMap::new()),
            events,
            spool,
            pool,
            clock,
            quota,
            rate,
            streams: Arc::default(),
            in_flight,
            cut_off,
        });
        if let Err(e) = gateway.refresh_catalog().await {
            tracing::warn!(error = %e, "could not load the imported model catalog; serving the configured one");
        }
        tokio::spawn(refresh_catalog(gateway.clone(), shutdown));
        Ok((gateway, background))
    }

    /// The models served now: configured ones, then imported ones.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Catches up with `aihub models sync` runs recorded in the journal since the last look;
    /// true when the catalog changed.
    pub async fn refresh_catalog(&self) -> Result<bool, platform::ApiError> {
        let mut imported = self.imported.lock().await;
        let provider = command_api::catalog::PROVIDER;
        if !imported
            .catch_up(&self.journal, &stream_id(provider))
            .await?
        {
            return Ok(false);
        }
        let merged = self
            .configured
            .with_imported(provider, imported.state.entries.values());
        tracing::info!(
            imported = imported.state.entries.len(),
            version = imported.version,
            "model catalog refreshed"
        );
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(merged);
        Ok(true)
    }

    /// The order in which a call tries `model`'s deployments now (`routing::plan`).
    pub fn plan<'a>(&'a self, model: &'a Model) -> Vec<Step<'a>> {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        routing::plan(
            &model.deployments,
            &self.providers,
            &mut breakers,
            Instant::now(),
            self.breaker_policy(),
            &mut random_below,
        )
    }

    fn breaker_policy(&self) -> BreakerPolicy {
        BreakerPolicy {
            failures: self.config.breaker_failures,
            cooldown: self.config.breaker_cooldown,
            probe: self.config.upstream_timeout,
        }
    }

    /// Counts an attempt's outcome in the deployment's circuit breaker.
    pub fn record(&self, deployment: &Deployment, ok: bool) {
        let policy = self.breaker_policy();
        let key = routing::breaker_key(deployment);
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if breakers
            .entry(key.clone())
            .or_default()
            .record(ok, Instant::now(), policy)
        {
            tracing::warn!(deployment = %key, "circuit opened");
        }
    }

    /// Remembers a deployment's failed attempt, for the health of the providers.
    pub fn last_error(&self, deployment: &Deployment, outcome: &str) {
        let key = routing::breaker_key(deployment);
        let mut errors = self.last_errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.insert(key, (outcome.to_string(), chrono::Utc::now()));
    }

    /// Every deployment this process has called or refused: its circuit now and its last
    /// failure, by `provider/upstream model`.
    pub fn breakers(&self) -> Vec<BreakerReport> {
        let now = Instant::now();
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let errors = self.last_errors.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<&String> = breakers.keys().chain(errors.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                let circuit = breakers
                    .get(key)
                    .map(|b| b.circuit(now))
                    .unwrap_or(routing::Circuit::Closed);
                let last = errors.get(key);
                BreakerReport {
                    deployment: key.clone(),
                    circuit,
                    last_error: last.map(|(outcome, _)| outcome.clone()),
                    last_error_at: last.map(|(_, at)| *at),
                }
            })
            .collect()
    }

    /// Sets `aihub_breaker_state` from the breakers now (before a scrape).
    pub fn export_breakers(&self) {
        for report in self.breakers() {
            let value = match report.circuit {
                routing::Circuit::Closed => 0.0,
                routing::Circuit::HalfOpen => 1.0,
                routing::Circuit::Open => 2.0,
            };
            platform::metrics::BREAKER_STATE
                .with_label_values(&[&report.deployment])
                .set(value);
        }
    }

    /// Sets the spool's gauge (before `/metrics` is rendered).
    pub fn export_spool(&self) {
        platform::metrics::SPOOL_PENDING_EVENTS
            .with_label_values::<&str>(&[])
            .set(self.spool.pending() as f64);
    }

    /// 503 `overloaded` when the journal is so far behind that the spool holds
    /// `AIHUB_SPOOL_BACKLOG` events it does not have: a new call is refused rather than have the
    /// spool grow without bound.
    pub fn check_not_overloaded(&self) -> Result<(), platform::ApiError> {
        if self.spool.pending() >= self.config.spool_backlog {
            return Err(platform::ApiError::unavailable(
                "The gateway is recording calls slower than they come; retry shortly.",
            )
            .with_code("overloaded"));
        }
        Ok(())
    }

    /// Spools a call's event and hands it to the appender: through its queue, or, when that is
    /// full, through the spool's backlog (`spool`). Never waits, unless the spool cannot be
    /// written: then the queue is the event's only way, and the call waits for room in it.
    pub async fn emit(
        &self,
        payload: EventPayload,
        org_id: uuid::Uuid,
        actor: events::Actor,
        request_id: &str,
    ) {
        let id = uuid::Uuid::now_v7();
        let mut event = EventEnvelope::new(
            payload,
            Some(org_id),
            events::StreamId::chat(id),
            1,
            actor,
            request_id.to_string(),
        );
        // The call belongs to the month the quota charged it to, also under a pinned clock.
        let now = self.clock.now();
        event.occurred_at = chrono::DateTime::from_timestamp_millis(now.timestamp_millis())
            .unwrap_or(now)
            .into();
        let (event_id, event_type) = (event.event_id, event.payload.event_type());
        // Encoded here, once, by the call that made it: the spool's line and the journal's row
        // are the same text, and the appender has no batch to encode on a request worker.
        let encoded = Encoded::of(&event);
        // Spooled first: from here the call is billed whatever happens to this process.
        let line = spool::Line::of(encoded.text());
        let mut call = Some((event, encoded));
        let now = tokio::time::Instant::now();
        let written = self.spool.write_then(line, |ticket| match call.take() {
            Some((event, encoded)) => self.events.try_send((event, encoded, ticket, now)).is_ok(),
            None => false,
        });
        match written {
            Ok(route) => {
                tracing::debug!(%event_id, event_type, ?route, "event queued for the journal")
            }
            Err(e) => {
                // The journal is then the only copy: the queue must take it, and the append make it.
                tracing::error!(%event_id, error = %e, "could not spool a chat event");
                if let Some((event, encoded)) = call.take() {
                    let queued = (event, encoded, spool::Ticket::NONE, now);
                    if self.events.send(queued).await.is_err() {
                        tracing::error!(%event_id, event_type, "chat event appender is gone and the spool failed; the event is lost");
                    }
                }
            }
        }
    }
}

/// `POST /chat/completions`, `POST /chat/stream`, `GET /chat/models` and `GET /models`, under
/// `/api/v1`, with their OpenAPI paths.
pub fn router(gateway: Arc<Gateway>) -> OpenApiRouter {
    routes().with_state(gateway)
}

/// The gateway's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(chat::completions))
        .routes(routes!(chat::stream))
        .routes(routes!(models::chat_models))
        .routes(routes!(models::models))
}

/// What the paths alone do not bring into the document: the tags, the bearer scheme they name,
/// and the stream's chunk, which travels inside `text/event-stream`. A document this is merged
/// into keeps its own entries of the same names.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    tags(
        (name = "chat", description = "OpenAI-compatible chat completions, whole or streamed as server-sent events, routed to the model's providers with failover."),
        (name = "models", description = "The models the caller's plan serves."),
    ),
    components(schemas(chat::schema::ChatCompletionChunk))
)]
struct Api;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API key of an organization (`aihub-sk-…`) or the platform-admin token.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// A uniformly random number below `total` (at least 1).
fn random_below(total: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(total.max(1))) as u64
}

/// The write side does not read read models, so the gateway follows the catalog stream in the
/// journal itself, like an aggregate: only the events after the version it holds.
async fn refresh_catalog(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(gateway.config.catalog_refresh) => {}
        }
        if let Err(e) = gateway.refresh_catalog().await {
            tracing::warn!(error = %e, "could not refresh the imported model catalog");
        }
    }
}

/// Leases outlive their last sync by the longest a call may take plus a minute, as per-call
/// reservations do, so a lease never lapses under a call in flight while its process lives.
pub fn lease_config(config: &GatewayConfig) -> quota::leases::LeaseConfig {
    quota::leases::LeaseConfig {
        hold: config.deadline + Duration::from_secs(60),
        flush: config.quota_flush,
        idle: config.quota_lease_idle,
        sizing: quota::lease::Sizing {
            max_block: config.quota_max_lease,
            ..Default::default()
        },
        per_call: !config.quota_leases,
    }
}

/// Frees the quota held by calls whose process died before settling them.
async fn release_expired_reservations(pool: platform::db::PgPool, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        match quota::release_expired(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(reservations = n, "released expired quota reservations"),
            Err(e) => tracing::warn!(error = %e, "could not release expired quota reservations"),
        }
    }
}

/// Appends what dead processes sharing the spool left, every `spool::RECOVER_EVERY`.
async fn recover_spools(spool: Arc<spool::Spool>, journal: Journal, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(spool::RECOVER_EVERY) => {}
        }
        if let Err(e) = spool.recover(&journal).await {
            tracing::warn!(error = %format!("{e:#}"), "could not recover spooled chat events; retrying");
        }
    }
}

/// The most chat events one append takes. A batch is whatever arrived within 20 ms, so under
/// light load it is small; behind a burst, larger batches spread each append's fixed cost (its
/// round trips, the heads' locks, the commit's WAL flush) over more calls.
const APPEND_BATCH: usize = 2_000;

/// A call's event on its way to the journal: encoded by the call (`Encoded::of`, the text its
/// spool line holds), and where it was spooled.
type Queued = (EventEnvelope, Encoded, spool::Ticket, tokio::time::Instant);

/// Appends queued chat events in batches (up to `APPEND_BATCH`, or whatever arrived within
/// 20 ms), so the responses never wait for the journal; with the queue empty and the spool in
/// backlog mode, the events the spool holds, read back in batches of `APPEND_BATCH` (syncing
/// the spool to disk every `BACKLOG_SYNC` meanwhile). Two batches overlap: while one is being
/// written, the next is gathered, so the database is not idle while the appender gathers;
/// batches still reach the journal one after the other, in order. Each event comes encoded by
/// its call: the appender encodes nothing, so no request worker stalls for a batch's worth of
/// encoding (issue 17: that took the c=4 p99 from 1.3 to 3.1 ms with the journal's writes off).
/// While calls keep coming, a batch waits until they pause (`QUIET`) or its oldest event has
/// waited `AIHUB_JOURNAL_DEFER_MS` ([`yield_to_calls`]).
/// A batch that fails is retried until it is in, never dropped (the queue fills meanwhile, the
/// spool takes the events after it, and new calls get 503 `overloaded` once it holds
/// `AIHUB_SPOOL_BACKLOG`); at shutdown it appends what is queued and the backlog, stops trying
/// on failure, and the spool keeps what is left for the next process.
async fn append_events(mut appender: Appender, mut rx: mpsc::Receiver<Queued>) {
    let mut synced = tokio::time::Instant::now();
    loop {
        // What the queue holds comes first (the events queued before the spool went into
        // backlog mode); then the backlog. The queue cannot fill unseen while this waits on it
        // below: the mode starts only when the queue is full.
        let first = match rx.try_recv() {
            Ok(event) => Some(event),
            // Not in backlog mode (a look under the spool's lock): nothing to read back, so no
            // hop to a blocking thread for every batch of an ordinary day.
            Err(_) if !appender.spool.backlogged() => {
                next_queued(&mut rx, &appender.shutdown).await
            }
            Err(_) => {
                let due = synced.elapsed() >= BACKLOG_SYNC;
                let reader = appender.spool.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let read = reader.read_backlog(APPEND_BATCH);
                    if due && matches!(read, Ok(Some(_))) {
                        if let Err(e) = reader.sync() {
                            tracing::warn!(error = %e, "could not sync the spool's backlog to disk");
                        }
                    }
                    read
                })
                .await;
                match read {
                    Ok(Ok(Some((batch, since)))) => {
                        if due {
                            synced = tokio::time::Instant::now();
                        }
                        let since = tokio::time::Instant::from_std(since);
                        if !batch.is_empty() && !appender.append_in_turn(batch, since).await {
                            return;
                        }
                        continue;
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "could not read the spool's backlog; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the spool's backlog failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
                next_queued(&mut rx, &appender.shutdown).await
            }
        };
        let Some((event, encoded, ticket, since)) = first else {
            break;
        };
        let mut batch = vec![(event, encoded, ticket)];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < APPEND_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((event, encoded, ticket, _))) => batch.push((event, encoded, ticket)),
                _ => break,
            }
        }
        if !appender.append_in_turn(batch, since).await {
            return;
        }
    }
    if let Some(last) = appender.writing {
        let _ = last.await;
    }
}

/// The next event queued for the appender; at shutdown the queue is closed and what it still
/// holds is drained, then `None`.
async fn next_queued(
    rx: &mut mpsc::Receiver<Queued>,
    shutdown: &CancellationToken,
) -> Option<Queued> {
    tokio::select! {
        event = rx.recv() => event,
        _ = shutdown.cancelled() => { rx.close(); rx.recv().await }
    }
}

/// How often the appender syncs the spool's files while it reads a backlog back.
const BACKLOG_SYNC: Duration = Duration::from_secs(1);

/// How long calls must pause before a deferred batch goes to the journal.
const QUIET: Duration = Duration::from_millis(20);

/// Waits while calls keep coming, until they pause for `QUIET` or the batch's oldest event
/// (queued at `since`) has waited `defer`, or the spool is `crowded` (it holds half of
/// `AIHUB_SPOOL_BACKLOG`: a deferral never brings 503 `overloaded` nearer), or the process
/// stops. Why: on a busy host the journal's append, and the relay, broker and projectors it
/// sets going, compete with the calls for the CPU, and a lower priority does not keep them off
/// the calls' tail: a kernel running with `preempt=none` (the bench machine's, and the default
/// of many server kernels) switches a thread out only at its own preemption points or on the
/// way back to user space, and their work is in the kernel as much as out of it (the database's
/// and the broker's writes, the sockets). Deferred, it runs once the burst is over; the calls'
/// events wait in the spool meanwhile (docs/ARCHITECTURE.md, "Bookkeeping yields to calls").
async fn yield_to_calls(
    calls: &InFlight,
    defer: Duration,
    since: tokio::time::Instant,
    crowded: impl Fn() -> bool,
    shutdown: &CancellationToken,
) {
    while !defer.is_zero() && !shutdown.is_cancelled() && !calls.quiet_for(QUIET) && !crowded() {
        let Some(left) = defer.checked_sub(since.elapsed()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(QUIET)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The chat events' appender: where it appends, what it reports to, and the batch it is
/// writing.
struct Appender {
    journal: Journal,
    spool: Arc<spool::Spool>,
    /// The calls under way: while they keep coming, batches wait (`yield_to_calls`).
    calls: Arc<InFlight>,
    /// `AIHUB_JOURNAL_DEFER_MS`: the most a batch's oldest event waits for calls to pause
    /// ([`yield_to_calls`]).
    defer: Duration,
    /// Events pending in the spool from which batches no longer wait: half its bound.
    crowded: u64,
    shutdown: CancellationToken,
    writing: Option<tokio::task::JoinHandle<bool>>,
}

impl Appender {
    /// Starts appending `batch` (its oldest event queued at `since`) once calls pause or it has
    /// waited long enough, and the batch before it is in; false when that one gave up at
    /// shutdown.
    async fn append_in_turn(
        &mut self,
        batch: Vec<spool::Spooled>,
        since: tokio::time::Instant,
    ) -> bool {
        let crowded = || self.spool.pending() >= self.crowded;
        yield_to_calls(&self.calls, self.defer, since, crowded, &self.shutdown).await;
        let mut events = Vec::with_capacity(batch.len());
        let mut encoded = Vec::with_capacity(batch.len());
        let mut tickets = Vec::with_capacity(batch.len());
        for (event, text, ticket) in batch {
            events.push(event);
            encoded.push(text);
            tickets.push(ticket);
        }
        if let Some(previous) = self.writing.take() {
            if !previous.await.unwrap_or(false) {
                return false;
            }
        }
        self.writing = Some(tokio::spawn(append_batch(
            self.journal.clone(),
            events,
            encoded,
            tickets,
            self.spool.clone(),
            self.shutdown.clone(),
        )));
        true
    }
}

/// Appends one batch, retrying until it is in; false when it gave up at shutdown (the spool
/// keeps it).
async fn append_batch(
    journal: Journal,
    events: Vec<EventEnvelope>,
    encoded: Vec<command_api::journal::Encoded>,
    tickets: Vec<spool::Ticket>,
    spool: Arc<spool::Spool>,
    shutdown: CancellationToken,
) -> bool {
    let mut attempt: u32 = 0;
    loop {
        match journal.append_encoded(&events, &encoded).await {
            Ok(()) => {
                spool.appended(&tickets);
                return true;
            }
            // Appended by an earlier attempt whose answer was lost: in, once.
            Err(command_api::journal::JournalError::VersionConflict) if attempt > 0 => {
                spool.appended(&tickets);
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, events = events.len(), "appending chat events failed; retrying (they are spooled)");
                if shutdown.is_cancelled() && attempt >= 2 {
                    return false;
                }
                let backoff = Duration::from_millis(200u64 << attempt.min(5));
                tokio::time::sleep(backoff).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::to_value(routes().into_openapi()).expect("serializes")
    }

    #[test]
    fn every_endpoint_is_documented_with_its_tag_bearer_security_and_error_shape() {
        let doc = document();
        let operations = [
            ("/chat/completions", "post", "chat"),
            ("/chat/stream", "post", "chat"),
            ("/chat/models", "get", "models"),
            ("/models", "get", "models"),
        ];
        assert_eq!(doc["paths"].as_object().map(|p| p.len()), Some(4));
        for (path, method, tag) in operations {
            let operation = &doc["paths"][path][method];
            assert_eq!(operation["tags"], serde_json::json!([tag]), "{path}");
            assert_eq!(
                operation["security"],
                serde_json::json!([{"bearer": []}]),
                "{path}"
            );
            let responses = operation["responses"].as_object().expect("responses");
            assert!(responses.contains_key("200"), "{path}");
            for (status, response) in responses.iter().filter(|(s, _)| *s != "200") {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorResponse",
                    "{path} {status}"
                );
            }
            for status in ["401", "403", "503"] {
                assert!(responses.contains_key(status), "{path} {status}");
            }
        }
        let chat = &doc["paths"]["/chat/completions"]["post"];
        assert_eq!(
            chat["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ChatCompletionRequest"
        );
        let answer = &chat["responses"]["200"]["content"];
        assert_eq!(
            answer["application/json"]["schema"]["$ref"],
            "#/components/schemas/ChatCompletion"
        );
        assert!(answer["text/event-stream"].is_object());
        for status in ["400", "404", "413", "429", "502", "504"] {
            assert!(chat["responses"][status].is_object(), "{status}");
        }
    }

    /// How long (on tokio's paused clock) `yield_to_calls` held a batch queued now.
    async fn held(calls: &InFlight, defer: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        yield_to_calls(calls, defer, started, || false, &CancellationToken::new()).await;
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_while_calls_keep_coming_but_no_longer_than_the_defer() {
        let calls = Arc::new(InFlight::default());
        // A call that never ends: the batch goes when its oldest event has waited 20 s.
        let call = calls.enter();
        let held_for = held(&calls, Duration::from_secs(20)).await;
        assert_eq!(held_for.as_secs(), 20, "{held_for:?}");
        assert_eq!(calls.count(), 1, "the call was still under way");
        // Calls stop after 5 s: the batch goes once they have paused, not at 20 s.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(call);
        });
        let held_for = held(&calls, Duration::from_secs(20)).await;
        assert!(
            held_for >= Duration::from_secs(5) && held_for < Duration::from_secs(6),
            "{held_for:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_call_under_way_or_no_defer_a_batch_goes_at_once() {
        let calls = Arc::new(InFlight::default());
        tokio::time::sleep(QUIET).await;
        assert!(held(&calls, Duration::from_secs(20)).await.is_zero());
        let _call = calls.enter();
        assert!(held(&calls, Duration::ZERO).await.is_zero());
        // Stopping: the batch goes, to be appended before the process ends.
        let stopping = CancellationToken::new();
        stopping.cancel();
        let started = tokio::time::Instant::now();
        yield_to_calls(
            &calls,
            Duration::from_secs(20),
            started,
            || false,
            &stopping,
        )
        .await;
        assert!(started.elapsed().is_zero());
        // The spool holding half its bound: the batch goes, so the deferral never brings a 503.
        let started = tokio::time::Instant::now();
        let never = CancellationToken::new();
        yield_to_calls(&calls, Duration::from_secs(20), started, || true, &never).await;
        assert!(started.elapsed().is_zero());
    }

    #[test]
    fn the_schemas_the_paths_name_are_all_in_the_document() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for name in [
            "ChatCompletionRequest",
            "ChatMessage",
            "ChatCompletion",
            "ChatCompletionChunk",
            "ModelList",
            "ChatModelList",
            "ErrorResponse",
            "ErrorDetail",
        ] {
            assert!(schemas.contains_key(name), "{name} is missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }
}
