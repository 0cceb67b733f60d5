//! The invoice aggregate: what a closed period costs an organization, and its payment. Pure: the
//! lines come from the subscription's history, the usage summary from the period's chat events.

use chrono::{DateTime, Utc};
use events::billing::{InvoiceIssued, InvoiceLine, InvoicePaid, InvoiceUsage};
use events::{EventEnvelope, EventPayload};
use platform::plans::{plan, proration_cents, Period};
use uuid::Uuid;

use super::aggregate::{parse, time, Subscription};
use crate::command::Aggregate;

/// Invoice ids are derived from the organization and the period, so one period can never get a
/// second invoice, whoever closes it and however often.
pub fn invoice_id(org_id: Uuid, period: Period) -> Uuid {
    Uuid::new_v5(&org_id, format!("invoice/{period}").as_bytes())
}

pub fn stream_id(invoice_id: Uuid) -> events::StreamId {
    events::StreamId::invoice(invoice_id.into())
}

pub fn period_stream_id(period: Period) -> events::StreamId {
    events::StreamId::billing_period(period)
}

/// Whether a subscription event was decided before `at`. Events carry the time they take effect:
/// a start or an upgrade takes effect when decided; a downgrade on the first of the month after
/// it was decided, so it was decided before `at` exactly when it takes effect by `at`; a
/// cancellation comes before the downgrade it cancels would have taken effect.
fn decided_before(state: &Subscription, event: &EventEnvelope, at: DateTime<Utc>) -> bool {
    match &event.payload {
        EventPayload::SubscriptionStarted(e) => parse(&e.started_at).is_some_and(|t| t < at),
        EventPayload::SubscriptionUpgraded(e) => parse(&e.effective_at).is_some_and(|t| t < at),
        EventPayload::DowngradeScheduled(e) => parse(&e.effective_at).is_some_and(|t| t <= at),
        EventPayload::DowngradeCancelled(_) => {
            state.pending.as_ref().is_some_and(|(_, t)| *t <= at)
        }
        _ => true,
    }
}

/// The invoice of `period` for the organization whose subscription stream is `history`, or
/// `None` when it had no subscription during the period.
pub fn compose(
    invoice_id: Uuid,
    period: Period,
    history: &[EventEnvelope],
    usage: Vec<InvoiceUsage>,
    issued_at: DateTime<Utc>,
) -> Option<InvoiceIssued> {
    let (start, end) = (period.start, period.end());
    let mut state = Subscription::default();
    let mut rest = history.iter().peekable();
    while let Some(event) = rest.next_if(|e| decided_before(&state, e, start)) {
        state = state.apply(event);
    }
    let mut lines = Vec::new();
    let month = period.start.format("%B %Y");
    let billed_plan = if state.exists() {
        let current = plan(state.effective_plan(start))?;
        lines.push(InvoiceLine {
            kind: "plan_fee".into(),
            description: fee_description(current.name, current.price_cents, &month),
            amount_cents: current.price_cents.unwrap_or(0),
        });
        current.id
    } else {
        // Subscribed during the period: the first plan's fee for the days left.
        let started = rest.peek().and_then(|e| match &e.payload {
            EventPayload::SubscriptionStarted(s) => Some((plan(&s.plan)?, parse(&s.started_at)?)),
            _ => None,
        });
        let (first, at) = started.filter(|(_, at)| *at < end)?;
        let free = platform::plans::DEFAULT_PLAN.plan();
        let (cents, left, days) = proration_cents(free, first, at);
        lines.push(InvoiceLine {
            kind: "plan_fee".into(),
            description: format!(
                "{} plan from {}: {left}/{days} of the monthly price",
                first.name,
                at.format("%Y-%m-%d")
            ),
            amount_cents: cents,
        });
        first.id
    };
    for event in rest {
        if let EventPayload::SubscriptionUpgraded(e) = &event.payload {
            let Some(at) = parse(&e.effective_at).filter(|t| period.contains(*t)) else {
                continue;
            };
            lines.push(InvoiceLine {
                kind: "proration".into(),
                description: format!(
                    "Upgrade {} → {} on {}: {}/{} of the monthly price difference",
                    e.from_plan,
                    e.to_plan,
                    at.format("%Y-%m-%d"),
                    e.days_left,
                    e.days_in_month
                ),
                amount_cents: e.proration_cents,
            });
        }
    }
    Some(InvoiceIssued {
        invoice_id,
        period: period.to_string(),
        plan: billed_plan.into(),
        currency: "usd".into(),
        total_cents: lines.iter().map(|l| l.amount_cents).sum(),
        lines,
        usage,
        issued_at: time(issued_at),
    })
}

