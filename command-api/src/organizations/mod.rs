//! The organization aggregate: the tenant root.

pub mod aggregate;
pub mod routes;

pub use aggregate::{Command, DomainError, Organization};
