//! The consumer loop of one projection. Offsets live in Postgres (`projector_offsets`) and are
//! written in the same transaction as the read-model changes; Kafka's committed offsets are only
//! a hint for where to start fetching. A message whose offset does not follow the stored one is
//! never applied: the consumer seeks to the stored offset instead, so a restart, a rebalance or a
//! rebuild all converge on "every event exactly once".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use events::kafka::consumer_config;
use events::EventEnvelope;
use futures::FutureExt;
use platform::db::PgPool;
use platform::detached::Detached;
use platform::metrics;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use crate::Projection;

const MAX_BATCH: usize = 2000;
/// How often a projection tells Kafka where it is (a hint for where to start fetching after a
/// restart; Postgres's stored offsets are the truth). After every batch, at 1,000 calls/s, the
/// commits of six projections kept the broker's group coordinator busy for nothing: a hint a
/// second old costs a restart at most a second of messages fetched again and skipped.
const HINT_EVERY: Duration = Duration::from_secs(1);
/// Event ids per NOTIFY payload, well under Postgres's 8000-byte limit.
const IDS_PER_NOTIFY: usize = 150;

#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    pub kafka: events::kafka::KafkaConnection,
    pub topic: String,
    pub group_prefix: String,
    /// How long a batch of chat calls only waits for more before it is applied (see
    /// [`nobody_waits`]); zero applies every batch as it comes. A rebuild never lingers.
    pub linger: Duration,
}

/// Which projections run in this process; `/readyz` reports it.
#[derive(Default)]
pub struct ProjectorStatus {
    running: std::sync::Mutex<HashMap<&'static str, Arc<AtomicBool>>>,
}

