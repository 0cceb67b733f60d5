pub mod audit;
pub mod catalog;
pub mod tenancy;
pub mod usage;
