//! Alerting: alert rules over the organization's metrics, the alerts they raise, and where
//! those are sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, Timestamp};

pub use events::alerting::{AlertCondition, AlertSeverity, NotificationChannel};

object_name!(AlertRuleObject = "alert_rule");
object_name!(AlertObject = "alert");

/// A rule the evaluator checks periodically (Pro and Enterprise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRule {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    pub object: AlertRuleObject,
    pub org_id: OrgId,
    pub name: String,
    /// A metric id `GET /monitoring/metrics` lists.
    pub metric: String,
    /// Dimension (`model`, `provider`, `api_key`, `team`, `user`) → value: only calls matching
    /// all of them count.
    pub filter: BTreeMap<String, String>,
    pub condition: AlertCondition,
    pub threshold: f64,
    /// The metric is computed over the last `window_seconds`, in whole minutes, the current
    /// minute included.
    pub window_seconds: u32,
    /// How long the condition must hold before the alert fires, and be clear before it resolves.
    pub for_seconds: u32,
    pub severity: AlertSeverity,
    pub channels: Vec<NotificationChannel>,
    /// The last characters of the webhook signing secret.
    pub secret_hint: String,
    /// The whole signing secret: only in the answer to `POST /monitoring/alert-rules`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    pub version: i64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// `POST /monitoring/alert-rules`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateAlertRule {
    pub name: String,
    pub metric: String,
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    pub condition: AlertCondition,
    /// Compared with the metric's value (not used by `no_data`, default 0).
    #[serde(default)]
    pub threshold: f64,
    pub window_seconds: u32,
    /// Default 0: fires at the first evaluation that sees the condition.
    #[serde(default)]
    pub for_seconds: u32,
    /// Default `warning`.
    #[serde(default)]
    pub severity: Option<AlertSeverity>,
    #[serde(default)]
    pub channels: Vec<NotificationChannel>,
    /// Platform admin only.
    #[serde(default)]
    pub org_id: Option<OrgId>,
}

/// `PUT /monitoring/alert-rules/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateAlertRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub filter: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub condition: Option<AlertCondition>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub window_seconds: Option<u32>,
    #[serde(default)]
    pub for_seconds: Option<u32>,
    #[serde(default)]
    pub severity: Option<AlertSeverity>,
    #[serde(default)]
    pub channels: Option<Vec<NotificationChannel>>,
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Firing, Self::Acknowledged, Self::Resolved]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// Who caused an event of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryActor {
    /// `api_key`, `user`, `platform_admin` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// One event of an alert's life: triggered, acknowledged, resolved, or a notification's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertHistoryEntry {
    #[schema(value_type = String, format = Uuid)]
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub actor: HistoryActor,
    pub correlation_id: String,
    /// The event's `data`, as its JSON schema under `schemas/events` says.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// An alert raised by a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    pub object: AlertObject,
    pub org_id: OrgId,
    #[schema(value_type = String, format = Uuid)]
    pub rule_id: uuid::Uuid,
    pub rule_name: String,
    pub status: AlertStatus,
    pub severity: AlertSeverity,
    pub metric: String,
    pub filter: BTreeMap<String, String>,
    pub condition: AlertCondition,
    pub threshold: f64,
    /// The value that breached (none for `no_data`).
    pub value: Option<f64>,
    pub breached_since: Timestamp,
    pub triggered_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub acknowledged_by: Option<HistoryActor>,
    pub note: Option<String>,
    pub resolved_at: Option<Timestamp>,
    pub resolved_value: Option<f64>,
    pub version: i64,
    /// Every event of the alert, oldest first: only in `GET /monitoring/alerts/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<AlertHistoryEntry>>,
}

/// `PUT /monitoring/alerts/{id}/acknowledge`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AcknowledgeAlert {
    /// Up to 2,000 characters.
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /monitoring/alerts`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `firing`, `acknowledged` or `resolved`; all when absent.
    pub status: Option<String>,
    /// Platform admin only.
    pub org_id: Option<String>,
    /// Items per page, 1 to 1000 (default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}
