//! The evaluator: every `AIHUB_ALERT_EVAL_MS` it computes each rule's metric over its window
//! and decides, without flapping, whether an alert fires or resolves.
//!
//! - **Fires** once the condition has held at every evaluation for the rule's `for_seconds`
//!   (at the first evaluation that sees it when `for_seconds` is 0).
//! - **Resolves** (hysteresis) once the condition has been clear at every evaluation for
//!   `for_seconds`, and at least at two evaluations in a row whatever `for_seconds` is: one
//!   good reading between two bad ones resolves nothing.
//! - One open alert per rule at most: `alert.triggered` takes the unique claim
//!   `alert.open/<rule id>` in the journal transaction that appends it, `alert.resolved`
//!   releases it, so neither a crash nor a second leader can open a second one.
//!
//! The window is read from the one-minute buckets: whole minutes from the one holding
//! `now - window_seconds` up to and including the current, still-filling one, so a call is
//! counted within a second of being projected.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use events::alerting::{
    AlertCondition, AlertResolved, AlertSeverity, AlertTriggered, NotificationChannel,
};
use events::{Actor, EventEnvelope, StreamId, StreamKind, Timestamp};
use platform::db::PgPool;
use read_api::monitoring::{builtin_metric, evaluate, Match};
use uuid::Uuid;

use super::aggregate::{Alert, AlertCommand, Status};
use crate::command::Aggregate;
use crate::journal::{Claim, JournalError};
use crate::Journal;

/// The claim an open alert holds on its rule.
pub const OPEN_SCOPE: &str = "alert.open";

pub struct Evaluator {
    pool: PgPool,
    journal: Journal,
}

/// A rule as the evaluator reads it.
#[derive(Debug, Clone)]
struct RuleRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    metric: String,
    filter: BTreeMap<String, String>,
    condition: AlertCondition,
    threshold: f64,
    window_seconds: i32,
    for_seconds: i32,
    severity: AlertSeverity,
    channels: Vec<NotificationChannel>,
    deleted: bool,
    breached_since: Option<DateTime<Utc>>,
    clear_since: Option<DateTime<Utc>>,
}

/// What one evaluation decides for a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Nothing,
    Trigger { breached_since: DateTime<Utc> },
    Resolve,
}

/// The rule's timers after an evaluation at `now`, and what to do: pure, unit-tested.
pub fn decide(
    open: bool,
    breached: bool,
    for_seconds: i64,
    breached_since: Option<DateTime<Utc>>,
    clear_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Decision) {
    let hold = Duration::seconds(for_seconds);
    match (open, breached) {
        (false, true) => {
            let since = breached_since.unwrap_or(now);
            if now - since >= hold {
                (
                    None,
                    None,
                    Decision::Trigger {
                        breached_since: since,
                    },
                )
            } else {
                (Some(since), None, Decision::Nothing)
            }
        }
        (false, false) => (None, None, Decision::Nothing),
        (true, true) => (None, None, Decision::Nothing),
        (true, false) => {
            let since = clear_since.unwrap_or(now);
            if since < now && now - since >= hold {
                (None, None, Decision::Resolve)
            } else {
                (None, Some(since), Decision::Nothing)
            }
        }
    }
}

fn minute(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp() - at.timestamp().rem_euclid(60), 0).unwrap_or(at)
}

impl Evaluator {
    pub fn new(pool: PgPool) -> Self {
        Self {
            journal: Journal::new(pool.clone()),
            pool,
        }
    }

