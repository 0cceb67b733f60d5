//! Alerting: an organization's alert rules over its metrics, the alerts the evaluator raises
//! from them, and the notifications each alert sends. No secret enters an event: a webhook's
//! signing secret is kept beside the journal (`alert_rule_secrets`), only its last characters
//! are named here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::Timestamp;

/// How a rule compares the metric's value with its threshold.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
pub enum AlertCondition {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
    /// No call counted in the window (the threshold is not used).
    #[serde(rename = "no_data")]
    NoData,
}

impl AlertCondition {
    /// Whether `value` (none: no data in the window) breaches the condition.
    pub fn breached(self, value: Option<f64>, threshold: f64) -> bool {
        match (self, value) {
            (AlertCondition::NoData, v) => v.is_none(),
            (_, None) => false,
            (AlertCondition::Above, Some(v)) => v > threshold,
            (AlertCondition::AtLeast, Some(v)) => v >= threshold,
            (AlertCondition::Below, Some(v)) => v < threshold,
            (AlertCondition::AtMost, Some(v)) => v <= threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertCondition::Above => ">",
            AlertCondition::AtLeast => ">=",
            AlertCondition::Below => "<",
            AlertCondition::AtMost => "<=",
            AlertCondition::NoData => "no_data",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Info,
    Warning,
    Critical,
}

impl AlertSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

/// Where an alert is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotificationChannel {
    /// A JSON `POST` signed with the rule's secret (HMAC-SHA256 over timestamp and body).
    Webhook { url: String },
    /// A Slack-compatible incoming webhook: `POST {"text": ...}`.
    Slack { url: String },
    /// An email to each address, over the platform's SMTP server.
    Email { to: Vec<String> },
}

impl NotificationChannel {
    pub fn kind(&self) -> &'static str {
        match self {
            NotificationChannel::Webhook { .. } => "webhook",
            NotificationChannel::Slack { .. } => "slack",
            NotificationChannel::Email { .. } => "email",
        }
    }
}

/// `alert_rule.created` and `alert_rule.updated`: the whole rule as it now stands (stream
/// `alert_rule:<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRuleDefined {
    pub name: String,
    /// A metric id `GET /monitoring/metrics` lists (`chat.error_rate`).
    pub metric: String,
    /// Dimension → value: only calls matching all of them count (`{"model": "gpt-4o"}`).
    pub filter: std::collections::BTreeMap<String, String>,
    pub condition: AlertCondition,
    pub threshold: f64,
    /// The metric is computed over the last `window_seconds` (whole minutes, the current one
    /// included).
    pub window_seconds: u32,
    /// How long the condition must hold before the alert fires, and be clear before it resolves.
    pub for_seconds: u32,
    pub severity: AlertSeverity,
    pub channels: Vec<NotificationChannel>,
    /// The last characters of the webhook signing secret, to recognise it.
    pub secret_hint: String,
}

/// `alert_rule.deleted`: the rule is no longer evaluated; an open alert of it resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct AlertRuleDeleted {}

/// `alert.triggered` (stream `alert:<id>`, actor the system): the rule's condition held for its
/// `for` duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertTriggered {
    pub rule_id: uuid::Uuid,
    pub rule_name: String,
    pub metric: String,
    pub filter: std::collections::BTreeMap<String, String>,
    pub condition: AlertCondition,
    pub threshold: f64,
    pub window_seconds: u32,
    pub for_seconds: u32,
    pub severity: AlertSeverity,
    /// The value that breached (none for `no_data`).
    pub value: Option<f64>,
    /// When the condition was first seen to hold.
    pub breached_since: Timestamp,
    /// Where the alert's notifications go: the rule's channels when it fired.
    pub channels: Vec<NotificationChannel>,
}

/// `alert.acknowledged`: someone took it on; the actor says who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct AlertAcknowledged {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `alert.resolved` (actor the system): the condition has been clear for the rule's `for`
/// duration, or the rule was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertResolved {
    pub rule_id: uuid::Uuid,
    /// The value when it resolved (none: no data).
    pub value: Option<f64>,
    /// `recovered` or `rule_deleted`.
    pub reason: String,
    pub channels: Vec<NotificationChannel>,
}

/// `notification.delivered` (stream `notification:<id>`, one per alert event and channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationDelivered {
    pub alert_id: uuid::Uuid,
    /// The `alert.triggered` or `alert.resolved` event notified.
    pub alert_event_id: uuid::Uuid,
    /// `webhook`, `slack` or `email`.
    pub channel: String,
    /// The channel's index in the rule's channels.
    pub channel_index: u32,
    /// Attempts it took, this one included.
    pub attempts: u32,
}

/// `notification.failed`: one attempt failed; `next_attempt_at` says when the next is due, none
/// when it was the last (refused or out of attempts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationFailed {
    pub alert_id: uuid::Uuid,
    pub alert_event_id: uuid::Uuid,
    pub channel: String,
    pub channel_index: u32,
    pub attempts: u32,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_compare_and_no_data_only_fires_on_nothing() {
        assert!(AlertCondition::Above.breached(Some(0.6), 0.5));
        assert!(!AlertCondition::Above.breached(Some(0.5), 0.5));
        assert!(AlertCondition::AtLeast.breached(Some(0.5), 0.5));
        assert!(AlertCondition::Below.breached(Some(1.0), 2.0));
        assert!(!AlertCondition::AtMost.breached(Some(2.5), 2.0));
        assert!(
            !AlertCondition::Above.breached(None, 0.0),
            "no data is not above"
        );
        assert!(AlertCondition::NoData.breached(None, 0.0));
        assert!(!AlertCondition::NoData.breached(Some(0.0), 0.0));
        let json = serde_json::to_value(AlertCondition::AtMost).expect("json");
        assert_eq!(json, ">=".replace('>', "<"));
    }
}
