//! `aihub backup` and `aihub restore`: a consistent dump of the write side, and two ways back.
//!
//! The write side is the journal and the few tables written in the journal's transactions
//! ([`WRITE_SIDE`]); everything else (the read models, the projectors' offsets) is rebuilt from
//! the topic by replay. A backup is a directory: one CSV file per table, written by `COPY` inside
//! one `REPEATABLE READ` transaction (so every table is of the same instant), and a
//! `manifest.json` naming the journal position, the migrations, each table's columns, rows and
//! SHA-256, and a checksum over all of it.
//!
//! `restore --from DIR` checks every checksum before it writes anything, applies the migrations
//! to an empty database, loads the tables, then appends what the topic holds beyond the dump (the
//! events committed after the backup), and replays the read models. `restore --from-topic`
//! rebuilds the journal from the topic alone, because the topic keeps every event forever: the
//! log is the last backup. The tables written beside the journal are derived from its events,
//! the way the commands wrote them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use events::{EventEnvelope, EventPayload};
use futures::{SinkExt, StreamExt};
use platform::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The tables a backup holds, in the order they are restored: what the platform decided, and
/// cannot rebuild from anywhere but the topic. `rate_windows` (a minute of counts) and
/// `quota_reservations` (calls in flight) are not state worth keeping.
pub const WRITE_SIDE: &[&str] = &[
    "journal",
    // After the journal: the journal's rows enqueue themselves as they are loaded, and the
    // dump's outbox then says which of them were still unpublished.
    "journal_outbox",
    "journal_unique_claims",
    "api_key_blocks",
    "quota_usage",
    "person_keys",
];

const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableDump {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    /// The last journal position the dump holds (0 for an empty journal).
    pub journal_position: i64,
    pub journal_events: u64,
    /// The migrations applied to the database dumped.
    pub migrations: Vec<String>,
    pub tables: Vec<TableDump>,
    /// SHA-256 of the manifest's other fields, so a manifest edited by hand is refused.
    pub checksum: String,
}