impl ProjectorStatus {
    fn flag(&self, name: &'static str) -> Arc<AtomicBool> {
        let mut map = self.running.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name).or_default().clone()
    }

    /// Names of the projections registered in this process that are not running.
    pub fn stopped(&self) -> Vec<&'static str> {
        let map = self.running.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, up)| !up.load(Ordering::SeqCst))
            .map(|(n, _)| *n)
            .collect()
    }

    pub fn any(&self) -> bool {
        !self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// An event this build cannot read (not JSON, an unknown type, a newer schema version). The
/// projection stops before it and tries again every [`UNREADABLE_RETRY`]: a build that reads it
/// resumes from it; nothing after it on its partition is applied meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("the event at partition {partition}, offset {offset} cannot be read: {error}")]
pub struct Unreadable {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
}

/// How long a projection stopped at an unreadable event waits before it looks again.
const UNREADABLE_RETRY: Duration = Duration::from_secs(30);

/// Runs a projection until `shutdown`, restarting its consumer after failures.
pub async fn run(
    projection: Arc<dyn Projection>,
    pool: PgPool,
    config: ProjectorConfig,
    status: Arc<ProjectorStatus>,
    shutdown: CancellationToken,
) {
    let flag = status.flag(projection.name());
    let group = format!("{}.{}", config.group_prefix, projection.name());
    while !shutdown.is_cancelled() {
        flag.store(true, Ordering::SeqCst);
        metrics::RUNNING
            .with_label_values(&[projection.name()])
            .set(1);
        let result = consume(projection.as_ref(), &pool, &config, &group, &shutdown, None)
            .await
            .map(drop);
        flag.store(false, Ordering::SeqCst);
        metrics::RUNNING
            .with_label_values(&[projection.name()])
            .set(0);
        if let Err(e) = result {
            let wait = match e.downcast_ref::<Unreadable>() {
                Some(stop) => {
                    tracing::error!(
                        projection = projection.name(),
                        partition = stop.partition,
                        offset = stop.offset,
                        error = %stop.error,
                        "PROJECTION STOPPED at an event it cannot read; nothing after it on this partition is applied until a build that reads it runs"
                    );
                    UNREADABLE_RETRY
                }
                None => {
                    tracing::warn!(projection = projection.name(), error = %format!("{e:#}"), "projector failed; restarting");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Consumes until `shutdown`, or — with `until` — until every partition's stored offset reached
/// the given end offsets (a rebuild). Returns how many events it applied.
pub(crate) async fn consume(
    projection: &dyn Projection,
    pool: &PgPool,
    config: &ProjectorConfig,
    group: &str,
    shutdown: &CancellationToken,
    until: Option<&HashMap<i32, i64>>,
) -> anyhow::Result<u64> {
    // Destroyed off the runtime even when this future is dropped midway (a runtime shutting
    // down): closing talks to the broker, which may be gone.
    let consumer = Detached::new(
        consumer_config(&config.kafka, group)
            .create::<StreamConsumer>()
            .context("creating the consumer")?,
    );
    let result = match consumer.subscribe(&[&config.topic]) {
        Ok(()) => consume_with(&consumer, projection, pool, config, shutdown, until).await,
        Err(e) => Err(e).context("subscribing to the topic"),
    };
    // Wait a bounded time so a clean stop leaves the group before returning.
    let _ = tokio::time::timeout(Duration::from_secs(10), consumer.close()).await;
    result
}

async fn consume_with(
    consumer: &StreamConsumer,
    projection: &dyn Projection,
    pool: &PgPool,
    config: &ProjectorConfig,
    shutdown: &CancellationToken,
    until: Option<&HashMap<i32, i64>>,
) -> anyhow::Result<u64> {
    let mut worker = Worker {
        projection,
        pool,
        topic: &config.topic,
        consumer,
        rewound: HashSet::new(),
        applied: 0,
        hint: BTreeMap::new(),
        hinted: std::time::Instant::now(),
    };
    if let Some(until) = until {
        if worker.caught_up(until).await? {
            return Ok(worker.applied);
        }
    }
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(worker.applied),
            _ = tokio::time::sleep(Duration::from_millis(500)), if until.is_some() => None,
            message = consumer.recv() => match message {
                Ok(message) => Some(message.detach()),
                Err(e) => {
                    // Broker trouble surfaces here; librdkafka reconnects by itself.
                    tracing::warn!(projection = projection.name(), error = %e, "consumer error; waiting for the broker");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    None
                }
            },
        };
        let mut batch: Vec<OwnedMessage> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.push(message.detach()),
                Some(Err(_)) | None => break,
            }
        }
        // A batch of chat calls only waits a little for more: at a moderate rate each batch is
        // a few calls, and the transaction around it (six projections' commits, each a WAL
        // flush) cost the database more than the calls' rows. Anything else cuts it short.
        if until.is_none()
            && !config.linger.is_zero()
            && !batch.is_empty()
            && batch.iter().all(nobody_waits)
        {
            let deadline = tokio::time::Instant::now() + config.linger;
            while batch.len() < MAX_BATCH {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    message = tokio::time::timeout_at(deadline, consumer.recv()) => message,
                };
                match message {
                    Ok(Ok(message)) => {
                        let message = message.detach();
                        let waited_for = !nobody_waits(&message);
                        batch.push(message);
                        if waited_for {
                            break;
                        }
                    }
                    // The deadline, or broker trouble (the next recv reports it).
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        }
        let mut by_partition: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
        for message in batch {
            by_partition
                .entry(message.partition())
                .or_default()
                .push(message);
        }
        if !by_partition.is_empty() {
            worker.apply(by_partition).await?;
        }
        if let Some(until) = until {
            if worker.caught_up(until).await? {
                return Ok(worker.applied);
            }
        }
    }
}

/// Whether nobody waits for this message to be projected: a chat call (by its `ce_type`
/// header), which the gateway appends and never waits on. Commands wait for their events
/// (read-your-writes), so anything else — or a message without the header — is applied at once.
fn nobody_waits(message: &OwnedMessage) -> bool {
    event_type(message).is_some_and(events::chat::is_call)
}

/// The message's event type, from its `ce_type` header, without decoding the payload.
fn event_type(message: &OwnedMessage) -> Option<&str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == "ce_type")
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A statement is sent at its future's first poll: poll each once, in order, so Postgres runs
/// them in event order while their answers are awaited together.
fn send_in_order(
    pending: &mut [futures::future::BoxFuture<'_, anyhow::Result<u64>>],
) -> anyhow::Result<()> {
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    for future in pending {
        match future.poll_unpin(&mut cx) {
            Poll::Pending => {}
            Poll::Ready(Err(e)) => return Err(e),
            // Never polled again once done: keep its answer in a ready future instead.
            Poll::Ready(Ok(rows)) => *future = futures::future::ready(Ok(rows)).boxed(),
        }
    }
    Ok(())
}

struct Worker<'a> {
    projection: &'a dyn Projection,
    pool: &'a PgPool,
    topic: &'a str,
    consumer: &'a StreamConsumer,
    /// Partitions just sought to their beginning: their first message is accepted as the start.
    rewound: HashSet<i32>,
    /// Events applied so far (committed).
    applied: u64,
    /// Next offsets stored in Postgres since the last hint to Kafka, and when that was.
    hint: BTreeMap<i32, i64>,
    hinted: std::time::Instant,
}

impl Worker<'_> {
    /// Applies a batch, every partition of it in one transaction: the stored offsets of all its
    /// partitions are read (and locked) in one statement, the fresh events of all of them
    /// applied together, and every partition's next offset written in one statement. A
    /// partition whose first message does not follow its stored offset takes no part: the
    /// consumer seeks it instead. An unreadable event stops its own partition there (what came
    /// before it is applied and committed) and is reported after the commit.
    async fn apply(
        &mut self,
        by_partition: BTreeMap<i32, Vec<OwnedMessage>>,
    ) -> anyhow::Result<()> {
        let name = self.projection.name();
        let mut client = self.pool.get().await.context("connecting to Postgres")?;
        let tx = client.transaction().await?;
        // A read model is derived from the topic: a commit lost in a database crash takes its
        // stored offsets with it, and the batch is applied again from Kafka. So the commit does
        // not wait for its WAL flush (the WAL writer flushes it within 200 ms), and neither does
        // this projection.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        let partitions: Vec<i32> = by_partition.keys().copied().collect();
        // Every statement of a batch is prepared once per connection (`prepare_cached`): parsed
        // and planned once, and one round trip instead of two. Unprepared, parsing and planning
        // the bookkeeping's statements were a quarter of the database's CPU at 1,000 calls/s.
        let read_offsets = tx
            .prepare_cached(
                "SELECT partition, next_offset FROM projector_offsets
                 WHERE projection = $1 AND topic = $2 AND partition = ANY($3) ORDER BY partition FOR UPDATE",
            )
            .await?;
        let stored: HashMap<i32, i64> = tx
            .query(&read_offsets, &[&name, &self.topic, &partitions])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();

        let mut events = Vec::new();
        let mut next_offsets: Vec<(i32, i64)> = Vec::with_capacity(by_partition.len());
        let mut unreadable = None;
        for (partition, messages) in &by_partition {
            let partition = *partition;
            let first_offset = messages.first().map(Message::offset).unwrap_or_default();
            let expected = match stored.get(&partition) {
                Some(next) => *next,
                None if self.rewound.contains(&partition) => first_offset,
                None => 0,
            };
            let fresh: Vec<&OwnedMessage> =
                messages.iter().filter(|m| m.offset() >= expected).collect();
            match fresh.first() {
                None => {
                    // Everything here was applied already; jump ahead rather than re-read the rest.
                    self.seek(partition, expected);
                    continue;
                }
                Some(m) if m.offset() != expected => {
                    if stored.contains_key(&partition) {
                        self.seek(partition, expected);
                    } else {
                        self.rewound.insert(partition);
                        self.seek_beginning(partition);
                    }
                    continue;
                }
                Some(_) => {}
            }
            self.rewound.remove(&partition);
            let mut next = fresh.last().map_or(expected, |m| m.offset() + 1);
            for message in fresh {
                if !self.handles(message) {
                    continue;
                }
                match message.payload().map(EventEnvelope::decode) {
                    Some(Ok(event)) => events.push(event),
                    Some(Err(e)) => {
                        // Never skipped: what came before it is applied and committed, and the
                        // partition stops here until a build that reads it is deployed.
                        metrics::EVENTS_PROJECTED
                            .with_label_values(&[name, "unreadable"])
                            .inc();
                        next = message.offset();
                        unreadable.get_or_insert(Unreadable {
                            partition,
                            offset: message.offset(),
                            error: e.to_string(),
                        });
                        break;
                    }
                    // A message without a payload carries no event (a tombstone): nothing to apply.
                    None => {}
                }
            }
            next_offsets.push((partition, next));
        }
        if next_offsets.is_empty() {
            return Ok(());
        }
        if self.projection.opens_personal_data() {
            let pg: &tokio_postgres::Transaction<'_> = &tx;
            platform::personal::open(pg, &mut events).await?;
        }
        let applied = self.apply_events(&tx, &events).await?;
        let (written, offsets): (Vec<i32>, Vec<i64>) = next_offsets.iter().copied().unzip();
        let store_offsets = tx
            .prepare_cached(
                "INSERT INTO projector_offsets (projection, topic, partition, next_offset, updated_at)
                 SELECT $1, $2, p, o, now() FROM unnest($3::int[], $4::bigint[]) AS t(p, o)
                 ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            )
            .await?;
        tx.execute(&store_offsets, &[&name, &self.topic, &written, &offsets])
            .await?;
        // Only what a command may wait for: the gateway's chat events are appended by the
        // gateway, which never waits, and at its rate their ids would flood every process's
        // listener (and serialize commits on the notification queue) for nothing.
        let chat: HashSet<uuid::Uuid> = events
            .iter()
            .filter(|e| e.stream_id.kind() == Some(events::StreamKind::Chat))
            .map(|e| e.event_id)
            .collect();
        let waited: Vec<&uuid::Uuid> = applied.iter().filter(|id| !chat.contains(id)).collect();
        for chunk in waited.chunks(IDS_PER_NOTIFY) {
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let payload = format!("{name}:{}", ids.join(","));
            tx.execute("SELECT pg_notify('aihub_projected', $1)", &[&payload])
                .await?;
        }
        tx.commit().await?;
        self.applied += applied.len() as u64;
        metrics::PROJECTOR_BATCHES.with_label_values(&[name]).inc();
        metrics::EVENTS_PROJECTED
            .with_label_values(&[name, "applied"])
            .inc_by(applied.len() as u64);

        // A hint for the next start; Postgres stays the truth.
        for (partition, next) in &next_offsets {
            self.hint.insert(*partition, *next);
        }
        if self.hinted.elapsed() >= HINT_EVERY {
            let mut tpl = TopicPartitionList::new();
            for (partition, next) in &self.hint {
                let _ = tpl.add_partition_offset(self.topic, *partition, Offset::Offset(*next));
            }
            let _ = self.consumer.commit(&tpl, CommitMode::Async);
            self.hint.clear();
            self.hinted = std::time::Instant::now();
        }
        match unreadable {
            Some(stop) => Err(stop.into()),
            None => Ok(()),
        }
    }

    /// Applies the events that were never applied before, in order, in two round trips however
    /// many there are: one marks them all in `projector_applied` (a duplicate `event_id`, which
    /// the relay may publish twice, is not returned and so skipped), one sends every statement
    /// pipelined. Events of a type the projection does not mark (`Projection::marks`) are
    /// applied again if they come again, which their idempotent writes make harmless. Returns
    /// the ids it applied.
    async fn apply_events(
        &self,
        tx: &platform::db::Transaction<'_>,
        events: &[EventEnvelope],
    ) -> anyhow::Result<Vec<uuid::Uuid>> {
        let name = self.projection.name();
        let marked: Vec<bool> = events
            .iter()
            .map(|e| self.projection.marks(e.event_type()))
            .collect();
        let ids: Vec<uuid::Uuid> = events
            .iter()
            .zip(&marked)
            .filter(|(_, marked)| **marked)
            .map(|(e, _)| e.event_id)
            .collect();
        let mut first_time: HashSet<uuid::Uuid> = if ids.is_empty() {
            HashSet::new()
        } else {
            let mark = tx
                .prepare_cached(
                    "INSERT INTO projector_applied (projection, event_id)
                     SELECT $1, id FROM unnest($2::uuid[]) AS id
                     ON CONFLICT DO NOTHING RETURNING event_id",
                )
                .await?;
            tx.query(&mark, &[&name, &ids])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect()
        };
        // Events the projection does not mark: their writes are idempotent by event id, so only
        // a second copy within this batch is skipped here.
        let mut unmarked_seen: HashSet<uuid::Uuid> = HashSet::new();
        let mut applied = Vec::with_capacity(events.len());
        let mut new_events = Vec::with_capacity(events.len());
        let mut statements = Vec::new();
        for (event, marked) in events.iter().zip(marked) {
            // `remove`: an id twice in one batch is applied once.
            let fresh = if marked {
                first_time.remove(&event.event_id)
            } else {
                unmarked_seen.insert(event.event_id)
            };
            if !fresh {
                metrics::EVENTS_PROJECTED
                    .with_label_values(&[name, "duplicate"])
                    .inc();
                continue;
            }
            for sql in self.projection.statements(event) {
                statements.push((event, tx.prepare_cached(sql.text).await?, sql));
            }
            applied.push(event.event_id);
            new_events.push(event);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
            .iter()
            .map(|(_, _, sql)| {
                sql.params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let mut pending: Vec<_> = statements
            .iter()
            .zip(&params)
            .map(|((event, statement, _), params)| {
                async move {
                    tx.execute(statement, params).await.with_context(|| {
                        format!("{name} applying {} {}", event.event_type(), event.event_id)
                    })
                }
                .boxed()
            })
            .collect();
        send_in_order(&mut pending)?;
        futures::future::try_join_all(pending).await?;
        if let Some(fold) = self.projection.fold() {
            fold.apply(tx, &new_events)
                .await
                .with_context(|| format!("{name} folding {} events", new_events.len()))?;
        }
        Ok(applied)
    }

    /// False only for a message whose `ce_type` header names a type the projection ignores; a
    /// message without the header is decoded and offered as ever.
    fn handles(&self, message: &OwnedMessage) -> bool {
        event_type(message).is_none_or(|event_type| self.projection.handles(event_type))
    }

    fn seek(&self, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.seek(
            self.topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            tracing::warn!(projection = self.projection.name(), partition, offset, error = %e, "seek failed");
        }
    }

    fn seek_beginning(&self, partition: i32) {
        if let Err(e) = self.consumer.seek(
            self.topic,
            partition,
            Offset::Beginning,
            Duration::from_secs(5),
        ) {
            tracing::warn!(projection = self.projection.name(), partition, error = %e, "seek to beginning failed");
        }
    }

    async fn caught_up(&self, until: &HashMap<i32, i64>) -> anyhow::Result<bool> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT partition, next_offset FROM projector_offsets WHERE projection = $1 AND topic = $2",
                &[&self.projection.name(), &self.topic],
            )
            .await?;
        let stored: HashMap<i32, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(until
            .iter()
            .all(|(p, end)| *end == 0 || stored.get(p).is_some_and(|next| next >= end)))
    }
}
