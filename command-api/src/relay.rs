//! The outbox relay: publishes journal rows to the Kafka topic in journal order and marks them
//! published. Exactly one relay publishes at a time (a session advisory lock); the others wait
//! as standbys. It wakes on `NOTIFY aihub_journal` and also sweeps, so nothing committed is ever
//! left behind; a crash between publishing and marking publishes a row twice, which consumers
//! skip by `event_id`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use events::kafka::{cloudevents_headers, producer_config};
use events::{EventEnvelope, EventPayload};
use futures::StreamExt;
use platform::detached::Detached;
use platform::metrics;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// Arbitrary constant naming the relay's leadership lock.
const RELAY_LOCK: i64 = 0x6169_6875_625f_726c;
const BATCH: i64 = 500;

#[derive(Clone)]
pub struct RelayConfig {
    pub database: platform::db::Database,
    pub kafka: events::kafka::KafkaConnection,
    pub topic: String,
    pub message_timeout: Duration,
    pub sweep: Duration,
    /// How long after a publish the gateway's chat calls wait to be published (see the loop in
    /// `lead`); zero publishes every batch as it wakes the relay.
    pub linger: Duration,
}

/// The payload of the journal's NOTIFY for a transaction of chat calls only (migration 0032).
const CHAT_WAKE: &str = "chat";

/// Whether this process's relay is alive (leader or standby); `/readyz` reports it.
#[derive(Default)]
pub struct RelayStatus {
    pub running: AtomicBool,
    pub leader: AtomicBool,
}

pub async fn run(config: RelayConfig, status: Arc<RelayStatus>, shutdown: CancellationToken) {
    status.running.store(true, Ordering::SeqCst);
    metrics::RUNNING.with_label_values(&["relay"]).set(1);
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(&config, &status, &shutdown).await {
            tracing::warn!(error = %format!("{e:#}"), "relay stopped; retrying");
        }
        status.leader.store(false, Ordering::SeqCst);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    status.running.store(false, Ordering::SeqCst);
    metrics::RUNNING.with_label_values(&["relay"]).set(0);
}

/// Takes the lock (waiting as a standby while another process holds it), then publishes until
/// the connection fails or shutdown.
async fn lead(
    config: &RelayConfig,
    status: &RelayStatus,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let (client, mut connection) = config.database.dedicated().await?;
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    // Set by any wake-up that is not the gateway's chat calls only; taken with the wake. A flag
    // beside the channel, so a pending chat wake-up cannot swallow an urgent one.
    let urgent = Arc::new(AtomicBool::new(false));
    let urgent_set = urgent.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notice)) => {
                    if notice.payload() != CHAT_WAKE {
                        urgent_set.store(true, Ordering::SeqCst);
                    }
                    let _ = wake_tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
        Ok(())
    });
    let result = async {
        loop {
            let locked: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&RELAY_LOCK]).await?.get(0);
            if locked {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        status.leader.store(true, Ordering::SeqCst);
        tracing::info!("relay is the leader");
        // The outbox is a queue: its statistics are stale as soon as they are taken (a burst
        // adds 100,000 rows between two analyses), and plans made from them went wrong three
        // ways (issue 17): parallel workers started for a 500-row read; a scan of the whole
        // outbox and a sort, for rows its index gives in order; a walk of the whole journal.
        // This connection runs only the relay's statements, each a lookup by key: no parallel
        // workers, and a sequential scan or a sort only where nothing else can answer. Its
        // writes (rows leaving the outbox, keys marked published) need not wait for their WAL
        // flush: one lost in a database crash is published again, and consumers skip duplicates.
        client
            .batch_execute(
                "SET max_parallel_workers_per_gather = 0; SET enable_seqscan = off;
                 SET enable_sort = off; SET synchronous_commit = off; LISTEN aihub_journal",
            )
            .await?;
        let statements = Statements::prepare(&client).await?;
        let mut producer = Detached::new(new_producer(config)?);
        // Keys left pending by a restore, or by a leader that died between its two steps.
        if let Err(e) = publish_keys(&client, &producer, config).await {
            tracing::warn!(error = %format!("{e:#}"), "relay could not publish person keys; will retry");
        }
        loop {
            let published = tokio::time::Instant::now();
            match publish_batch(&client, &statements, &producer, config).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "relay could not publish; will retry");
                    // A failed idempotent producer may be fenced; start over with a fresh one.
                    // Destroying the old one waits on the broker: not on a runtime thread.
                    producer = Detached::new(new_producer(config)?);
                }
            }
            // Chat calls are published at most once a linger: at a moderate rate each of the
            // gateway's batches is a few calls, and every publish is a produce request, a fetch
            // answered to each projection and a read and a delete here. Any other append, a
            // command's that someone waits for, is published as soon as it wakes the relay.
            let sweep = tokio::time::sleep(config.sweep);
            tokio::pin!(sweep);
            let mut chat_waiting = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    // Not while chat calls wait: the linger bounds them, and a lost wake-up
                    // is what the sweep is for.
                    _ = &mut sweep, if !chat_waiting => break,
                    _ = tokio::time::sleep_until(published + config.linger), if chat_waiting => break,
                    _ = wake.recv() => {
                        if urgent.swap(false, Ordering::SeqCst) || config.linger.is_zero() {
                            break;
                        }
                        chat_waiting = true;
                    }
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}

fn new_producer(config: &RelayConfig) -> anyhow::Result<FutureProducer> {
    let mut client_config = producer_config(&config.kafka);
    client_config.set(
        "message.timeout.ms",
        config.message_timeout.as_millis().to_string(),
    );
    Ok(client_config.create()?)
}

