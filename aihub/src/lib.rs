//! The AI Hub process: every role (command API with its relay, read API, projectors) can run
//! together in one process — the default — or alone, to scale each independently.

pub mod app;
pub mod backup;
pub mod cli;
pub mod docs;
pub mod health;
pub mod models;
pub mod monitors;
pub mod openapi;
pub mod telemetry;

pub use app::{start, Roles, Running};