fn fee_description(name: &str, price: Option<i64>, month: &impl std::fmt::Display) -> String {
    match price {
        Some(_) => format!("{name} plan, {month}"),
        None => format!("{name} plan, {month}: priced by contract, billed separately"),
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invoice {
    pub id: Uuid,
    pub org_id: Uuid,
    pub total_cents: i64,
    pub paid: bool,
    /// The payment recorded, if any: its amount, reference and time.
    pub payment: Option<(i64, String, String)>,
    pub version: i64,
}

impl Invoice {
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    #[error("the invoice is already paid")]
    AlreadyPaid,
    #[error("the amount due is {due} cents, not {offered}")]
    AmountMismatch { due: i64, offered: i64 },
}

#[derive(Debug, Clone)]
pub enum Command {
    /// A payment of the whole amount due, recorded as made at `now`.
    Pay {
        amount_cents: i64,
        reference: String,
        now: DateTime<Utc>,
    },
}

/// Issued by `compose`, then paid once.
impl Aggregate for Invoice {
    type Command = Command;
    type Error = PayError;

    fn decide(&self, command: Command) -> Result<Vec<EventPayload>, PayError> {
        let Command::Pay {
            amount_cents,
            reference,
            now,
        } = command;
        if self.paid {
            return Err(PayError::AlreadyPaid);
        }
        if amount_cents != self.total_cents {
            return Err(PayError::AmountMismatch {
                due: self.total_cents,
                offered: amount_cents,
            });
        }
        Ok(vec![EventPayload::InvoicePaid(InvoicePaid {
            invoice_id: self.id,
            amount_cents,
            reference,
            paid_at: time(now),
        })])
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        match &event.payload {
            EventPayload::InvoiceIssued(e) => {
                self.id = e.invoice_id;
                self.org_id = event.org_id.unwrap_or_default();
                self.total_cents = e.total_cents;
                self.paid = e.total_cents == 0;
            }
            EventPayload::InvoicePaid(e) => {
                self.paid = true;
                self.payment = Some((e.amount_cents, e.reference.clone(), e.paid_at.clone()));
            }
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::aggregate::{self, Command};
    use crate::command::testing::given;
    use events::Actor;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// The subscription stream after running `commands` at their times.
    fn history(commands: Vec<(Command, &str)>) -> Vec<EventEnvelope> {
        let org = Uuid::nil();
        let mut state = Subscription::default();
        let mut events = Vec::new();
        for (command, now) in commands {
            for payload in state.decide((command, at(now))).expect("decides") {
                let event = EventEnvelope::new(
                    payload,
                    Some(org),
                    aggregate::stream_id(org),
                    state.version + 1,
                    Actor::system(),
                    "t".into(),
                );
                state = state.apply(&event);
                events.push(event);
            }
        }
        events
    }

    fn p(id: &str) -> &'static platform::plans::Plan {
        plan(id).expect("plan")
    }

    fn lines(invoice: &InvoiceIssued) -> Vec<(&str, i64)> {
        invoice
            .lines
            .iter()
            .map(|l| (l.kind.as_str(), l.amount_cents))
            .collect()
    }

    fn invoice(history: &[EventEnvelope], period: &str) -> Option<InvoiceIssued> {
        let period = Period::parse(period).expect("period");
        compose(Uuid::nil(), period, history, vec![], period.end())
    }

    #[test]
    fn an_upgrade_in_the_month_is_a_proration_line_and_the_next_month_pays_the_new_fee() {
        let h = history(vec![
            (Command::Start { plan: p("free") }, "2026-10-20T00:00:00Z"),
            (
                Command::Upgrade { to: p("developer") },
                "2026-11-11T09:00:00Z",
            ),
        ]);
        let november = invoice(&h, "2026-11").expect("invoice");
        assert_eq!(november.plan, "free");
        assert_eq!(
            lines(&november),
            vec![("plan_fee", 0), ("proration", 1_933)]
        );
        assert_eq!(november.total_cents, 1_933);
        let december = invoice(&h, "2026-12").expect("invoice");
        assert_eq!(lines(&december), vec![("plan_fee", 2_900)]);
        assert_eq!(december.total_cents, 2_900);
    }

    #[test]
    fn a_downgrade_is_billed_from_the_month_it_takes_effect() {
        let h = history(vec![
            (Command::Start { plan: p("free") }, "2026-09-01T00:00:00Z"),
            (Command::Upgrade { to: p("pro") }, "2026-09-01T00:00:00Z"),
            (
                Command::Downgrade { to: p("developer") },
                "2026-10-20T00:00:00Z",
            ),
        ]);
        assert_eq!(
            lines(&invoice(&h, "2026-10").expect("invoice")),
            vec![("plan_fee", 9_900)]
        );
        assert_eq!(
            lines(&invoice(&h, "2026-11").expect("invoice")),
            vec![("plan_fee", 2_900)]
        );
    }

    #[test]
    fn a_cancelled_downgrade_keeps_the_plan() {
        let h = history(vec![
            (Command::Start { plan: p("free") }, "2026-09-01T00:00:00Z"),
            (Command::Upgrade { to: p("pro") }, "2026-09-01T00:00:00Z"),
            (
                Command::Downgrade { to: p("developer") },
                "2026-10-20T00:00:00Z",
            ),
            (Command::CancelDowngrade, "2026-10-25T00:00:00Z"),
        ]);
        assert_eq!(
            lines(&invoice(&h, "2026-11").expect("invoice")),
            vec![("plan_fee", 9_900)]
        );
    }

    #[test]
    fn an_organization_subscribed_after_the_period_gets_no_invoice() {
        let h = history(vec![(
            Command::Start { plan: p("free") },
            "2026-12-03T00:00:00Z",
        )]);
        assert_eq!(invoice(&h, "2026-11"), None);
        let december = invoice(&h, "2026-12").expect("invoice");
        assert_eq!(lines(&december), vec![("plan_fee", 0)]);
    }

    #[test]
    fn the_same_period_always_gets_the_same_invoice_id() {
        let org = Uuid::now_v7();
        let period = Period::parse("2026-11").expect("period");
        assert_eq!(invoice_id(org, period), invoice_id(org, period));
        assert_ne!(invoice_id(org, period), invoice_id(org, period.previous()));
        assert_ne!(invoice_id(org, period), invoice_id(Uuid::now_v7(), period));
    }

    fn issued(total_cents: i64) -> EventPayload {
        EventPayload::InvoiceIssued(InvoiceIssued {
            invoice_id: Uuid::nil(),
            period: "2026-11".into(),
            plan: "free".into(),
            currency: "usd".into(),
            lines: vec![],
            usage: vec![],
            total_cents,
            issued_at: "2026-12-01T00:00:00.000Z".into(),
        })
    }

    fn pay(amount_cents: i64) -> super::Command {
        super::Command::Pay {
            amount_cents,
            reference: "r".into(),
            now: at("2026-12-02T00:00:00Z"),
        }
    }

    #[test]
    fn paying_takes_the_exact_amount_once() {
        given::<Invoice>(vec![issued(1_933)])
            .when(pay(1_900))
            .then_error(PayError::AmountMismatch {
                due: 1_933,
                offered: 1_900,
            });
        let paid = EventPayload::InvoicePaid(InvoicePaid {
            invoice_id: Uuid::nil(),
            amount_cents: 1_933,
            reference: "r".into(),
            paid_at: "2026-12-02T00:00:00.000Z".into(),
        });
        given::<Invoice>(vec![issued(1_933)])
            .when(pay(1_933))
            .then(vec![paid.clone()])
            .then_state(|invoice| assert!(invoice.paid));
        given::<Invoice>(vec![issued(1_933), paid])
            .when(pay(1_933))
            .then_error(PayError::AlreadyPaid);
    }
}
