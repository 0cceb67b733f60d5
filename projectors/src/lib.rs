//! Projectors turn the event topic into read models. Each projection is a pure mapping from an
//! event to SQL statements; the runner applies a batch of events and the next offsets in one
//! Postgres transaction, so a read model and its position never disagree.

pub mod audit;
pub mod backfill;
pub mod projections;
pub mod replay;
pub mod runner;

use std::sync::Arc;

use events::EventEnvelope;
use tokio_postgres::types::ToSql;

pub use runner::{ProjectorConfig, ProjectorStatus};

/// One SQL statement with its parameters.
pub struct Sql {
    pub text: &'static str,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    pub fn new(text: &'static str, params: Vec<Box<dyn ToSql + Sync + Send>>) -> Self {
        Self { text, params }
    }
}

impl std::fmt::Debug for Sql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql")
            .field("text", &self.text)
            .field("params", &self.params)
            .finish()
    }
}

/// A read model built from the event stream.
pub trait Projection: Send + Sync + 'static {
    /// Stable name: offsets, applied events and consumer groups are keyed by it.
    fn name(&self) -> &'static str;
    /// The tables this projection owns, emptied when it is rebuilt.
    fn tables(&self) -> &'static [&'static str];
    /// The statements that apply one event; none for event types it does not care about.
    fn statements(&self, event: &EventEnvelope) -> Vec<Sql>;
    /// Whether events of this type (the message's `ce_type` header) can change this projection.
    /// The runner neither decodes nor records the others: the gateway's chat events are most
    /// of the topic, and a projection that never reads them should not pay for them.
    fn handles(&self, _event_type: &str) -> bool {
        true
    }
    /// Whether the runner records events of this type in `projector_applied`, so that a second
    /// copy (the relay may publish one twice) is skipped, and a command waiting for the event
    /// can see it applied. A projection whose writes for the type are idempotent by event id —
    /// a second copy changes nothing — and which no command waits on for it may say no and save
    /// the mark: the gateway's chat calls are most of the topic, and a mark per call in each of
    /// three projections was a sixth of the database's work for a call (issue 17). Unmarked
    /// events are still de-duplicated within a batch.
    fn marks(&self, _event_type: &str) -> bool {
        true
    }
    /// A projection that folds a whole batch in memory before it writes (the metrics' buckets:
    /// a thousand calls of one minute are one row, not a thousand updates of it) says so here.
    fn fold(&self) -> Option<&dyn Fold> {
        None
    }
    /// Whether the runner opens the events' sealed personal fields before `statements` (with the
    /// persons' keys that still exist; a destroyed key reads `[erased]`). The audit log keeps the
    /// envelopes as the topic carried them, sealed, so it says no.
    fn opens_personal_data(&self) -> bool {
        true
    }
}

/// Applies a batch at once, in the runner's transaction, after the batch's per-event
/// statements. The runner still owns de-duplication and offsets: `events` are exactly the
/// batch's events never applied before, in partition order.
pub trait Fold: Send + Sync {
    fn apply<'a>(
        &'a self,
        tx: &'a platform::db::Transaction<'a>,
        events: &'a [&'a EventEnvelope],
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>>;
}

/// Every projection of the platform.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(projections::tenancy::Tenancy),
        Arc::new(projections::audit::Audit),
        Arc::new(projections::usage::Usage),
        Arc::new(projections::catalog::Catalog),
        Arc::new(projections::metrics::Metrics),
        Arc::new(projections::alerting::Alerting),
    ]
}

pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}

#[cfg(test)]
mod handled_types {
    use events::EventPayload;

    fn handled_by(name: &str) -> Vec<&'static str> {
        let projection = crate::by_name(name).expect("projection");
        EventPayload::TYPES
            .iter()
            .copied()
            .filter(|t| projection.handles(t))
            .collect()
    }

    #[test]
    fn the_chat_calls_reach_exactly_the_projections_that_read_them() {
        let readers: Vec<&str> = crate::all()
            .iter()
            .filter(|p| {
                p.handles("chat.completion.succeeded") && p.handles("chat.completion.failed")
            })
            .map(|p| p.name())
            .collect();
        assert_eq!(readers, ["tenancy", "audit", "usage", "metrics"]);
        // Of those, only the metrics' counters need a mark per call to stay exactly once.
        let marking: Vec<&str> = crate::all()
            .iter()
            .filter(|p| {
                events::chat::CALL_TYPES
                    .iter()
                    .any(|t| p.handles(t) && p.marks(t))
            })
            .map(|p| p.name())
            .collect();
        assert_eq!(marking, ["metrics"]);
        // Every other type is marked wherever it is handled: commands wait on the marks.
        for projection in crate::all() {
            for t in EventPayload::TYPES {
                if !events::chat::is_call(t) && projection.handles(t) {
                    assert!(projection.marks(t), "{} {t}", projection.name());
                }
            }
        }
        assert_eq!(handled_by("catalog"), ["catalog.synced"]);
        assert_eq!(
            handled_by("alerting"),
            [
                "alert_rule.created",
                "alert_rule.updated",
                "alert_rule.deleted",
                "alert.triggered",
                "alert.acknowledged",
                "alert.resolved",
                "notification.delivered",
                "notification.failed",
            ]
        );
    }
}