impl Manifest {
    fn digest(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.checksum = String::new();
        let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
        hex(&Sha256::digest(&bytes))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a backup of the write side into `dir` (created; it must not hold a backup already).
pub async fn backup(config: &Config, dir: &Path) -> anyhow::Result<Manifest> {
    if dir.join("manifest.json").exists() {
        bail!(
            "{} already holds a backup; choose a new directory",
            dir.display()
        );
    }
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut client = config.database.connect().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let position: i64 = tx
        .query_one("SELECT COALESCE(max(global_position), 0) FROM journal", &[])
        .await?
        .get(0);
    let migrations: Vec<String> = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut tables = Vec::new();
    for table in WRITE_SIDE {
        let columns: Vec<String> = tx
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                &[table],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if columns.is_empty() {
            bail!("table {table} is missing: is the database migrated?");
        }
        let order = match *table {
            "journal" | "journal_outbox" => "global_position",
            _ => "1",
        };
        let sql = format!(
            "COPY (SELECT {} FROM {table} ORDER BY {order}) TO STDOUT WITH (FORMAT csv)",
            columns.join(", ")
        );
        let path = dir.join(format!("{table}.csv"));
        let mut file = tokio::fs::File::create(&path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        let stream = tx.copy_out(&sql).await?;
        futures::pin_mut!(stream);
        let mut hash = Sha256::new();
        let mut rows = 0u64;
        let mut quoted = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            // Rows end in a newline outside quotes (a quoted field may hold newlines).
            for &byte in chunk.iter() {
                match byte {
                    b'"' => quoted = !quoted,
                    b'\n' if !quoted => rows += 1,
                    _ => {}
                }
            }
            hash.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        println!("backup: {table}: {rows} rows");
        tables.push(TableDump {
            name: table.to_string(),
            columns,
            rows,
            sha256: hex(&hash.finalize()),
        });
    }
    tx.commit().await?;
    let journal_events = tables.first().map(|t| t.rows).unwrap_or(0);
    let mut manifest = Manifest {
        format: FORMAT,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        journal_position: position,
        journal_events,
        migrations,
        tables,
        checksum: String::new(),
    };
    manifest.checksum = manifest.digest();
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest)?;
    tokio::fs::write(&path, text).await?;
    println!(
        "backup: {} events up to journal position {} in {}",
        manifest.journal_events,
        manifest.journal_position,
        dir.display()
    );
    Ok(manifest)
}

/// Reads and checks a backup: the manifest's checksum, and every file's SHA-256.
pub async fn verify(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("manifest.json");
    let text = tokio::fs::read_to_string(&path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a manifest", path.display()))?;
    if manifest.format != FORMAT {
        bail!("backup format {} is not {FORMAT}", manifest.format);
    }
    if manifest.checksum != manifest.digest() {
        bail!(
            "{}: the checksum does not match its contents",
            path.display()
        );
    }
    for table in &manifest.tables {
        let file = dir.join(format!("{}.csv", table.name));
        let bytes = tokio::fs::read(&file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let sha = hex(&Sha256::digest(&bytes));
        if sha != table.sha256 {
            bail!(
                "{}: SHA-256 {sha} is not the manifest's {}: the backup is damaged",
                file.display(),
                table.sha256
            );
        }
    }
    Ok(manifest)
}

/// Applies the migrations and refuses a database that already holds events.
async fn empty_database(config: &Config) -> anyhow::Result<tokio_postgres::Client> {
    config.database.create_database_if_missing().await?;
    let pool = config.database.pool(2)?;
    platform::db::migrate(&pool).await?;
    let client = config.database.connect().await?;
    let events: i64 = client
        .query_one("SELECT count(*) FROM journal", &[])
        .await?
        .get(0);
    if events > 0 {
        bail!("the database already holds {events} events: restore only into an empty database");
    }
    Ok(client)
}

/// What a restore did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Events loaded from the dump.
    pub from_dump: u64,
    /// Events appended from the topic.
    pub from_topic: u64,
}

/// Restores a backup into an empty database, then appends what the topic holds beyond it
/// unless `dump_only`.
pub async fn restore(config: &Config, dir: &Path, dump_only: bool) -> anyhow::Result<Restored> {
    let manifest = verify(dir).await?;
    let known: Vec<&str> = platform::db::migration_versions();
    if let Some(unknown) = manifest
        .migrations
        .iter()
        .find(|m| !known.contains(&m.as_str()))
    {
        bail!("the backup was made with migration {unknown}, which this build does not have: restore with the version that made it");
    }
    let mut client = empty_database(config).await?;
    let tx = client.transaction().await?;
    for table in &manifest.tables {
        if !WRITE_SIDE.contains(&table.name.as_str()) {
            bail!("the backup holds an unknown table {}", table.name);
        }
        let file = dir.join(format!("{}.csv", table.name));
        let bytes = tokio::fs::read(&file).await?;
        // A backup made before the outbox was a table of its own (migration 0027) has the
        // journal's `published_at` column: such a journal is staged and appended from there.
        let old_journal =
            table.name == "journal" && table.columns.iter().any(|c| c == "published_at");
        let into = if old_journal {
            tx.batch_execute(
                "CREATE TEMP TABLE restore_journal (LIKE journal) ON COMMIT DROP;
                 ALTER TABLE restore_journal ADD COLUMN published_at timestamptz",
            )
            .await?;
            "restore_journal"
        } else {
            table.name.as_str()
        };
        let sql = format!(
            "COPY {into} ({}) FROM STDIN WITH (FORMAT csv)",
            table.columns.join(", ")
        );
        let sink = tx.copy_in(&sql).await?;
        futures::pin_mut!(sink);
        for chunk in bytes.chunks(1 << 20) {
            sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
        }
        let rows = sink.finish().await?;
        if rows != table.rows {
            bail!(
                "{}: loaded {rows} rows, the manifest says {}",
                table.name,
                table.rows
            );
        }
        if old_journal {
            let columns: Vec<&str> = table
                .columns
                .iter()
                .map(String::as_str)
                .filter(|c| *c != "published_at")
                .collect();
            let columns = columns.join(", ");
            tx.batch_execute(&format!(
                "INSERT INTO journal ({columns}) SELECT {columns} FROM restore_journal ORDER BY global_position;
                 DELETE FROM journal_outbox o USING restore_journal r
                 WHERE o.global_position = r.global_position AND r.published_at IS NOT NULL"
            ))
            .await?;
        } else if table.name == "journal" {
            // Loading the rows enqueued them all; the dump's outbox puts back the unpublished.
            tx.execute("DELETE FROM journal_outbox", &[]).await?;
        }
        println!("restore: {}: {rows} rows", table.name);
    }
    // Tokens held by the leases of processes at the time of the backup: those processes, and
    // their reservations (not kept), are gone.
    tx.execute("UPDATE quota_usage SET reserved = 0", &[])
        .await?;
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('journal', 'global_position'),
                       GREATEST((SELECT max(global_position) FROM journal), 1))",
        &[],
    )
    .await?;
    tx.commit().await?;
    let mut restored = Restored {
        from_dump: manifest.journal_events,
        from_topic: 0,
    };
    if !dump_only {
        restored.from_topic = append_from_topic(config, &mut client).await?;
    }
    recount_usage(&client).await?;
    Ok(restored)
}

/// Rebuilds the journal of an empty database from the topic alone.
pub async fn restore_from_topic(config: &Config) -> anyhow::Result<Restored> {
    let mut client = empty_database(config).await?;
    let from_topic = append_from_topic(config, &mut client).await?;
    recount_usage(&client).await?;
    Ok(Restored {
        from_dump: 0,
        from_topic,
    })
}

/// Reads the whole topic into a staging table, appends the events the journal lacks (in the
/// order they occurred, each stream in version order), marked published, and derives the
/// tables the commands write beside them. Returns how many were appended.
async fn append_from_topic(
    config: &Config,
    client: &mut tokio_postgres::Client,
) -> anyhow::Result<u64> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE TEMP TABLE restore_staging (envelope jsonb NOT NULL, content_hash bytea) ON COMMIT DROP",
    )
    .await?;
    let keys = load_keys_from_topic(config, &tx).await?;
    println!("restore: {keys} person keys from the keys topic");
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<TopicMessage>>(4);
    let kafka = config.kafka.clone();
    let topic = config.topic.clone();
    let ends = projectors::replay::end_offsets(&kafka, &topic).await?;
    let total: i64 = ends.values().sum();
    let reader = tokio::task::spawn_blocking(move || read_topic(&kafka, &topic, &ends, sender));
    let mut read = 0usize;
    while let Some(batch) = receiver.recv().await {
        read += batch.len();
        let batch: Vec<String> = batch
            .into_iter()
            .filter_map(|m| m.payload)
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .collect();
        // The journal's chain trigger takes each event's content hash from the writer, as
        // `Journal::append` gives it (docs/ARCHITECTURE.md, "Audit trail").
        let hashes: Vec<Vec<u8>> = batch
            .iter()
            .map(|text| {
                serde_json::from_str::<serde_json::Value>(text)
                    .map(|v| events::audit::content_hash(&v).to_vec())
                    .unwrap_or_default()
            })
            .collect();
        tx.execute(
            "INSERT INTO restore_staging (envelope, content_hash)
             SELECT e::jsonb, h FROM unnest($1::text[], $2::bytea[]) AS u(e, h)",
            &[&batch, &hashes],
        )
        .await?;
        println!("restore: read {read} of about {total} messages from the topic");
    }
    reader.await??;
    let rows = tx
        .query(
            "INSERT INTO journal (event_id, stream_id, stream_version, event_type, org_id, envelope,
                                  recorded_at, content_hash)
             SELECT (envelope->>'event_id')::uuid, envelope->>'stream_id',
                    (envelope->>'stream_version')::bigint, envelope->>'event_type',
                    (envelope->>'org_id')::uuid, envelope,
                    (envelope->>'occurred_at')::timestamptz, content_hash
             FROM (SELECT DISTINCT ON (envelope->>'event_id') envelope, content_hash
                   FROM restore_staging ORDER BY envelope->>'event_id') AS once
             -- Each audit chain in its order, so the chain trigger links every event as it was
             -- linked before (events older than the chain first, by time); a copy of an event
             -- the relay published twice is appended once, not chained twice.
             ORDER BY (envelope->'chain'->>'seq')::bigint NULLS FIRST,
                      (envelope->>'occurred_at')::timestamptz, envelope->>'stream_id',
                      (envelope->>'stream_version')::bigint
             ON CONFLICT DO NOTHING
             RETURNING global_position, envelope::text",
            &[],
        )
        .await?;
    let mut appended: Vec<(i64, EventEnvelope)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let text: String = row.get(1);
        let envelope = EventEnvelope::decode(text.as_bytes()).with_context(|| {
            format!("an event on the topic this build cannot read: {text:.200}")
        })?;
        appended.push((row.get(0), envelope));
    }
    appended.sort_by_key(|(position, _)| *position);
    // They came from the topic: published already, so out of the relay's outbox the append
    // trigger put them in.
    let positions: Vec<i64> = appended.iter().map(|(position, _)| *position).collect();
    tx.execute(
        "DELETE FROM journal_outbox WHERE global_position = ANY($1)",
        &[&positions],
    )
    .await?;
    let events: Vec<EventEnvelope> = appended.into_iter().map(|(_, e)| e).collect();
    derive_write_side(&tx, &events).await?;
    tx.commit().await?;
    println!(
        "restore: {} events appended from the topic ({read} messages read)",
        events.len()
    );
    Ok(events.len() as u64)
}

