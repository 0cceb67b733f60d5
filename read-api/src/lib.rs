//! The query side of AI Hub: every `GET`, answered from the read models in schema `read`.
//! Nothing here touches the journal or Kafka.

pub mod routes;

use axum::Router;
use platform::db::PgPool;

#[derive(Clone)]
pub struct ReadState {
    pub pool: PgPool,
    pub clock: platform::clock::Clock,
}

/// Every query route, under `/api/v1`.
pub fn routes(state: ReadState) -> Router {
    Router::new()
        .merge(routes::organizations::router())
        .merge(routes::users::router())
        .merge(routes::teams::router())
        .merge(routes::api_keys::router())
        .merge(routes::access::router())
        .merge(routes::billing::router())
        .merge(routes::invoices::router())
        .merge(routes::usage::router())
        .with_state(state)
}
