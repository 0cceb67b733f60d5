//! Compliance reports (issue 12): asking for one, and the report itself. A report is computed
//! from the organization's events (its audit chain, up to the request) and travels whole in
//! `compliance.report_generated`, with the SHA-256 of its canonical JSON, so the chain holds both
//! the claim and the hash that pins it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `compliance.report_requested` (stream `compliance_report:<id>`, version 1): someone asked for
/// a report of `framework` over `[from, to)`. The events it is computed from are those of the
/// organization's chain before this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComplianceReportRequested {
    pub report_id: Uuid,
    /// `soc2`, `gdpr`, `iso27001` or `hipaa`.
    pub framework: String,
    /// The period as asked (`2026-Q4`, `2026-11`, `2026`, or `<start>/<end>`).
    pub period: String,
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive.
    pub to: String,
}

/// `compliance.report_generated` (version 2 of the report's stream): the report, whole, and the
/// hex SHA-256 of its canonical JSON (`events::audit::canonical`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComplianceReportGenerated {
    pub report_id: Uuid,
    pub content_hash: String,
    /// The report: controls, results and evidence (event ids of the same chain).
    pub report: serde_json::Value,
}

/// `compliance.report_failed` (version 2 of the report's stream): the report could not be
/// computed; asking again makes a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComplianceReportFailed {
    pub report_id: Uuid,
    pub reason: String,
}