/// The person keys the keys topic holds (the latest message of each key; a tombstone means
/// destroyed), loaded beside those the database already has. A key that does not open under
/// this platform's secret is an error: the events sealed under it would read as erased.
async fn load_keys_from_topic(
    config: &Config,
    tx: &tokio_postgres::Transaction<'_>,
) -> anyhow::Result<u64> {
    let kafka = config.kafka.clone();
    let topic = platform::personal::keys_topic(&config.topic);
    let ends = projectors::replay::end_offsets(&kafka, &topic)
        .await
        .with_context(|| format!("reading the person keys' topic {topic}"))?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<TopicMessage>>(4);
    let reader = tokio::task::spawn_blocking(move || read_topic(&kafka, &topic, &ends, sender));
    let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    while let Some(batch) = receiver.recv().await {
        for message in batch {
            if let Some(key) = message.key {
                latest.insert(key, message.payload);
            }
        }
    }
    reader.await??;
    let mut records = Vec::new();
    for (key, value) in latest {
        let Some(value) = value else { continue };
        let record = platform::personal::KeyRecord::unwrap(&value).with_context(|| {
            format!("person key {key} does not open: is AIHUB_PERSONAL_DATA_SECRET the one that wrote it?")
        })?;
        records.push(record);
    }
    let pg: &tokio_postgres::Transaction<'_> = tx;
    Ok(platform::personal::load_keys(pg, &records).await?)
}