    /// Evaluates every rule once.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let rules = self.rules().await?;
        for rule in rules {
            if let Err(e) = self.evaluate_rule(&rule).await {
                tracing::warn!(rule = %rule.id, error = %format!("{e:#}"), "could not evaluate an alert rule");
            }
        }
        Ok(())
    }

    async fn rules(&self) -> anyhow::Result<Vec<RuleRow>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT r.id, r.org_id, r.name, r.metric, r.filter, r.condition, r.threshold, r.window_seconds,
                        r.for_seconds, r.severity, r.channels, r.deleted, s.breached_since, s.clear_since,
                        sub.plan, sub.pending_plan, sub.pending_effective_at
                 FROM read.alert_rules r LEFT JOIN alert_evaluator_state s ON s.rule_id = r.id
                 LEFT JOIN read.subscriptions sub ON sub.org_id = r.org_id
                 WHERE (NOT r.deleted OR s.rule_id IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM read.organizations o
                                   WHERE o.id = r.org_id AND o.deleted_at IS NOT NULL)
                 ORDER BY r.id",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let parsed = (|| -> anyhow::Result<RuleRow> {
                Ok(RuleRow {
                    id: row.get("id"),
                    org_id: row.get("org_id"),
                    name: row.get("name"),
                    metric: row.get("metric"),
                    filter: serde_json::from_value(row.get("filter"))?,
                    condition: serde_json::from_value(serde_json::Value::String(
                        row.get("condition"),
                    ))?,
                    threshold: row.get("threshold"),
                    window_seconds: row.get("window_seconds"),
                    for_seconds: row.get("for_seconds"),
                    severity: serde_json::from_value(serde_json::Value::String(
                        row.get("severity"),
                    ))?,
                    channels: serde_json::from_value(row.get("channels"))?,
                    deleted: row.get("deleted"),
                    breached_since: row.get("breached_since"),
                    clear_since: row.get("clear_since"),
                })
            })();
            let plan = platform::auth::plan_at(
                row.get("org_id"),
                row.get("plan"),
                row.get("pending_plan"),
                row.get("pending_effective_at"),
                Utc::now(),
            );
            let deleted: bool = row.get("deleted");
            // An organization whose plan no longer has alerting keeps its rules, paused; a
            // deleted rule is still visited, to resolve its open alert.
            if !deleted && !plan.plan().features.contains(&"alerts") {
                continue;
            }
            match parsed {
                Ok(rule) => out.push(rule),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "unreadable alert rule; skipped")
                }
            }
        }
        Ok(out)
    }

    /// The alert the rule has open, if any.
    async fn open_alert(&self, rule: Uuid) -> anyhow::Result<Option<Uuid>> {
        let holder = self
            .journal
            .claim_holder(OPEN_SCOPE, &rule.to_string())
            .await?;
        Ok(holder
            .and_then(|s| s.parse::<StreamId>().ok())
            .and_then(|s| s.uuid_of(StreamKind::Alert)))
    }

    async fn evaluate_rule(&self, rule: &RuleRow) -> anyhow::Result<()> {
        let now = Utc::now();
        let open = self.open_alert(rule.id).await?;
        if rule.deleted {
            if let Some(alert) = open {
                self.resolve(rule, alert, None, "rule_deleted").await?;
            }
            let client = self.pool.get().await?;
            client
                .execute(
                    "DELETE FROM alert_evaluator_state WHERE rule_id = $1",
                    &[&rule.id],
                )
                .await?;
            return Ok(());
        }
        let from = minute(now - Duration::seconds(i64::from(rule.window_seconds)));
        let to = minute(now) + Duration::seconds(60);
        let value = if let Some(metric) = builtin_metric(&rule.metric) {
            let filter: Vec<Match> = rule
                .filter
                .iter()
                .filter_map(|(d, v)| {
                    api::monitoring::Dimension::parse(d).map(|dimension| Match {
                        dimension,
                        value: v.clone(),
                    })
                })
                .collect();
            let client = self.pool.get().await?;
            evaluate(&client, rule.org_id, metric, &filter, from, to).await?
        } else if let Ok(id) = rule.metric.parse::<Uuid>() {
            // A custom metric of the organization's (a meter, or pushed points); one deleted
            // since reads as no data.
            let filter: Vec<(String, String)> = rule
                .filter
                .iter()
                .map(|(d, v)| (d.clone(), v.clone()))
                .collect();
            let client = self.pool.get().await?;
            read_api::custom_metrics::evaluate(&client, rule.org_id, id, &filter, from, to).await?
        } else {
            return Ok(());
        };
        let breached = rule.condition.breached(value, rule.threshold);
        let (breached_since, clear_since, decision) = decide(
            open.is_some(),
            breached,
            i64::from(rule.for_seconds),
            rule.breached_since,
            rule.clear_since,
            now,
        );
        match (decision, open) {
            (Decision::Trigger { breached_since }, _) => {
                self.trigger(rule, value, breached_since).await?
            }
            (Decision::Resolve, Some(alert)) => {
                self.resolve(rule, alert, value, "recovered").await?
            }
            _ => {}
        }
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO alert_evaluator_state (rule_id, breached_since, clear_since, last_value, evaluated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (rule_id) DO UPDATE SET breached_since = $2, clear_since = $3, last_value = $4,
                     evaluated_at = $5",
                &[&rule.id, &breached_since, &clear_since, &value, &now],
            )
            .await?;
        Ok(())
    }

    async fn trigger(
        &self,
        rule: &RuleRow,
        value: Option<f64>,
        breached_since: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let alert_id = Uuid::now_v7();
        let triggered = AlertTriggered {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            metric: rule.metric.clone(),
            filter: rule.filter.clone(),
            condition: rule.condition,
            threshold: rule.threshold,
            window_seconds: rule.window_seconds as u32,
            for_seconds: rule.for_seconds as u32,
            severity: rule.severity,
            value,
            breached_since: Timestamp(breached_since),
            channels: rule.channels.clone(),
        };
        let payloads = Alert::default()
            .decide(AlertCommand::Trigger(triggered))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let stream = StreamId::alert(alert_id);
        let events: Vec<EventEnvelope> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                EventEnvelope::new(
                    p,
                    Some(rule.org_id),
                    stream.clone(),
                    i as i64 + 1,
                    Actor::system(),
                    correlation(alert_id),
                )
            })
            .collect();
        let claim = Claim::Take {
            scope: OPEN_SCOPE,
            value: rule.id.to_string(),
        };
        match self
            .journal
            .append(&events, &[(claim, stream.to_string())])
            .await
        {
            Ok(()) => {
                tracing::info!(rule = %rule.id, alert = %alert_id, ?value, "alert triggered");
                Ok(())
            }
            // Another evaluation opened one meanwhile.
            Err(JournalError::ClaimTaken { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn resolve(
        &self,
        rule: &RuleRow,
        alert_id: Uuid,
        value: Option<f64>,
        reason: &str,
    ) -> anyhow::Result<()> {
        let stream = StreamId::alert(alert_id);
        let history = self.journal.load(&stream).await?;
        let version = history.last().map_or(0, |e| e.stream_version);
        let alert = history.iter().fold(Alert::default(), Aggregate::apply);
        let release = Claim::Release {
            scope: OPEN_SCOPE,
            value: rule.id.to_string(),
        };
        if alert.status == Status::Resolved || alert.status == Status::None {
            // A claim left behind: let it go.
            drop(release);
            let client = self.pool.get().await?;
            client
                .execute(
                    "DELETE FROM journal_unique_claims WHERE scope = $1 AND value = $2 AND stream_id = $3",
                    &[&OPEN_SCOPE, &rule.id.to_string(), &stream.to_string()],
                )
                .await?;
            return Ok(());
        }
        let payloads = alert
            .decide(AlertCommand::Resolve(AlertResolved {
                rule_id: rule.id,
                value,
                reason: reason.to_string(),
                channels: rule.channels.clone(),
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let events: Vec<EventEnvelope> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                EventEnvelope::new(
                    p,
                    Some(rule.org_id),
                    stream.clone(),
                    version + 1 + i as i64,
                    Actor::system(),
                    correlation(alert_id),
                )
            })
            .collect();
        match self
            .journal
            .append(&events, &[(release, stream.to_string())])
            .await
        {
            Ok(()) => {
                tracing::info!(rule = %rule.id, alert = %alert_id, ?value, reason, "alert resolved");
                Ok(())
            }
            // Acknowledged meanwhile: the next evaluation resolves it.
            Err(JournalError::VersionConflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Every event the platform writes about one alert (triggered, resolved, each notification
/// attempt) carries this correlation id.
pub fn correlation(alert_id: Uuid) -> String {
    format!("alert-{alert_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    #[test]
    fn fires_only_after_the_condition_held_for_its_duration() {
        let (b, c, d) = decide(false, true, 30, None, None, at(0));
        assert_eq!((b, c, d), (Some(at(0)), None, Decision::Nothing));
        let (b, _, d) = decide(false, true, 30, Some(at(0)), None, at(20));
        assert_eq!((b, d), (Some(at(0)), Decision::Nothing));
        let (_, _, d) = decide(false, true, 30, Some(at(0)), None, at(30));
        assert_eq!(
            d,
            Decision::Trigger {
                breached_since: at(0)
            }
        );
        // A clear reading in between starts the count again.
        let (b, _, d) = decide(false, false, 30, Some(at(0)), None, at(25));
        assert_eq!((b, d), (None, Decision::Nothing));
    }

    #[test]
    fn with_no_duration_it_fires_at_once_but_resolves_only_after_two_clear_readings() {
        let (_, _, d) = decide(false, true, 0, None, None, at(0));
        assert!(matches!(d, Decision::Trigger { .. }));
        let (_, c, d) = decide(true, false, 0, None, None, at(10));
        assert_eq!((c, d), (Some(at(10)), Decision::Nothing));
        let (_, _, d) = decide(true, false, 0, None, Some(at(10)), at(20));
        assert_eq!(d, Decision::Resolve);
    }

    #[test]
    fn a_bad_reading_while_recovering_keeps_the_alert_open() {
        let (_, c, d) = decide(true, false, 60, None, None, at(0));
        assert_eq!((c, d), (Some(at(0)), Decision::Nothing));
        let (_, c, d) = decide(true, true, 60, None, Some(at(0)), at(30));
        assert_eq!((c, d), (None, Decision::Nothing));
        let (_, c, d) = decide(true, false, 60, None, None, at(40));
        assert_eq!((c, d), (Some(at(40)), Decision::Nothing));
        let (_, _, d) = decide(true, false, 60, None, Some(at(40)), at(100));
        assert_eq!(d, Decision::Resolve);
    }
}
