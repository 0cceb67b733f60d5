pub mod access;
pub mod api_keys;
pub mod billing;
pub mod organizations;
pub mod scope;
pub mod teams;
pub mod usage;
pub mod users;