/// One message read off a topic.
struct TopicMessage {
    key: Option<String>,
    /// `None` for a tombstone.
    payload: Option<Vec<u8>>,
}

/// Reads every partition from its beginning to `ends`, in batches.
fn read_topic(
    kafka: &events::kafka::KafkaConnection,
    topic: &str,
    ends: &std::collections::HashMap<i32, i64>,
    sender: tokio::sync::mpsc::Sender<Vec<TopicMessage>>,
) -> anyhow::Result<()> {
    let mut client = kafka.client_config();
    client
        .set(
            "group.id",
            format!("aihub-restore-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = client.create()?;
    let mut assignment = TopicPartitionList::new();
    let mut open: BTreeMap<i32, i64> = BTreeMap::new();
    for (&partition, &end) in ends {
        if end > 0 {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            open.insert(partition, end);
        }
    }
    if open.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let mut batch = Vec::with_capacity(1000);
    let mut quiet = 0;
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                quiet = 0;
                let partition = message.partition();
                batch.push(TopicMessage {
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: message.payload().map(<[u8]>::to_vec),
                });
                if open
                    .get(&partition)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    open.remove(&partition);
                }
                if batch.len() >= 1000 && sender.blocking_send(std::mem::take(&mut batch)).is_err()
                {
                    bail!("the restore stopped reading");
                }
            }
            Some(Err(e)) => bail!("reading the topic: {e}"),
            None => {
                quiet += 1;
                if quiet > 120 {
                    bail!(
                        "the topic stopped answering with partitions {:?} unread",
                        open.keys()
                    );
                }
            }
        }
    }
    if !batch.is_empty() && sender.blocking_send(batch).is_err() {
        bail!("the restore stopped reading");
    }
    Ok(())
}

