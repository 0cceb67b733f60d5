//! API keys: `aihub-sk-<public id>-<secret>`, shown once; only the secret's hash is kept.

pub mod aggregate;
pub mod routes;
