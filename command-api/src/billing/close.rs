//! Closing a billing period: one `invoice.issued` per organization that had a subscription in
//! the month, then `billing.period_closed`. Run by operators (`aihub billing close-period`) and
//! by a scheduled job. Idempotent: invoice ids derive from organization and period, so a second
//! run (or two at once) finds every invoice already in the journal and issues nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use events::billing::{BillingPeriodClosed, InvoiceUsage};
use events::{Actor, EventEnvelope, EventPayload};
use platform::plans::Period;
use platform::ApiError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::invoice::{compose, invoice_id, period_stream_id, stream_id};
use crate::journal::{Journal, JournalError};

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("period {period} has not ended yet: it ends at {ends_at}")]
    NotEnded { period: Period, ends_at: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Database(#[from] ApiError),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CloseReport {
    pub organizations: u64,
    pub issued: u64,
    pub already_issued: u64,
    /// Sum of the invoices issued by this run, in cents.
    pub issued_cents: i64,
    /// The period was closed before this run.
    pub already_closed: bool,
}

/// Issues the period's missing invoices. `progress` hears about every 100 organizations.
pub async fn close_period(
    journal: &Journal,
    period: Period,
    now: DateTime<Utc>,
    progress: impl Fn(u64, u64),
) -> Result<CloseReport, CloseError> {
    if now < period.end() {
        return Err(CloseError::NotEnded {
            period,
            ends_at: period.end().to_rfc3339_opts(SecondsFormat::Secs, true),
        });
    }
    let mut report = CloseReport {
        already_closed: !journal.load(&period_stream_id(period)).await?.is_empty(),
        ..CloseReport::default()
    };
    let organizations = organizations(journal, period).await?;
    let mut usage = usage(journal, period).await?;
    report.organizations = organizations.len() as u64;
    let correlation = format!("close-period:{period}");
    let mut total_cents = 0;
    for (done, org_id) in organizations.iter().enumerate() {
        if done > 0 && done % 100 == 0 {
            progress(done as u64, report.organizations);
        }
        let id = invoice_id(*org_id, period);
        let existing = journal.load(&stream_id(id)).await?;
        if let Some(EventPayload::InvoiceIssued(issued)) = existing.first().map(|e| &e.payload) {
            report.already_issued += 1;
            total_cents += issued.total_cents;
            continue;
        }
        let history = journal.load(&super::aggregate::stream_id(*org_id)).await?;
        let summary = usage.remove(org_id).unwrap_or_default();
        let Some(invoice) = compose(id, period, &history, summary, now) else {
            continue;
        };
        let cents = invoice.total_cents;
        let event = EventEnvelope::new(
            EventPayload::InvoiceIssued(invoice),
            Some(*org_id),
            stream_id(id),
            1,
            Actor::system(),
            correlation.clone(),
        );
        match journal.append(&[event], &[]).await {
            Ok(()) => {
                report.issued += 1;
                report.issued_cents += cents;
            }
            // Another run issued it between our read and our append.
            Err(JournalError::VersionConflict) => report.already_issued += 1,
            Err(e) => return Err(e.into()),
        }
        total_cents += cents;
    }
    if !report.already_closed {
        let closed = EventEnvelope::new(
            EventPayload::BillingPeriodClosed(BillingPeriodClosed {
                period: period.to_string(),
                invoices: report.issued + report.already_issued,
                total_cents,
                closed_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            }),
            None,
            period_stream_id(period),
            1,
            Actor::system(),
            correlation,
        );
        match journal.append(&[closed], &[]).await {
            Ok(()) | Err(JournalError::VersionConflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// Organizations subscribed before the period ended and not deleted before it began, from the
/// journal (the write side never reads read models for a decision).
async fn organizations(journal: &Journal, period: Period) -> Result<Vec<Uuid>, ApiError> {
    let client = journal.pool().get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT org_id FROM journal
             WHERE event_type = 'subscription.started' AND org_id IS NOT NULL
               AND (envelope->'data'->>'started_at')::timestamptz < $1
               AND org_id NOT IN (
                   SELECT org_id FROM journal
                   WHERE event_type = 'organization.deleted' AND org_id IS NOT NULL
                     AND (envelope->>'occurred_at')::timestamptz < $2)
             ORDER BY org_id",
            &[&period.end(), &period.start],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The period's chat calls per organization and model, from their events.
async fn usage(
    journal: &Journal,
    period: Period,
) -> Result<BTreeMap<Uuid, Vec<InvoiceUsage>>, ApiError> {
    let client = journal.pool().get().await?;
    let rows = client
        .query(
            "SELECT org_id, envelope->'data'->>'model' AS model, count(*)::bigint,
                    COALESCE(sum((envelope->'data'->>'prompt_tokens')::bigint), 0)::bigint,
                    COALESCE(sum((envelope->'data'->>'completion_tokens')::bigint), 0)::bigint,
                    COALESCE(sum((envelope->'data'->>'total_tokens')::bigint), 0)::bigint,
                    COALESCE(sum((envelope->'data'->>'cost_micros')::bigint), 0)::bigint
             FROM journal
             WHERE event_type IN ('chat.completion.succeeded', 'chat.completion.failed')
               AND org_id IS NOT NULL
               AND (envelope->>'occurred_at')::timestamptz >= $1
               AND (envelope->>'occurred_at')::timestamptz < $2
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[&period.start, &period.end()],
        )
        .await?;
    let mut usage: BTreeMap<Uuid, Vec<InvoiceUsage>> = BTreeMap::new();
    for row in rows {
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        usage.entry(row.get(0)).or_default().push(InvoiceUsage {
            model: row.get::<_, Option<String>>(1).unwrap_or_default(),
            requests: count(2),
            prompt_tokens: count(3),
            completion_tokens: count(4),
            total_tokens: count(5),
            cost_micros: row.get(6),
        });
    }
    Ok(usage)
}

/// The last month that has been over for `grace` at `now`.
pub fn due_period(now: DateTime<Utc>, grace: Duration) -> Period {
    Period::of(now - chrono::Duration::from_std(grace).unwrap_or_default()).previous()
}

/// The scheduled job: once a period has been over for `grace` (late chat events are still being
/// appended right after midnight), close it. Every instance may run it; closing is idempotent.
pub async fn close_periods_when_due(
    journal: Journal,
    clock: platform::clock::Clock,
    every: Duration,
    grace: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let period = due_period(clock.now(), grace);
        let closed = journal
            .load(&period_stream_id(period))
            .await
            .map(|events| !events.is_empty());
        if let Ok(false) = closed {
            match close_period(&journal, period, clock.now(), |_, _| {}).await {
                Ok(report) => tracing::info!(
                    %period,
                    issued = report.issued,
                    already_issued = report.already_issued,
                    "billing period closed"
                ),
                Err(e) => {
                    tracing::warn!(%period, error = %e, "closing the billing period failed; retrying later")
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_due_once_its_grace_has_passed() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let hour = Duration::from_secs(3600);
        assert_eq!(
            due_period(at("2026-12-01T00:30:00Z"), hour).to_string(),
            "2026-10"
        );
        assert_eq!(
            due_period(at("2026-12-01T01:00:00Z"), hour).to_string(),
            "2026-11"
        );
        assert_eq!(
            due_period(at("2027-01-15T00:00:00Z"), hour).to_string(),
            "2026-12"
        );
        assert_eq!(
            due_period(at("2026-12-01T00:00:00Z"), Duration::ZERO).to_string(),
            "2026-11"
        );
    }
}
