//! Custom metrics and synthetic health checks (issue 11): `POST /monitoring/metrics`,
//! `DELETE /monitoring/metrics/{id}`, `POST /monitoring/metrics/{id}/data`,
//! `POST /monitoring/health/checks`, `DELETE /monitoring/health/checks/{id}`. Their read models
//! belong to the metrics projection, so each write waits for it.

pub mod aggregate;
pub mod checks;
pub mod metrics;

use platform::access::Permission;
use platform::{ApiError, Principal};

/// The projection whose read models serve the resources written here.
pub const METRICS: &str = "metrics";

/// Writing custom metrics and checks takes `monitoring:write` and Pro's or Enterprise's
/// advanced monitoring.
pub fn require_write(principal: &Principal, what: &str) -> Result<(), ApiError> {
    principal.require(Permission::MonitoringWrite)?;
    platform::plans::require_feature(principal, "advanced_monitoring", what)
}
