pub mod audit;
pub mod invoices;
pub mod tenancy;
pub mod usage;
