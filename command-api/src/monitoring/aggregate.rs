//! A custom metric (`metric:<id>`) and a health check (`health_check:<id>`): defined once, then
//! deleted. Pushed points are streams of their own (`metric_point:<metric>/<point id>`), so a
//! point's id is unique by the journal's `(stream_id, stream_version)` key.

use events::monitoring::{CustomMetricKind, HealthCheckDeleted, MetricDefined, MetricDeleted};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::command::Aggregate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// Never defined, deleted, or another organization's.
    NotFound,
}

/// What a metric's stream says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomMetric {
    pub org_id: Option<Uuid>,
    pub defined: Option<MetricDefined>,
    pub deleted: bool,
}

pub enum MetricCommand {
    Define(MetricDefined),
    Delete,
}

impl CustomMetric {
    /// The metric if it is live and `org_id`'s.
    pub fn of(&self, org_id: Uuid) -> Result<&MetricDefined, DomainError> {
        match &self.defined {
            Some(d) if !self.deleted && self.org_id == Some(org_id) => Ok(d),
            _ => Err(DomainError::NotFound),
        }
    }

    /// Whether points may be pushed to it.
    pub fn is_pushed(defined: &MetricDefined) -> bool {
        defined.kind != CustomMetricKind::Meter
    }
}

impl Aggregate for CustomMetric {
    type Command = MetricCommand;
    type Error = DomainError;

    fn decide(&self, command: MetricCommand) -> Result<Vec<EventPayload>, DomainError> {
        match command {
            MetricCommand::Define(defined) if self.defined.is_none() => {
                Ok(vec![EventPayload::MetricDefined(defined)])
            }
            MetricCommand::Define(_) => Ok(vec![]),
            MetricCommand::Delete => match (&self.defined, self.deleted) {
                (Some(d), false) => Ok(vec![EventPayload::MetricDeleted(MetricDeleted {
                    metric_id: d.metric_id,
                })]),
                _ => Err(DomainError::NotFound),
            },
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        match &event.payload {
            EventPayload::MetricDefined(d) => {
                self.org_id = event.org_id;
                self.defined = Some(d.clone());
            }
            EventPayload::MetricDeleted(_) => self.deleted = true,
            _ => {}
        }
        self
    }
}

/// What a health check's stream says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthCheck {
    pub org_id: Option<Uuid>,
    pub check_id: Option<Uuid>,
    pub deleted: bool,
}

impl Aggregate for HealthCheck {
    type Command = Uuid;
    type Error = DomainError;

    /// Deleting the check of organization `org_id`.
    fn decide(&self, org_id: Uuid) -> Result<Vec<EventPayload>, DomainError> {
        match (self.check_id, self.deleted, self.org_id) {
            (Some(check_id), false, Some(org)) if org == org_id => {
                Ok(vec![EventPayload::HealthCheckDeleted(HealthCheckDeleted {
                    check_id,
                })])
            }
            _ => Err(DomainError::NotFound),
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        match &event.payload {
            EventPayload::HealthCheckDefined(d) => {
                self.org_id = event.org_id;
                self.check_id = Some(d.check_id);
            }
            EventPayload::HealthCheckDeleted(_) => self.deleted = true,
            _ => {}
        }
        self
    }
}
