pub mod audit;
pub mod catalog;
pub mod invoices;
pub mod tenancy;
pub mod usage;
