//! The write side of AI Hub. Handlers are thin: parse → authorize → load → decide → append →
//! wait → respond. Aggregates are pure `decide`/`apply` functions; the journal is the outbox the
//! relay publishes to Kafka.

pub mod api_keys;
pub mod auth_failures;
pub mod billing;
pub mod catalog;
pub mod command;
pub mod commit;
pub mod consistency;
pub mod journal;
pub mod organizations;
pub mod relay;
pub mod teams;
pub mod users;

use std::sync::Arc;

use axum::Router;
use platform::db::PgPool;

pub use consistency::Consistency;
pub use journal::Journal;

/// What every command handler needs.
#[derive(Clone)]
pub struct CommandState {
    pub journal: Journal,
    pub consistency: Arc<Consistency>,
    pub consistency_timeout: std::time::Duration,
    pub clock: platform::clock::Clock,
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
        }
    }
}

/// Every write route, under `/api/v1`.
pub fn routes(state: CommandState) -> Router {
    Router::new()
        .merge(organizations::routes::router())
        .merge(users::routes::router())
        .merge(teams::routes::router())
        .merge(api_keys::routes::router())
        .merge(billing::routes::router())
        .with_state(state)
}
