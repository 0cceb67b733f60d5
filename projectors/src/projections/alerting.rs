//! Alerting read models: alert rules, alerts and each alert's history; and the notifications
//! outbox, one row per alert event and channel, which the notifier works off. The outbox is not
//! among the tables a rebuild empties: its inserts do nothing for a row that exists, so a replay
//! never notifies twice.

use events::{EventEnvelope, EventPayload, StreamKind};
use uuid::Uuid;

use crate::{Projection, Sql};

pub struct Alerting;

const UPSERT_RULE: &str = "INSERT INTO read.alert_rules (id, org_id, name, metric, filter, condition, threshold,
        window_seconds, for_seconds, severity, channels, secret_hint, version, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
     ON CONFLICT (id) DO UPDATE SET name = $3, metric = $4, filter = $5, condition = $6, threshold = $7,
        window_seconds = $8, for_seconds = $9, severity = $10, channels = $11, secret_hint = $12,
        version = $13, updated_at = $14
     WHERE read.alert_rules.version < $13";

const HISTORY: &str =
    "INSERT INTO read.alert_history (event_id, alert_id, org_id, event_type, occurred_at, actor,
        correlation_id, data)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING";

const OUTBOX: &str = "INSERT INTO alert_notifications (id, org_id, alert_id, alert_event_id, event_type, channel_index,
        channel, data, occurred_at, next_attempt_at, correlation_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
     ON CONFLICT (alert_event_id, channel_index) DO NOTHING";

