//! The subscription aggregate: the plan, and a downgrade waiting for the next month.

use chrono::{DateTime, SecondsFormat, Utc};
use events::billing::{
    DowngradeCancelled, DowngradeScheduled, SubscriptionStarted, SubscriptionUpgraded,
};
use events::{EventEnvelope, EventPayload};
use platform::plans::{next_month_start, plan, proration_cents, Plan};
use uuid::Uuid;

use crate::command::Aggregate;

pub fn stream_id(org_id: Uuid) -> events::StreamId {
    events::StreamId::subscription(org_id.into())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    pub org_id: Uuid,
    pub plan: String,
    pub pending: Option<(String, DateTime<Utc>)>,
    pub started_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl Subscription {
    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// The plan in force at `now`: a scheduled downgrade counts from its date on.
    pub fn effective_plan(&self, now: DateTime<Utc>) -> &str {
        match &self.pending {
            Some((plan, at)) if *at <= now => plan,
            _ => &self.plan,
        }
    }

    /// The downgrade still waiting at `now`.
    pub fn pending_at(&self, now: DateTime<Utc>) -> Option<&(String, DateTime<Utc>)> {
        self.pending.as_ref().filter(|(_, at)| *at > now)
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    Start { plan: &'static Plan },
    Upgrade { to: &'static Plan },
    Downgrade { to: &'static Plan },
    CancelDowngrade,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the organization already has a subscription")]
    AlreadySubscribed,
    #[error("no subscription")]
    NotFound,
    #[error("{to} is not above {from}")]
    NotAnUpgrade { from: String, to: String },
    #[error("{to} is not below {from}")]
    NotADowngrade { from: String, to: String },
    #[error("no downgrade is pending")]
    NoPendingDowngrade,
}

pub(super) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A subscription decides at a time: `now` is when an upgrade takes effect and what a downgrade
/// waits from.
impl Aggregate for Subscription {
    type Command = (Command, DateTime<Utc>);
    type Error = DomainError;

    fn decide(
        &self,
        (command, now): (Command, DateTime<Utc>),
    ) -> Result<Vec<EventPayload>, DomainError> {
        if let Command::Start { plan } = command {
            if self.exists() {
                return Err(DomainError::AlreadySubscribed);
            }
            return Ok(vec![EventPayload::SubscriptionStarted(
                SubscriptionStarted {
                    plan: plan.id.into(),
                    started_at: time(now),
                },
            )]);
        }
        if !self.exists() {
            return Err(DomainError::NotFound);
        }
        let current = plan(self.effective_plan(now)).ok_or(DomainError::NotFound)?;
        match command {
            Command::Start { .. } => Err(DomainError::AlreadySubscribed),
            Command::Upgrade { to } => {
                if to.rank <= current.rank {
                    return Err(DomainError::NotAnUpgrade {
                        from: current.id.into(),
                        to: to.id.into(),
                    });
                }
                let (proration, days_left, days_in_month) = proration_cents(current, to, now);
                Ok(vec![EventPayload::SubscriptionUpgraded(
                    SubscriptionUpgraded {
                        from_plan: current.id.into(),
                        to_plan: to.id.into(),
                        effective_at: time(now),
                        days_left,
                        days_in_month,
                        proration_cents: proration,
                    },
                )])
            }
            Command::Downgrade { to } => {
                if to.rank >= current.rank {
                    return Err(DomainError::NotADowngrade {
                        from: current.id.into(),
                        to: to.id.into(),
                    });
                }
                Ok(vec![EventPayload::DowngradeScheduled(DowngradeScheduled {
                    from_plan: current.id.into(),
                    to_plan: to.id.into(),
                    effective_at: time(next_month_start(now)),
                })])
            }
            Command::CancelDowngrade => match self.pending_at(now) {
                Some((to, _)) => Ok(vec![EventPayload::DowngradeCancelled(DowngradeCancelled {
                    to_plan: to.clone(),
                })]),
                None => Err(DomainError::NoPendingDowngrade),
            },
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        match &event.payload {
            EventPayload::SubscriptionStarted(e) => {
                self.org_id = event.org_id.unwrap_or_default();
                self.plan = e.plan.clone();
                self.started_at = parse(&e.started_at);
            }
            EventPayload::SubscriptionUpgraded(e) => {
                self.plan = e.to_plan.clone();
                self.pending = None;
            }
            EventPayload::DowngradeScheduled(e) => {
                // A downgrade scheduled earlier that already took effect is the plan now.
                if let Some((plan, at)) = self.pending.take() {
                    if parse(&e.effective_at).is_some_and(|new_at| at < new_at) {
                        self.plan = plan;
                    }
                }
                self.pending = parse(&e.effective_at).map(|at| (e.to_plan.clone(), at));
            }
            EventPayload::DowngradeCancelled(_) => self.pending = None,
            _ => {}
        }
        self
    }
}

pub(super) fn parse(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::given;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn p(id: &str) -> &'static Plan {
        plan(id).expect("plan")
    }

    fn started(plan: &str, at: &str) -> EventPayload {
        EventPayload::SubscriptionStarted(SubscriptionStarted {
            plan: plan.into(),
            started_at: at.into(),
        })
    }

    /// Free from November 1st, Pro from the 11th.
    fn on_pro() -> Vec<EventPayload> {
        vec![
            started("free", "2026-11-01T00:00:00.000Z"),
            EventPayload::SubscriptionUpgraded(SubscriptionUpgraded {
                from_plan: "free".into(),
                to_plan: "pro".into(),
                effective_at: "2026-11-11T09:00:00.000Z".into(),
                days_left: 20,
                days_in_month: 30,
                proration_cents: 6_600,
            }),
        ]
    }

    fn scheduled_to_developer() -> EventPayload {
        EventPayload::DowngradeScheduled(DowngradeScheduled {
            from_plan: "pro".into(),
            to_plan: "developer".into(),
            effective_at: "2026-12-01T00:00:00.000Z".into(),
        })
    }

    #[test]
    fn a_downgrade_waits_for_the_first_of_next_month() {
        given::<Subscription>(on_pro())
            .when((
                Command::Downgrade { to: p("developer") },
                at("2026-11-20T09:00:00Z"),
            ))
            .then(vec![scheduled_to_developer()])
            .then_state(|s| {
                assert_eq!(s.effective_plan(at("2026-11-30T23:59:59Z")), "pro");
                assert_eq!(s.effective_plan(at("2026-12-01T00:00:00Z")), "developer");
            });
        let scheduled = [on_pro(), vec![scheduled_to_developer()]].concat();
        // Once in force, it is not pending and cannot be cancelled.
        given::<Subscription>(scheduled.clone())
            .when((Command::CancelDowngrade, at("2026-12-02T00:00:00Z")))
            .then_error(DomainError::NoPendingDowngrade);
        given::<Subscription>(scheduled)
            .when((Command::CancelDowngrade, at("2026-11-21T00:00:00Z")))
            .then(vec![EventPayload::DowngradeCancelled(DowngradeCancelled {
                to_plan: "developer".into(),
            })])
            .then_state(|s| assert_eq!(s.effective_plan(at("2026-12-01T00:00:00Z")), "pro"));
    }

    #[test]
    fn upgrades_go_up_and_downgrades_down() {
        let developer = || vec![started("developer", "2026-11-01T00:00:00.000Z")];
        let now = at("2026-11-05T00:00:00Z");
        given::<Subscription>(developer())
            .when((Command::Upgrade { to: p("free") }, now))
            .then_error(DomainError::NotAnUpgrade {
                from: "developer".into(),
                to: "free".into(),
            });
        given::<Subscription>(developer())
            .when((Command::Downgrade { to: p("pro") }, now))
            .then_error(DomainError::NotADowngrade {
                from: "developer".into(),
                to: "pro".into(),
            });
        given::<Subscription>(developer())
            .when((Command::Upgrade { to: p("developer") }, now))
            .then_error(DomainError::NotAnUpgrade {
                from: "developer".into(),
                to: "developer".into(),
            });
    }
}
