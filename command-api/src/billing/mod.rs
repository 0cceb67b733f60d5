//! Subscriptions to the plans of `platform::plans`. An organization has exactly one
//! subscription, whose id is the organization's id.

pub mod aggregate;
pub mod routes;