/// The id of the notification of `alert_event` to its `index`th channel: the same on a replay.
pub fn notification_id(alert_event: Uuid, index: u32) -> Uuid {
    Uuid::new_v5(&alert_event, &index.to_be_bytes())
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

fn history(event: &EventEnvelope, alert_id: Uuid, org_id: Uuid) -> Sql {
    let data = json(&event.payload)
        .get("data")
        .cloned()
        .unwrap_or_default();
    Sql::new(
        HISTORY,
        vec![
            Box::new(event.event_id),
            Box::new(alert_id),
            Box::new(org_id),
            Box::new(event.event_type()),
            Box::new(*event.occurred_at),
            Box::new(json(&event.actor)),
            Box::new(event.correlation_id.clone()),
            Box::new(data),
        ],
    )
}

fn outbox(
    event: &EventEnvelope,
    alert_id: Uuid,
    org_id: Uuid,
    channels: &[events::alerting::NotificationChannel],
) -> Vec<Sql> {
    let data = json(&event.payload)
        .get("data")
        .cloned()
        .unwrap_or_default();
    channels
        .iter()
        .enumerate()
        .map(|(i, channel)| {
            let index = i as u32;
            Sql::new(
                OUTBOX,
                vec![
                    Box::new(notification_id(event.event_id, index)),
                    Box::new(org_id),
                    Box::new(alert_id),
                    Box::new(event.event_id),
                    Box::new(event.event_type()),
                    Box::new(index as i32),
                    Box::new(json(channel)),
                    Box::new(data.clone()),
                    Box::new(*event.occurred_at),
                    Box::new(event.correlation_id.clone()),
                ],
            )
        })
        .collect()
}

impl Projection for Alerting {
    fn name(&self) -> &'static str {
        "alerting"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read.alert_rules", "read.alerts", "read.alert_history"]
    }

    /// Rules (`alert_rule.*`), alerts (`alert.*`) and their notifications (`notification.*`).
    fn handles(&self, event_type: &str) -> bool {
        event_type.starts_with("alert_rule.")
            || event_type.starts_with("alert.")
            || event_type.starts_with("notification.")
    }

    fn statements(&self, event: &EventEnvelope) -> Vec<Sql> {
        let Some(org_id) = event.org_id else {
            return vec![];
        };
        let at = *event.occurred_at;
        let version = event.stream_version;
        let rule_id = event.stream_id.uuid_of(StreamKind::AlertRule);
        let alert_id = event.stream_id.uuid_of(StreamKind::Alert);
        match (&event.payload, rule_id, alert_id) {
            (
                EventPayload::AlertRuleCreated(rule) | EventPayload::AlertRuleUpdated(rule),
                Some(id),
                _,
            ) => vec![Sql::new(
                UPSERT_RULE,
                vec![
                    Box::new(id),
                    Box::new(org_id),
                    Box::new(rule.name.clone()),
                    Box::new(rule.metric.clone()),
                    Box::new(json(&rule.filter)),
                    Box::new(rule.condition.as_str()),
                    Box::new(rule.threshold),
                    Box::new(rule.window_seconds as i32),
                    Box::new(rule.for_seconds as i32),
                    Box::new(rule.severity.as_str()),
                    Box::new(json(&rule.channels)),
                    Box::new(rule.secret_hint.clone()),
                    Box::new(version),
                    Box::new(at),
                ],
            )],
            (EventPayload::AlertRuleDeleted(_), Some(id), _) => vec![Sql::new(
                "UPDATE read.alert_rules SET deleted = true, version = $2, updated_at = $3
                 WHERE id = $1 AND version < $2",
                vec![Box::new(id), Box::new(version), Box::new(at)],
            )],
            (EventPayload::AlertTriggered(e), _, Some(id)) => {
                let mut sql = vec![Sql::new(
                    "INSERT INTO read.alerts (id, org_id, rule_id, rule_name, metric, filter, condition, threshold,
                        window_seconds, for_seconds, severity, status, value, breached_since, triggered_at, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'firing', $12, $13, $14, $15)
                     ON CONFLICT (id) DO NOTHING",
                    vec![
                        Box::new(id),
                        Box::new(org_id),
                        Box::new(e.rule_id),
                        Box::new(e.rule_name.clone()),
                        Box::new(e.metric.clone()),
                        Box::new(json(&e.filter)),
                        Box::new(e.condition.as_str()),
                        Box::new(e.threshold),
                        Box::new(e.window_seconds as i32),
                        Box::new(e.for_seconds as i32),
                        Box::new(e.severity.as_str()),
                        Box::new(e.value),
                        Box::new(*e.breached_since),
                        Box::new(at),
                        Box::new(version),
                    ],
                )];
                sql.push(history(event, id, org_id));
                sql.extend(outbox(event, id, org_id, &e.channels));
                sql
            }
            (EventPayload::AlertAcknowledged(e), _, Some(id)) => vec![
                Sql::new(
                    "UPDATE read.alerts SET status = CASE WHEN status = 'firing' THEN 'acknowledged' ELSE status END,
                        acknowledged_at = $2, acknowledged_by = $3, note = $4, version = $5
                     WHERE id = $1 AND version < $5",
                    vec![
                        Box::new(id),
                        Box::new(at),
                        Box::new(json(&event.actor)),
                        Box::new(e.note.clone()),
                        Box::new(version),
                    ],
                ),
                history(event, id, org_id),
            ],
            (EventPayload::AlertResolved(e), _, Some(id)) => {
                let mut sql = vec![
                    Sql::new(
                        "UPDATE read.alerts SET status = 'resolved', resolved_at = $2, resolved_value = $3,
                            resolved_reason = $4, version = $5
                         WHERE id = $1 AND version < $5",
                        vec![
                            Box::new(id),
                            Box::new(at),
                            Box::new(e.value),
                            Box::new(e.reason.clone()),
                            Box::new(version),
                        ],
                    ),
                    history(event, id, org_id),
                ];
                sql.extend(outbox(event, id, org_id, &e.channels));
                sql
            }
            (EventPayload::NotificationDelivered(e), _, _) => {
                vec![history(event, e.alert_id, org_id)]
            }
            (EventPayload::NotificationFailed(e), _, _) => vec![history(event, e.alert_id, org_id)],
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::alerting::*;
    use events::{Actor, StreamId, Timestamp};

    fn triggered(channels: usize) -> EventEnvelope {
        EventEnvelope::new(
            EventPayload::AlertTriggered(AlertTriggered {
                rule_id: Uuid::now_v7(),
                rule_name: "errors".into(),
                metric: "chat.error_rate".into(),
                filter: Default::default(),
                condition: AlertCondition::Above,
                threshold: 0.5,
                window_seconds: 60,
                for_seconds: 0,
                severity: AlertSeverity::Critical,
                value: Some(1.0),
                breached_since: Timestamp::now(),
                channels: (0..channels)
                    .map(|i| NotificationChannel::Slack {
                        url: format!("http://hooks.example/{i}"),
                    })
                    .collect(),
            }),
            Some(Uuid::now_v7()),
            StreamId::alert(Uuid::now_v7()),
            1,
            Actor::system(),
            "corr".into(),
        )
    }

    #[test]
    fn a_triggered_alert_is_a_row_a_history_entry_and_one_outbox_row_per_channel() {
        let event = triggered(3);
        let sql = Alerting.statements(&event);
        assert_eq!(sql.len(), 5);
        assert!(sql[0].text.contains("INSERT INTO read.alerts"));
        assert!(sql[1].text.contains("read.alert_history"));
        assert!(sql[2..]
            .iter()
            .all(|s| s.text.contains("alert_notifications")));
    }

    #[test]
    fn notification_ids_are_the_same_on_a_replay_and_differ_per_channel() {
        let event = Uuid::now_v7();
        assert_eq!(notification_id(event, 0), notification_id(event, 0));
        assert_ne!(notification_id(event, 0), notification_id(event, 1));
    }

    #[test]
    fn the_outbox_is_not_emptied_by_a_rebuild() {
        assert!(!Alerting.tables().contains(&"alert_notifications"));
    }
}
