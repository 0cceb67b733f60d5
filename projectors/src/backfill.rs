//! Back-filling a new meter from the first event. Our topic keeps every event, so a meter defined
//! today also counts what happened before it: a consumer of its own (no group, partitions
//! assigned from the beginning) reads up to the meter's `metric.defined` event — every event of
//! one organization is on one partition, in order, and the live projection counts exactly those
//! after that event — and writes through the same fold as the live projection.
//!
//! Each chunk is one transaction: the definition row locked (a meter deleted meanwhile stops the
//! back-fill), the chunk's event ids marked in `read.meter_backfill_applied` (a duplicate
//! publication, or a back-fill resumed after a crash, counts nothing twice), the contributions,
//! and the progress (`backfill_events_done`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use events::kafka::consumer_config;
use events::monitoring::{Aggregation, MeterSpec};
use events::EventEnvelope;
use platform::db::PgPool;
use platform::detached::Detached;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::projections::custom_metrics::{self, Contribution, Definition};
use crate::runner::ProjectorConfig;

/// Events per transaction.
const CHUNK: usize = 1_000;

/// A meter waiting for (or in) its back-fill.
#[derive(Debug, Clone)]
struct Pending {
    meter: Definition,
    defined_event: Uuid,
}

async fn pending(pool: &PgPool) -> anyhow::Result<Vec<Pending>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT metric_id, org_id, aggregation, meter, defined_event FROM read.custom_metrics
             WHERE backfill_status IN ('pending', 'running') ORDER BY defined_at, metric_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let meter: MeterSpec = serde_json::from_value(row.get(3)).ok()?;
            Some(Pending {
                meter: Definition {
                    metric_id: row.get(0),
                    org_id: row.get(1),
                    kind: events::monitoring::CustomMetricKind::Meter,
                    aggregation: Aggregation::parse(row.get::<_, &str>(2))?,
                    meter: Some(meter),
                },
                defined_event: row.get(4),
            })
        })
        .collect())
}

/// Back-fills every meter that still needs it, one after another; returns how many it finished.
/// `aihub replay --projection metrics` calls it once the rebuild reached the end, so the rebuilt
/// tables are whole when it returns; the projectors' leader calls it every second.
pub async fn run_pending(
    pool: &PgPool,
    config: &ProjectorConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<usize> {
    let mut done = 0;
    for meter in pending(pool).await? {
        if shutdown.is_cancelled() {
            break;
        }
        if backfill(pool, config, &meter, shutdown).await? {
            done += 1;
        }
    }
    Ok(done)
}

/// Back-fills one meter; false when it stopped before the end (shutdown, or the meter is gone).
async fn backfill(
    pool: &PgPool,
    config: &ProjectorConfig,
    pending: &Pending,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let metric_id = pending.meter.metric_id;
    let org_key = pending.meter.org_id.to_string();
    {
        let client = pool.get().await?;
        client
            .execute(
                "UPDATE read.custom_metrics SET backfill_status = 'running'
                 WHERE metric_id = $1 AND backfill_status = 'pending'",
                &[&metric_id],
            )
            .await?;
    }
    let ends = crate::replay::end_offsets(&config.kafka, &config.topic).await?;
    let group = format!("{}.backfill-{metric_id}", config.group_prefix);
    let consumer = Detached::new(
        consumer_config(&config.kafka, &group)
            .create::<StreamConsumer>()
            .context("creating the back-fill consumer")?,
    );
    let mut open: HashMap<i32, i64> = ends.into_iter().filter(|(_, end)| *end > 0).collect();
    let mut assignment = TopicPartitionList::new();
    for partition in open.keys() {
        assignment.add_partition_offset(&config.topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut chunk: Vec<EventEnvelope> = Vec::new();
    let mut reached = false;
    let finished = loop {
        if open.is_empty() || reached {
            break true;
        }
        let message = tokio::select! {
            _ = shutdown.cancelled() => break false,
            m = tokio::time::timeout(Duration::from_secs(1), consumer.recv()) => m,
        };
        let message = match message {
            Err(_) => continue,
            Ok(Err(e)) => {
                tracing::warn!(metric_id = %metric_id, error = %e, "back-fill consumer error; waiting for the broker");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Ok(Ok(m)) => m,
        };
        let partition = message.partition();
        let Some(end) = open.get(&partition).copied() else {
            continue;
        };
        if message.offset() + 1 >= end {
            open.remove(&partition);
        }
        if message.offset() >= end || message.key() != Some(org_key.as_bytes()) {
            continue;
        }
        let Some(Ok(event)) = message.payload().map(EventEnvelope::decode) else {
            continue;
        };
        if event.event_id == pending.defined_event {
            reached = true;
            continue;
        }
        chunk.push(event);
        if chunk.len() >= CHUNK && !flush(pool, &pending.meter, &std::mem::take(&mut chunk)).await?
        {
            break false;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), consumer.close()).await;
    if !finished || !flush(pool, &pending.meter, &chunk).await? {
        return Ok(false);
    }
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE read.custom_metrics SET backfill_status = 'done' WHERE metric_id = $1",
            &[&metric_id],
        )
        .await?;
    tracing::info!(metric_id = %metric_id, "meter back-filled");
    Ok(true)
}

/// Counts a chunk's events for the meter in one transaction; false when the meter is gone.
async fn flush(
    pool: &PgPool,
    meter: &Definition,
    events: &[EventEnvelope],
) -> anyhow::Result<bool> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The metric's lock first, as the live fold takes it before it deletes a definition.
    tx.execute(custom_metrics::LOCK, &[&vec![meter.metric_id]])
        .await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM read.custom_metrics WHERE metric_id = $1 FOR UPDATE",
            &[&meter.metric_id],
        )
        .await?
        .is_some();
    if !exists {
        return Ok(false);
    }
    let mut counted: Vec<(Uuid, Contribution)> = Vec::new();
    for event in events {
        let data = custom_metrics::event_data(event);
        if let Some(c) = custom_metrics::meter_contribution(meter, event, &data) {
            counted.push((event.event_id, c));
        }
    }
    if counted.is_empty() {
        tx.commit().await?;
        return Ok(true);
    }
    let ids: Vec<Uuid> = counted.iter().map(|(id, _)| *id).collect();
    let fresh: std::collections::HashSet<Uuid> = tx
        .query(
            "INSERT INTO read.meter_backfill_applied (metric_id, event_id)
             SELECT $1, id FROM unnest($2::uuid[]) AS id ON CONFLICT DO NOTHING RETURNING event_id",
            &[&meter.metric_id, &ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let new: Vec<Contribution> = counted
        .into_iter()
        .filter(|(id, _)| fresh.contains(id) && seen.insert(*id))
        .map(|(_, c)| c)
        .collect();
    custom_metrics::write(&tx, &new).await?;
    let n = i64::try_from(new.len()).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE read.custom_metrics SET backfill_events_done = backfill_events_done + $2 WHERE metric_id = $1",
        &[&meter.metric_id, &n],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
