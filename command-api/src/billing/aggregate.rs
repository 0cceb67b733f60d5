//! The subscription aggregate: the plan, and a downgrade waiting for the next month.

use chrono::{DateTime, SecondsFormat, Utc};
use events::billing::{
    DowngradeCancelled, DowngradeScheduled, SubscriptionStarted, SubscriptionUpgraded,
};
use events::{EventEnvelope, EventPayload};
use platform::plans::{next_month_start, plan, proration_cents, Plan};
use uuid::Uuid;

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

pub fn decide(
    state: &Subscription,
    command: Command,
    now: DateTime<Utc>,
) -> Result<Vec<EventPayload>, DomainError> {
    if let Command::Start { plan } = command {
        if state.exists() {
            return Err(DomainError::AlreadySubscribed);
        }
        return Ok(vec![EventPayload::SubscriptionStarted(
            SubscriptionStarted {
                plan: plan.id.into(),
                started_at: time(now),
            },
        )]);
    }
    if !state.exists() {
        return Err(DomainError::NotFound);
    }
    let current = plan(state.effective_plan(now)).ok_or(DomainError::NotFound)?;
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
        Command::CancelDowngrade => match state.pending_at(now) {
            Some((to, _)) => Ok(vec![EventPayload::DowngradeCancelled(DowngradeCancelled {
                to_plan: to.clone(),
            })]),
            None => Err(DomainError::NoPendingDowngrade),
        },
    }
}

pub(super) fn parse(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn apply(mut state: Subscription, event: &EventEnvelope) -> Subscription {
    state.version = event.stream_version;
    match &event.payload {
        EventPayload::SubscriptionStarted(e) => {
            state.org_id = event.org_id.unwrap_or_default();
            state.plan = e.plan.clone();
            state.started_at = parse(&e.started_at);
        }
        EventPayload::SubscriptionUpgraded(e) => {
            state.plan = e.to_plan.clone();
            state.pending = None;
        }
        EventPayload::DowngradeScheduled(e) => {
            // A downgrade scheduled earlier that already took effect is the plan now.
            if let Some((plan, at)) = state.pending.take() {
                if parse(&e.effective_at).is_some_and(|new_at| at < new_at) {
                    state.plan = plan;
                }
            }
            state.pending = parse(&e.effective_at).map(|at| (e.to_plan.clone(), at));
        }
        EventPayload::DowngradeCancelled(_) => state.pending = None,
        _ => {}
    }
    state
}

impl crate::command::Aggregate for Subscription {
    fn apply(self, event: &EventEnvelope) -> Self {
        apply(self, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::Actor;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn run(state: Subscription, command: Command, now: &str) -> Subscription {
        let payloads = decide(&state, command, at(now)).expect("decides");
        payloads.into_iter().fold(state, |s, p| {
            let version = s.version + 1;
            apply(
                s,
                &EventEnvelope::new(
                    p,
                    Some(Uuid::nil()),
                    stream_id(Uuid::nil()),
                    version,
                    Actor::system(),
                    "t".into(),
                ),
            )
        })
    }

    #[test]
    fn a_downgrade_waits_for_the_first_of_next_month() {
        let free = plan("free").expect("plan");
        let pro = plan("pro").expect("plan");
        let s = run(
            Subscription::default(),
            Command::Start { plan: free },
            "2026-11-01T00:00:00Z",
        );
        let s = run(s, Command::Upgrade { to: pro }, "2026-11-11T09:00:00Z");
        let s = run(
            s,
            Command::Downgrade {
                to: plan("developer").expect("plan"),
            },
            "2026-11-20T09:00:00Z",
        );
        assert_eq!(s.effective_plan(at("2026-11-30T23:59:59Z")), "pro");
        assert_eq!(s.effective_plan(at("2026-12-01T00:00:00Z")), "developer");
        // Once in force, it is not pending and cannot be cancelled.
        assert_eq!(
            decide(&s, Command::CancelDowngrade, at("2026-12-02T00:00:00Z")),
            Err(DomainError::NoPendingDowngrade)
        );
        assert_eq!(
            decide(&s, Command::CancelDowngrade, at("2026-11-21T00:00:00Z")).map(|e| e.len()),
            Ok(1)
        );
    }

    #[test]
    fn upgrades_go_up_and_downgrades_down() {
        let s = run(
            Subscription::default(),
            Command::Start {
                plan: plan("developer").expect("plan"),
            },
            "2026-11-01T00:00:00Z",
        );
        let now = at("2026-11-05T00:00:00Z");
        assert!(matches!(
            decide(
                &s,
                Command::Upgrade {
                    to: plan("free").expect("plan")
                },
                now
            ),
            Err(DomainError::NotAnUpgrade { .. })
        ));
        assert!(matches!(
            decide(
                &s,
                Command::Downgrade {
                    to: plan("pro").expect("plan")
                },
                now
            ),
            Err(DomainError::NotADowngrade { .. })
        ));
        assert!(matches!(
            decide(
                &s,
                Command::Upgrade {
                    to: plan("developer").expect("plan")
                },
                now
            ),
            Err(DomainError::NotAnUpgrade { .. })
        ));
    }
}
