//! The write side of AI Hub. Handlers are thin: parse → authorize → load → decide → append →
//! wait → respond. Aggregates are pure `decide`/`apply` functions; the journal is the outbox the
//! relay publishes to Kafka.

pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod auth_failures;
pub mod billing;
pub mod catalog;
pub mod command;
pub mod commit;
pub mod compliance;
pub mod consistency;
pub mod gdpr;
pub mod journal;
pub mod limits;
pub mod monitoring;
pub mod organizations;
pub mod relay;
pub mod sso;
pub mod teams;
pub mod users;

use std::sync::Arc;

use axum::Router;
use platform::db::PgPool;
use utoipa_axum::router::OpenApiRouter;

pub use consistency::Consistency;
pub use journal::Journal;

/// What every command handler needs.
#[derive(Clone)]
pub struct CommandState {
    pub journal: Journal,
    pub consistency: Arc<Consistency>,
    pub consistency_timeout: std::time::Duration,
    pub clock: platform::clock::Clock,
    /// `AIHUB_PAYMENT_WEBHOOK_SECRET`: signs payment providers' notices; none, no webhook.
    pub payment_webhook_secret: Option<std::sync::Arc<str>>,
    /// `AIHUB_SSO_ALLOW_LOOPBACK_HTTP`: single sign-on issuers may be `http://` on loopback.
    pub sso_allow_loopback_http: bool,
    /// The audit checkpoints' Ed25519 public key (hex), which compliance reports verify with.
    pub audit_public_key: Option<String>,
}

impl CommandState {
    pub fn new(
        pool: PgPool,
        consistency: Arc<Consistency>,
        consistency_timeout: std::time::Duration,
        clock: platform::clock::Clock,
    ) -> Self {
        Self {
            journal: Journal::new(pool),
            consistency,
            consistency_timeout,
            clock,
            payment_webhook_secret: None,
            sso_allow_loopback_http: false,
            audit_public_key: None,
        }
    }

    /// Accepts `http://` single sign-on issuers on loopback addresses (tests).
    pub fn with_sso_loopback_http(mut self, allow: bool) -> Self {
        self.sso_allow_loopback_http = allow;
        self
    }

    /// Verifies audit checkpoints with this key (hex) in compliance reports.
    pub fn with_audit_public_key(mut self, key: Option<String>) -> Self {
        self.audit_public_key = key;
        self
    }

    /// Accepts payment providers' notices signed with `secret`.
    pub fn with_payment_webhook_secret(mut self, secret: Option<String>) -> Self {
        self.payment_webhook_secret = secret.map(Into::into);
        self
    }
}

/// Every write route, under `/api/v1`.
pub fn routes(state: CommandState) -> Router {
    router().split_for_parts().0.with_state(state)
}

/// Every write route with its OpenAPI operation.
pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .merge(organizations::routes::router())
        .merge(users::routes::router())
        .merge(teams::routes::router())
        .merge(api_keys::routes::router())
        .merge(billing::routes::router())
        .merge(audit::routes::router())
        .merge(compliance::router())
        .merge(gdpr::router())
        .merge(sso::routes::router())
        .merge(alerts::routes::router())
        .merge(monitoring::metrics::router())
        .merge(monitoring::checks::router())
}

/// The `{id}` of a resource path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdParam {
    /// The resource's id (a UUID); anything else is 404.
    id: uuid::Uuid,
}

/// `If-Match`: the version (`ETag`) the client read; the write is refused with 409 if the
/// resource changed since.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IfMatch {
    #[param(rename = "If-Match")]
    if_match: Option<String>,
}
