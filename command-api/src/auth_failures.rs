//! Refused authentications become `auth.failed` events, aggregated per organization, reason and
//! presented key over a window, so a flood of bad requests costs a handful of journal rows. Every
//! attempt is still counted in `aihub_auth_failures_total`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::SecondsFormat;
use events::access::AuthFailed;
use events::{Actor, EventEnvelope, EventPayload};
use platform::auth::AuthFailure;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Journal;

/// Distinct (organization, reason, key) buckets kept per window; more are folded into one.
const MAX_BUCKETS: usize = 100;

type Bucket = (Option<Uuid>, &'static str, Option<String>);

pub async fn run(
    journal: Journal,
    mut failures: mpsc::Receiver<AuthFailure>,
    window: Duration,
    shutdown: CancellationToken,
) {
    let mut buckets: BTreeMap<Bucket, AuthFailed> = BTreeMap::new();
    let mut tick = tokio::time::interval(window);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                flush(&journal, &mut buckets).await;
                return;
            }
            _ = tick.tick() => flush(&journal, &mut buckets).await,
            failure = failures.recv() => match failure {
                Some(failure) => add(&mut buckets, failure),
                None => {
                    flush(&journal, &mut buckets).await;
                    return;
                }
            },
        }
    }
}

fn add(buckets: &mut BTreeMap<Bucket, AuthFailed>, failure: AuthFailure) {
    let at = failure.at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut key: Bucket = (failure.org_id, failure.reason, failure.public_id.clone());
    if !buckets.contains_key(&key) && buckets.len() >= MAX_BUCKETS {
        key = (None, "other", None);
    }
    let entry = buckets.entry(key.clone()).or_insert_with(|| AuthFailed {
        reason: key.1.to_string(),
        public_id: key.2.clone(),
        count: 0,
        first_at: at.clone(),
        last_at: at.clone(),
        sample_ip: failure.ip.clone(),
    });
    entry.count += 1;
    entry.last_at = at;
}

async fn flush(journal: &Journal, buckets: &mut BTreeMap<Bucket, AuthFailed>) {
    if buckets.is_empty() {
        return;
    }
    let events: Vec<EventEnvelope> = std::mem::take(buckets)
        .into_iter()
        .map(|((org_id, _, _), data)| {
            let id = Uuid::now_v7();
            let actor = Actor {
                kind: events::ActorType::System,
                id: "authenticator".into(),
                ip: data.sample_ip.clone(),
            };
            EventEnvelope::new(
                EventPayload::AuthFailed(data),
                org_id,
                events::StreamId::auth_failure(id),
                1,
                actor,
                format!("auth-failures-{id}"),
            )
        })
        .collect();
    if let Err(e) = journal.append(&events, &[]).await {
        tracing::warn!(error = %e, dropped = events.len(), "could not record authentication failures");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_folded_into_a_bounded_number_of_buckets() {
        let mut buckets = BTreeMap::new();
        for i in 0..10_000 {
            add(
                &mut buckets,
                AuthFailure {
                    reason: "unknown",
                    public_id: Some(format!("{i:016x}")),
                    org_id: None,
                    ip: None,
                    at: chrono::Utc::now(),
                },
            );
        }
        assert!(buckets.len() <= MAX_BUCKETS + 1);
        assert_eq!(buckets.values().map(|b| b.count).sum::<u64>(), 10_000);
    }
}
