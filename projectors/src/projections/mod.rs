pub mod audit;
pub mod tenancy;
