pub mod audit;
pub mod tenancy;
pub mod usage;
