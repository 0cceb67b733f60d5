//! Subscriptions to the plans of `platform::plans`. An organization has exactly one
//! subscription, whose id is the organization's id. Closing a month issues its invoices.

pub mod aggregate;
pub mod close;
pub mod invoice;
pub mod routes;
pub mod webhook;
