//! Compliance reports: a framework's controls relevant to this platform, each passed, failed or
//! not applicable as computed from the organization's events, with the event ids that prove it.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use platform::ApiError;

use crate::{object_name, OrgId, Timestamp};

object_name!(ComplianceReportObject = "compliance.report");

/// The frameworks a report can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComplianceFramework {
    /// SOC 2 (Trust Services Criteria, security).
    Soc2,
    /// GDPR (EU 2016/679).
    Gdpr,
    /// ISO/IEC 27001:2022, Annex A.
    Iso27001,
    /// HIPAA Security Rule (45 CFR 164); Enterprise plan only.
    Hipaa,
}

impl ComplianceFramework {
    pub const ALL: [ComplianceFramework; 4] = [Self::Soc2, Self::Gdpr, Self::Iso27001, Self::Hipaa];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soc2 => "soc2",
            Self::Gdpr => "gdpr",
            Self::Iso27001 => "iso27001",
            Self::Hipaa => "hipaa",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == raw)
    }

    /// How the framework is named in a printed report.
    pub fn title(self) -> &'static str {
        match self {
            Self::Soc2 => "SOC 2",
            Self::Gdpr => "GDPR",
            Self::Iso27001 => "ISO/IEC 27001:2022",
            Self::Hipaa => "HIPAA Security Rule",
        }
    }
}

/// `POST /audit/compliance/generate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GenerateComplianceReport {
    /// The organization (platform admin only; a key acts in its own).
    #[serde(default)]
    pub org_id: Option<OrgId>,
    pub framework: ComplianceFramework,
    /// `2026` (a year), `2026-Q4` (a quarter), `2026-11` (a month), or an interval
    /// `<start>/<end>` of dates (`2026-01-01`) or RFC 3339 instants, end exclusive. It may not
    /// start in the future; one that ends in the future covers the events until the request.
    pub period: String,
}

/// A period, parsed: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

fn bad_period(message: &str) -> ApiError {
    ApiError::invalid_param("period", message.to_string())
}

const PERIOD_HELP: &str = "period must be a year (2026), a quarter (2026-Q4), a month (2026-11) or an interval <start>/<end> of dates or RFC 3339 instants.";

fn midnight(date: NaiveDate) -> Option<DateTime<Utc>> {
    Utc.from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
        .single()
}

fn month_start(year: i32, month: u32) -> Option<DateTime<Utc>> {
    midnight(NaiveDate::from_ymd_opt(year, month, 1)?)
}

fn year_of(raw: &str) -> Option<i32> {
    (raw.len() == 4 && raw.bytes().all(|b| b.is_ascii_digit()))
        .then(|| raw.parse().ok())
        .flatten()
        .filter(|y| (1970..=9998).contains(y))
}

fn instant(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Some(at.with_timezone(&Utc));
    }
    midnight(NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?).filter(|at| at.year() >= 1970)
}

impl Period {
    /// Parses a period and checks it against `now`: 400 naming `period` otherwise.
    pub fn parse(raw: &str, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let raw = raw.trim();
        let period = if let Some((start, end)) = raw.split_once('/') {
            let (Some(from), Some(to)) = (instant(start), instant(end)) else {
                return Err(bad_period(PERIOD_HELP));
            };
            Period { from, to }
        } else if let Some((year, quarter)) = raw.split_once("-Q") {
            let year = year_of(year).ok_or_else(|| bad_period(PERIOD_HELP))?;
            let q: u32 = match quarter {
                "1" | "2" | "3" | "4" => quarter.parse().unwrap_or(1),
                _ => return Err(bad_period(PERIOD_HELP)),
            };
            let from = month_start(year, 3 * q - 2).ok_or_else(|| bad_period(PERIOD_HELP))?;
            let to = if q == 4 {
                month_start(year + 1, 1)
            } else {
                month_start(year, 3 * q + 1)
            }
            .ok_or_else(|| bad_period(PERIOD_HELP))?;
            Period { from, to }
        } else if let Some((year, month)) = raw.split_once('-') {
            let year = year_of(year).ok_or_else(|| bad_period(PERIOD_HELP))?;
            let month: u32 = (month.len() == 2)
                .then(|| month.parse().ok())
                .flatten()
                .filter(|m| (1..=12).contains(m))
                .ok_or_else(|| bad_period(PERIOD_HELP))?;
            let from = month_start(year, month).ok_or_else(|| bad_period(PERIOD_HELP))?;
            let to = if month == 12 {
                month_start(year + 1, 1)
            } else {
                month_start(year, month + 1)
            }
            .ok_or_else(|| bad_period(PERIOD_HELP))?;
            Period { from, to }
        } else {
            let year = year_of(raw).ok_or_else(|| bad_period(PERIOD_HELP))?;
            Period {
                from: month_start(year, 1).ok_or_else(|| bad_period(PERIOD_HELP))?,
                to: month_start(year + 1, 1).ok_or_else(|| bad_period(PERIOD_HELP))?,
            }
        };
        if period.from >= period.to {
            return Err(bad_period("period must end after it starts."));
        }
        if period.to - period.from > chrono::Duration::days(3700) {
            return Err(bad_period("period may cover at most ten years."));
        }
        if period.from > now {
            return Err(bad_period(
                "period starts in the future: there is nothing to report yet.",
            ));
        }
        Ok(period)
    }
}

/// Whether a report is computed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComplianceReportStatus {
    /// Asked for; being computed.
    Pending,
    /// Computed: `report` and `content_hash` are set.
    Ready,
    /// Could not be computed (`error` says why); ask again.
    Failed,
}

