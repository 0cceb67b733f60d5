//! Two pure aggregates: an alert rule (defined, redefined, deleted) and an alert (triggered,
//! acknowledged, resolved).

use chrono::{DateTime, Utc};
use events::alerting::{
    AlertAcknowledged, AlertResolved, AlertRuleDefined, AlertRuleDeleted, AlertTriggered,
};
use events::{Actor, EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::command::Aggregate;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub id: Uuid,
    pub org_id: Uuid,
    pub definition: Option<AlertRuleDefined>,
    pub deleted: bool,
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Rule {
    pub fn exists(&self) -> bool {
        self.definition.is_some() && !self.deleted
    }
}

#[derive(Debug, Clone)]
pub enum RuleCommand {
    Define(AlertRuleDefined),
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("no such alert rule")]
    NotFound,
}

impl Aggregate for Rule {
    type Command = RuleCommand;
    type Error = RuleError;

    fn decide(&self, command: RuleCommand) -> Result<Vec<EventPayload>, RuleError> {
        match command {
            _ if self.deleted => Err(RuleError::NotFound),
            RuleCommand::Define(rule) => match &self.definition {
                None => Ok(vec![EventPayload::AlertRuleCreated(rule)]),
                Some(current) if *current == rule => Ok(vec![]),
                Some(_) => Ok(vec![EventPayload::AlertRuleUpdated(rule)]),
            },
            RuleCommand::Delete if self.definition.is_none() => Err(RuleError::NotFound),
            RuleCommand::Delete => Ok(vec![EventPayload::AlertRuleDeleted(AlertRuleDeleted {})]),
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        self.updated_at = Some(*event.occurred_at);
        if let Some(org) = event.org_id {
            self.org_id = org;
        }
        if let Some(id) = event.stream_id.uuid_of(events::StreamKind::AlertRule) {
            self.id = id;
        }
        match &event.payload {
            EventPayload::AlertRuleCreated(rule) => {
                self.created_at = Some(*event.occurred_at);
                self.definition = Some(rule.clone());
            }
            EventPayload::AlertRuleUpdated(rule) => self.definition = Some(rule.clone()),
            EventPayload::AlertRuleDeleted(_) => self.deleted = true,
            _ => {}
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    None,
    Firing,
    Acknowledged,
    Resolved,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alert {
    pub id: Uuid,
    pub org_id: Uuid,
    pub status: Status,
    pub triggered: Option<AlertTriggered>,
    pub triggered_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<Actor>,
    pub note: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_value: Option<f64>,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub enum AlertCommand {
    Trigger(AlertTriggered),
    Acknowledge { note: Option<String> },
    Resolve(AlertResolved),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("no such alert")]
    NotFound,
    #[error("the alert was already acknowledged")]
    AlreadyAcknowledged,
    #[error("the alert is resolved")]
    Resolved,
    #[error("the alert exists")]
    Exists,
}

impl Aggregate for Alert {
    type Command = AlertCommand;
    type Error = AlertError;

    fn decide(&self, command: AlertCommand) -> Result<Vec<EventPayload>, AlertError> {
        match (command, self.status) {
            (AlertCommand::Trigger(t), Status::None) => Ok(vec![EventPayload::AlertTriggered(t)]),
            (AlertCommand::Trigger(_), _) => Err(AlertError::Exists),
            (_, Status::None) => Err(AlertError::NotFound),
            (AlertCommand::Acknowledge { note }, Status::Firing) => {
                Ok(vec![EventPayload::AlertAcknowledged(AlertAcknowledged {
                    note,
                })])
            }
            (AlertCommand::Acknowledge { .. }, Status::Acknowledged) => {
                Err(AlertError::AlreadyAcknowledged)
            }
            (_, Status::Resolved) => Err(AlertError::Resolved),
            (AlertCommand::Resolve(r), _) => Ok(vec![EventPayload::AlertResolved(r)]),
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        if let Some(org) = event.org_id {
            self.org_id = org;
        }
        if let Some(id) = event.stream_id.uuid_of(events::StreamKind::Alert) {
            self.id = id;
        }
        match &event.payload {
            EventPayload::AlertTriggered(t) => {
                self.status = Status::Firing;
                self.triggered = Some(t.clone());
                self.triggered_at = Some(*event.occurred_at);
            }
            EventPayload::AlertAcknowledged(a) => {
                if self.status == Status::Firing {
                    self.status = Status::Acknowledged;
                }
                self.acknowledged_at = Some(*event.occurred_at);
                self.acknowledged_by = Some(event.actor.clone());
                self.note = a.note.clone();
            }
            EventPayload::AlertResolved(r) => {
                self.status = Status::Resolved;
                self.resolved_at = Some(*event.occurred_at);
                self.resolved_value = r.value;
            }
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::given;
    use events::alerting::*;

    fn rule(threshold: f64) -> AlertRuleDefined {
        AlertRuleDefined {
            name: "errors".into(),
            metric: "chat.error_rate".into(),
            filter: Default::default(),
            condition: AlertCondition::Above,
            threshold,
            window_seconds: 60,
            for_seconds: 0,
            severity: AlertSeverity::Critical,
            channels: vec![],
            secret_hint: "abcd".into(),
        }
    }

    fn triggered() -> AlertTriggered {
        AlertTriggered {
            rule_id: Uuid::nil(),
            rule_name: "errors".into(),
            metric: "chat.error_rate".into(),
            filter: Default::default(),
            condition: AlertCondition::Above,
            threshold: 0.5,
            window_seconds: 60,
            for_seconds: 0,
            severity: AlertSeverity::Critical,
            value: Some(1.0),
            breached_since: events::Timestamp::now(),
            channels: vec![],
        }
    }

    #[test]
    fn a_rule_is_created_then_updated_only_when_it_changes_and_deleted_once() {
        given::<Rule>(vec![])
            .when(RuleCommand::Define(rule(0.5)))
            .then(vec![EventPayload::AlertRuleCreated(rule(0.5))]);
        given::<Rule>(vec![EventPayload::AlertRuleCreated(rule(0.5))])
            .when(RuleCommand::Define(rule(0.5)))
            .then(vec![]);
        given::<Rule>(vec![EventPayload::AlertRuleCreated(rule(0.5))])
            .when(RuleCommand::Define(rule(0.7)))
            .then(vec![EventPayload::AlertRuleUpdated(rule(0.7))]);
        given::<Rule>(vec![
            EventPayload::AlertRuleCreated(rule(0.5)),
            EventPayload::AlertRuleDeleted(AlertRuleDeleted {}),
        ])
        .when(RuleCommand::Delete)
        .then_error(RuleError::NotFound);
    }

    #[test]
    fn an_alert_is_acknowledged_once_and_not_after_it_resolved() {
        let fired = EventPayload::AlertTriggered(triggered());
        given::<Alert>(vec![fired.clone()])
            .when(AlertCommand::Acknowledge {
                note: Some("on it".into()),
            })
            .then(vec![EventPayload::AlertAcknowledged(AlertAcknowledged {
                note: Some("on it".into()),
            })]);
        given::<Alert>(vec![
            fired.clone(),
            EventPayload::AlertAcknowledged(AlertAcknowledged::default()),
        ])
        .when(AlertCommand::Acknowledge { note: None })
        .then_error(AlertError::AlreadyAcknowledged);
        let resolved = EventPayload::AlertResolved(AlertResolved {
            rule_id: Uuid::nil(),
            value: Some(0.0),
            reason: "recovered".into(),
            channels: vec![],
        });
        given::<Alert>(vec![fired, resolved])
            .when(AlertCommand::Acknowledge { note: None })
            .then_error(AlertError::Resolved);
        given::<Alert>(vec![])
            .when(AlertCommand::Acknowledge { note: None })
            .then_error(AlertError::NotFound);
    }
}
