//! The query side of AI Hub: every `GET`, answered from the read models in schema `read`.
//! Nothing here touches the journal or Kafka, but the audit chain's verification and the
//! audit state at an instant (`routes::audit`), which must not trust a read model.

pub mod custom_metrics;
pub mod monitoring;
pub mod routes;

use axum::Router;
use platform::db::PgPool;
use utoipa_axum::router::OpenApiRouter;

#[derive(Clone)]
pub struct ReadState {
    pub pool: PgPool,
    pub clock: platform::clock::Clock,
    /// Usage exports stream from a pool of their own, one at a time per organization, so slow
    /// readers never hold the connections authentication and every other query need.
    pub exports: routes::usage::Exports,
    /// What the audit routes that read the topic need.
    pub audit: AuditSources,
}

/// Verification and past state are rebuilt from the topic (and compared with the journal), not
/// read from a read model: the two queries of the read side that read more than read models.
#[derive(Clone)]
pub struct AuditSources {
    pub kafka: events::kafka::KafkaConnection,
    pub topic: String,
    /// The public half of the checkpoint key, when one is configured.
    pub public_key: Option<ed25519_dalek::VerifyingKey>,
}

/// Every query route, under `/api/v1`.
pub fn routes(state: ReadState) -> Router {
    router().split_for_parts().0.with_state(state)
}

/// Every query route with its OpenAPI operation.
pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .merge(routes::organizations::router())
        .merge(routes::users::router())
        .merge(routes::teams::router())
        .merge(routes::api_keys::router())
        .merge(routes::access::router())
        .merge(routes::billing::router())
        .merge(routes::invoices::router())
        .merge(routes::usage::router())
        .merge(routes::limits::router())
        .merge(routes::audit::router())
        .merge(routes::audit_exports::router())
        .merge(routes::compliance::router())
        .merge(routes::sso::router())
        .merge(routes::monitoring::router())
        .merge(routes::alerts::router())
}
