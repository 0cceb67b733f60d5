//! The runtime every role of AI Hub shares: configuration, the Postgres pool and migrations,
//! authentication of a bearer token to a principal, the OpenAI-shaped error type, request ids,
//! pagination and the Prometheus registry.

pub mod access;
pub mod auth;
pub mod background;
pub mod clock;
pub mod config;
pub mod db;
pub mod detached;
pub mod error;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod on_behalf;
pub mod pagination;
pub mod personal;
pub mod plans;
pub mod ratelimit;
pub mod sketch;
pub mod sso;

pub use auth::Principal;
pub use config::Config;
pub use error::{ApiError, ErrorResponse};
