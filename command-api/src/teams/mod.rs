//! Teams inside an organization and their members.

pub mod aggregate;
pub mod routes;