/// The relay's two statements of every batch, prepared once per leadership: parsed and planned
/// once, and one round trip each instead of two.
struct Statements {
    read: tokio_postgres::Statement,
    delete: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(client: &tokio_postgres::Client) -> anyhow::Result<Self> {
        // The batch's positions are taken from the outbox in key order, and each one's
        // envelope looked up by key in a subquery of its own: whatever the statistics say, the
        // journal is never scanned. (Joined and limited at once, the planner walked the
        // journal's key from its very first row and probed the outbox for each — behind a burst,
        // with the unpublished rows at the journal's end, 350–570 ms a read on a bench's 285,000
        // rows, the database's largest cost in a run, and longer the longer the journal.)
        let read = client
            .prepare(
                "SELECT o.global_position,
                        (SELECT j.envelope::text FROM journal j WHERE j.global_position = o.global_position)
                 FROM (SELECT global_position FROM journal_outbox ORDER BY global_position LIMIT $1) o
                 ORDER BY o.global_position",
            )
            .await?;
        let delete = client
            .prepare("DELETE FROM journal_outbox WHERE global_position = ANY($1)")
            .await?;
        Ok(Self { read, delete })
    }
}

/// Publishes up to one batch of unpublished rows, in journal order, and marks the rows that were
/// acknowledged — only the unbroken prefix, so a later row is never marked before an earlier one.
async fn publish_batch(
    client: &tokio_postgres::Client,
    statements: &Statements,
    producer: &FutureProducer,
    config: &RelayConfig,
) -> anyhow::Result<usize> {
    let rows = client.query(&statements.read, &[&BATCH]).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut decoded = Vec::with_capacity(rows.len());
    let mut keys_first = false;
    for row in &rows {
        let position: i64 = row.get(0);
        let Some(text): Option<String> = row.get(1) else {
            // A position with no journal row (written by hand): nothing to publish, skipped as
            // a join would.
            tracing::warn!(position, "the outbox holds a position the journal does not");
            continue;
        };
        let mut event = EventEnvelope::decode(text.as_bytes())?;
        keys_first |= needs_keys(&mut event);
        decoded.push((position, event));
    }
    // A key reaches its topic before any event sealed under it, and a tombstone before the
    // erasure that made it: a restore from the topics never meets a sealed field without its
    // key, nor an erased person's key alive.
    if keys_first {
        publish_keys(client, producer, config).await?;
    }
    let mut positions = Vec::with_capacity(rows.len());
    let mut deliveries = Vec::with_capacity(rows.len());
    for (position, event) in &decoded {
        let position = *position;
        let payload = event.encode();
        let key = event.partition_key();
        let record = FutureRecord::to(&config.topic)
            .key(&key)
            .payload(&payload)
            .headers(cloudevents_headers(event))
            .timestamp(event.occurred_at.timestamp_millis());
        match producer.send_result(record) {
            Ok(delivery) => {
                positions.push(position);
                deliveries.push(delivery);
            }
            Err((e, _)) => {
                tracing::warn!(error = %e, "producer queue refused a message");
                break;
            }
        }
    }
    let outcomes = futures::future::join_all(deliveries).await;
    let delivered = outcomes
        .iter()
        .take_while(|o| matches!(o, Ok(Ok(_))))
        .count();
    let published = &positions[..delivered];
    if !published.is_empty() {
        client.execute(&statements.delete, &[&published]).await?;
    }
    metrics::EVENTS_PUBLISHED
        .with_label_values(&["published"])
        .inc_by(delivered as u64);
    if delivered < decoded.len() {
        let failed = decoded.len() - delivered;
        metrics::EVENTS_PUBLISHED
            .with_label_values(&["failed"])
            .inc_by(failed as u64);
        let reason = outcomes
            .iter()
            .find_map(|o| match o {
                Ok(Err((e, _))) => Some(e.to_string()),
                Err(_) => Some("producer dropped".to_string()),
                Ok(Ok(_)) => None,
            })
            .unwrap_or_else(|| "queue full".into());
        anyhow::bail!(
            "{failed} of {} events not acknowledged: {reason}",
            decoded.len()
        );
    }
    Ok(delivered)
}

/// Whether the event carries a sealed personal field or destroys keys.
fn needs_keys(event: &mut EventEnvelope) -> bool {
    matches!(event.payload, EventPayload::PersonErased(_)) || !event.sealed_key_ids().is_empty()
}

/// Publishes every person key whose state the keys topic lacks (wrapped, or a tombstone), and
/// marks them published once all were acknowledged.
async fn publish_keys(
    client: &tokio_postgres::Client,
    producer: &FutureProducer,
    config: &RelayConfig,
) -> anyhow::Result<()> {
    let topic = platform::personal::keys_topic(&config.topic);
    loop {
        let pending = platform::personal::pending_keys(client, BATCH).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut deliveries = Vec::with_capacity(pending.len());
        for key in &pending {
            let id = key.key_id.to_string();
            let value = key.record.as_ref().map(|r| r.wrap());
            let mut record = FutureRecord::<String, Vec<u8>>::to(&topic).key(&id);
            if let Some(value) = &value {
                record = record.payload(value);
            }
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => anyhow::bail!("the producer refused a person key: {e}"),
            }
        }
        for outcome in futures::future::join_all(deliveries).await {
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => anyhow::bail!("a person key was not acknowledged: {e}"),
                Err(_) => anyhow::bail!("a person key was not acknowledged: producer dropped"),
            }
        }
        platform::personal::mark_published(client, &pending).await?;
        if (pending.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