/// A control's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlResult {
    Pass,
    Fail,
    NotApplicable,
}

impl ControlResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::NotApplicable => "not_applicable",
        }
    }
}

/// One thing a control found: a key, a user, a burst of failures, an alert, a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceFinding {
    /// What it is about: `api_key:<id>`, `user:<id>`, `alert:<id>`, `auth_failures`, …
    pub subject: String,
    pub detail: String,
    /// The events that show it (ids of `/audit/logs`), at most 20.
    pub evidence: Vec<Uuid>,
}

/// One control of the framework, as it applies to this platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceControl {
    /// The platform's check: `access_review`, `key_expiry`, `stale_keys`, `departed_user_keys`,
    /// `failed_auth_bursts`, `alert_acknowledgement`, `audit_chain`, `data_subject_requests`.
    pub id: String,
    /// The framework's own reference (`CC6.1`, `Art. 32`, `A.5.17`, `§164.312(b)`).
    pub reference: String,
    pub title: String,
    /// What is checked, and how the result is decided.
    pub description: String,
    pub result: ControlResult,
    /// Why this result.
    pub reason: String,
    /// At most 100; `findings_total` counts them all.
    pub findings: Vec<ComplianceFinding>,
    pub findings_total: u64,
    /// Every event the result rests on (ids of `/audit/logs`), at most 200; `evidence_total`
    /// counts them all.
    pub evidence: Vec<Uuid>,
    pub evidence_total: u64,
}

/// Counts of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ComplianceSummary {
    pub pass: u32,
    pub fail: u32,
    pub not_applicable: u32,
}

/// The period a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompliancePeriod {
    /// As asked.
    pub label: String,
    pub from: Timestamp,
    /// Exclusive.
    pub to: Timestamp,
}

/// The report itself: what its `content_hash` is the SHA-256 of (canonical JSON: keys sorted,
/// no whitespace), and what `compliance.report_generated` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceReportContent {
    pub report_id: Uuid,
    pub org_id: OrgId,
    pub framework: ComplianceFramework,
    pub period: CompliancePeriod,
    /// When it was asked for: the state of keys and roles is judged at this instant.
    pub as_of: Timestamp,
    /// The organization's chain was read up to this seq (the event before the request).
    pub through_seq: i64,
    /// How many events of the chain were read.
    pub events_read: u64,
    pub summary: ComplianceSummary,
    pub controls: Vec<ComplianceControl>,
}

/// A compliance report and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceReport {
    pub id: Uuid,
    pub object: ComplianceReportObject,
    pub org_id: OrgId,
    pub framework: ComplianceFramework,
    /// As asked.
    pub period: String,
    pub status: ComplianceReportStatus,
    /// The `compliance.report_requested` event.
    pub requested_at: Timestamp,
    /// The `compliance.report_generated` (or `_failed`) event, once there.
    pub completed_at: Option<Timestamp>,
    /// Hex SHA-256 of `report`'s canonical JSON, as `compliance.report_generated` records it.
    pub content_hash: Option<String>,
    /// The id of the `compliance.report_generated` event (in `/audit/logs`).
    pub event_id: Option<Uuid>,
    pub summary: Option<ComplianceSummary>,
    /// The report; in `GET /audit/compliance/{id}` only (lists leave it out).
    pub report: Option<ComplianceReportContent>,
    /// Why it failed.
    pub error: Option<String>,
}

/// `GET /audit/compliance`: newest first, in pages.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ComplianceListQuery {
    /// Items per page, 1 to 1000 (default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// The organization (platform admin only; a key acts in its own).
    pub org_id: Option<String>,
}

/// `GET /audit/compliance/{id}`: JSON (default) or printable HTML.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ComplianceReportQuery {
    /// `json` (default) or `html`; `Accept: text/html` asks for HTML as well.
    pub format: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn periods_parse_as_years_quarters_months_and_intervals() {
        let now = at("2026-11-27T12:00:00Z");
        let p = |raw: &str| Period::parse(raw, now).ok();
        assert_eq!(
            p("2026"),
            Some(Period {
                from: at("2026-01-01T00:00:00Z"),
                to: at("2027-01-01T00:00:00Z")
            })
        );
        assert_eq!(
            p("2026-Q4"),
            Some(Period {
                from: at("2026-10-01T00:00:00Z"),
                to: at("2027-01-01T00:00:00Z")
            })
        );
        assert_eq!(
            p("2026-Q2"),
            Some(Period {
                from: at("2026-04-01T00:00:00Z"),
                to: at("2026-07-01T00:00:00Z")
            })
        );
        assert_eq!(
            p("2026-02"),
            Some(Period {
                from: at("2026-02-01T00:00:00Z"),
                to: at("2026-03-01T00:00:00Z")
            })
        );
        assert_eq!(
            p("2026-11-01/2026-11-27T10:00:00+01:00"),
            Some(Period {
                from: at("2026-11-01T00:00:00Z"),
                to: at("2026-11-27T09:00:00Z")
            })
        );
        for bad in [
            "",
            "soon",
            "2026-13",
            "2026-Q5",
            "26",
            "2026-1",
            "2026-11-30/2026-11-01",
            "2027",
            "2026-12-01/2027-01-01",
            "x/y",
            "1900",
            "2026-Q",
            "0000-01",
        ] {
            assert!(Period::parse(bad, now).is_err(), "{bad:?} was accepted");
        }
    }
}