/// The tables the commands write in the journal's transaction, from the events they wrote:
/// unique claims (organization slugs, user emails, single sign-on clients) and key blocks ([`recount_usage`] does the
/// quota's used tokens).
async fn derive_write_side(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[EventEnvelope],
) -> anyhow::Result<()> {
    command_api::journal::block_keys(tx, events).await?;
    platform::personal::shred(tx, events).await?;
    for event in events {
        let stream = event.stream_id.to_string();
        match &event.payload {
            EventPayload::OrganizationCreated(e) => {
                claim(tx, "organization.slug", &e.slug, &stream).await?;
            }
            EventPayload::OrganizationUpdated(e) => {
                if let Some(slug) = &e.slug {
                    release(tx, "organization.slug", &stream).await?;
                    claim(tx, "organization.slug", slug, &stream).await?;
                }
            }
            EventPayload::OrganizationDeleted(_) => {
                release(tx, "organization.slug", &stream).await?;
            }
            EventPayload::UserCreated(_) => {
                // The claim is the email's blind index; a person whose key is gone (erased, or
                // not in the database restored into) has no claim any more.
                let mut opened = [event.clone()];
                let pg: &tokio_postgres::Transaction<'_> = tx;
                platform::personal::open(pg, &mut opened).await?;
                if let EventPayload::UserCreated(e) = &opened[0].payload {
                    let email = e.email.shown();
                    if email != events::personal::ERASED {
                        let org = event.org_id.unwrap_or_default();
                        let value = format!("{org}/{}", platform::personal::email_index(email));
                        claim(tx, "user.email", &value, &stream).await?;
                    }
                }
            }
            EventPayload::SsoConfigured(e) => {
                use command_api::sso::{client_claim, CLIENT_SCOPE};
                release(tx, CLIENT_SCOPE, &stream).await?;
                let value = client_claim(&e.issuer, &e.client_id);
                claim(tx, CLIENT_SCOPE, &value, &stream).await?;
            }
            EventPayload::PersonErased(e) => {
                for user in &e.user_ids {
                    let user_stream = events::StreamId::user((*user).into()).to_string();
                    release(tx, "user.email", &user_stream).await?;
                }
            }
            EventPayload::SsoRemoved(_) => {
                release(tx, command_api::sso::CLIENT_SCOPE, &stream).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The quota's used tokens from the calls billed in the journal, per organization and month.
/// The ledger a dump holds can lag its events (gateways write settled usage from their leases
/// every flush interval), and the invoices are built from the events: they are what was used.
/// A dump's figure above them is kept.
async fn recount_usage(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO quota_usage (org_id, period, used, reserved)
             SELECT org_id,
                    to_char((envelope->>'occurred_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM'),
                    sum((envelope->'data'->>'total_tokens')::bigint), 0
             FROM journal
             WHERE event_type = 'chat.completion.succeeded' AND org_id IS NOT NULL
             GROUP BY 1, 2
             ON CONFLICT (org_id, period) DO UPDATE
                 SET used = GREATEST(quota_usage.used, EXCLUDED.used), reserved = 0",
            &[],
        )
        .await?;
    Ok(())
}

async fn claim(
    tx: &tokio_postgres::Transaction<'_>,
    scope: &str,
    value: &str,
    stream: &str,
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO journal_unique_claims (scope, value, stream_id) VALUES ($1, $2, $3)
         ON CONFLICT (scope, value) DO UPDATE SET stream_id = EXCLUDED.stream_id",
        &[&scope, &value, &stream],
    )
    .await?;
    Ok(())
}

async fn release(
    tx: &tokio_postgres::Transaction<'_>,
    scope: &str,
    stream: &str,
) -> anyhow::Result<()> {
    tx.execute(
        "DELETE FROM journal_unique_claims WHERE scope = $1 AND stream_id = $2",
        &[&scope, &stream],
    )
    .await?;
    Ok(())
}

/// The directory of a scheduled backup: `<root>/aihub-<UTC time>`.
pub fn timestamped(root: &Path) -> PathBuf {
    root.join(format!(
        "aihub-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ))
}

/// Deletes the oldest backups under `root` beyond the newest `keep` (directories named
/// `aihub-*` that hold a manifest). Returns the ones deleted.
pub async fn prune(root: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut entries = tokio::fs::read_dir(root).await?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("aihub-"));
        if named && path.join("manifest.json").is_file() {
            found.push(path);
        }
    }
    found.sort();
    let excess = found.len().saturating_sub(keep);
    let gone: Vec<PathBuf> = found.into_iter().take(excess).collect();
    for path in &gone {
        tokio::fs::remove_dir_all(path).await?;
    }
    Ok(gone)
}
