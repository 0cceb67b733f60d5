pub mod alerting;
pub mod audit;
pub mod catalog;
pub mod custom_metrics;
pub mod invoices;
pub mod metrics;
pub mod tenancy;
pub mod usage;
