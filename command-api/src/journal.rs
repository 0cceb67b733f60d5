//! The journal: append-only, versioned per stream. `UNIQUE (stream_id, stream_version)` is the
//! optimistic-concurrency check; losing it is a conflict, not an error.

use std::collections::HashSet;

use events::{EventEnvelope, StreamId};
use platform::db::PgPool;

/// A value that must be unique across streams, taken or released with the events that change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Take { scope: &'static str, value: String },
    Release { scope: &'static str, value: String },
}

/// What can go wrong reading or appending; the HTTP edge turns it into an answer (commit.rs).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the stream changed since it was read")]
    VersionConflict,
    #[error("{scope} {value:?} is already taken")]
    ClaimTaken { scope: &'static str, value: String },
    #[error("no database connection: {0}")]
    Unavailable(#[from] platform::db::PoolError),
    #[error("journal row of {stream_id} unreadable: {source}")]
    Unreadable {
        stream_id: String,
        source: events::DecodeError,
    },
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

#[derive(Clone)]
pub struct Journal {
    pool: PgPool,
}

impl Journal {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Every event of one stream, in version order.
    pub async fn load(&self, stream_id: &StreamId) -> Result<Vec<EventEnvelope>, JournalError> {
        self.load_after(stream_id, 0).await
    }

    /// The events of one stream after `version`, in version order.
    pub async fn load_after(
        &self,
        stream_id: &StreamId,
        version: i64,
    ) -> Result<Vec<EventEnvelope>, JournalError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT envelope::text FROM journal WHERE stream_id = $1 AND stream_version > $2
                 ORDER BY stream_version",
            )
            .await?;
        let rows = client
            .query(&statement, &[&stream_id.as_str(), &version])
            .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                let text: &str = row.get(0);
                EventEnvelope::decode(text.as_bytes()).map_err(|source| JournalError::Unreadable {
                    stream_id: stream_id.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Aggregates decide on personal data in clear, or on `[erased]` once it is shredded.
        let pg: &tokio_postgres::Client = &client;
        platform::personal::open(pg, &mut events).await?;
        Ok(events)
    }

    /// The stream holding a unique value, if any (a user's email in an organization).
    pub async fn claim_holder(
        &self,
        scope: &str,
        value: &str,
    ) -> Result<Option<String>, JournalError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT stream_id FROM journal_unique_claims WHERE scope = $1 AND value = $2",
                &[&scope, &value],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Appends events (and claims) atomically. Events must carry the next versions of their
    /// stream; if another writer got there first, this is a `VersionConflict`.
    pub async fn append(
        &self,
        events: &[EventEnvelope],
        claims: &[(Claim, String)],
    ) -> Result<(), JournalError> {
        self.append_with(events, claims, None).await
    }

    /// Appends events encoded beforehand ([`encode`], in the same order), as `append` does. The
    /// encoding is used only for events without personal data (the gateway's chat calls):
    /// others are sealed first, and encoded after.
    pub async fn append_encoded(
        &self,
        events: &[EventEnvelope],
        encoded: &[Encoded],
    ) -> Result<(), JournalError> {
        self.append_with(events, &[], Some(encoded)).await
    }

    async fn append_with(
        &self,
        events: &[EventEnvelope],
        claims: &[(Claim, String)],
        encoded: Option<&[Encoded]>,
    ) -> Result<(), JournalError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for (claim, stream_id) in claims {
            match claim {
                Claim::Take { scope, value } => {
                    let inserted = tx
                        .execute(
                            "INSERT INTO journal_unique_claims (scope, value, stream_id) VALUES ($1, $2, $3)
                             ON CONFLICT (scope, value) DO NOTHING",
                            &[scope, value, stream_id],
                        )
                        .await?;
                    if inserted == 0 {
                        return Err(JournalError::ClaimTaken {
                            scope,
                            value: value.clone(),
                        });
                    }
                }
                Claim::Release { scope, value } => {
                    tx.execute(
                        "DELETE FROM journal_unique_claims WHERE scope = $1 AND value = $2 AND stream_id = $3",
                        &[scope, value, stream_id],
                    )
                    .await?;
                }
            }
        }
        let mut heads = lock_chains(&tx, events).await?;
        let sealed = sealed(&tx, events).await?;
        let encoded = match (&sealed, encoded) {
            (std::borrow::Cow::Borrowed(_), Some(encoded)) if encoded.len() == events.len() => {
                std::borrow::Cow::Borrowed(encoded)
            }
            _ => std::borrow::Cow::Owned(encode(&sealed)),
        };
        let events = &*sealed;
        // Chat calls only: the relay's wake-up says so (migration 0032), and it may gather a few
        // batches before it publishes; nobody waits for them. Anything else wakes it at once.
        if events
            .iter()
            .all(|e| e.stream_id.kind() == Some(events::StreamKind::Chat))
        {
            let wake = tx
                .prepare_cached("SELECT set_config('aihub.journal_wake', 'chat', true)")
                .await?;
            tx.execute(&wake, &[]).await?;
        }
        let insert = tx.prepare_cached(INSERT).await?;
        let columns = Columns::of(events, &encoded, &mut heads);
        let inserted = match tx.execute(&insert, &columns.params()).await {
            Ok(inserted) => inserted,
            Err(e) => {
                // Another writer committed this stream's version while this one waited for the
                // chain's head (or an earlier attempt of this very batch did, its answer lost).
                let conflict = e.as_db_error().is_some_and(|db| {
                    matches!(
                        db.constraint(),
                        Some("journal_stream_version_key" | "journal_event_id_key")
                    )
                });
                return Err(if conflict {
                    JournalError::VersionConflict
                } else {
                    e.into()
                });
            }
        };
        if inserted != events.len() as u64 {
            return Err(JournalError::VersionConflict);
        }
        block_keys(&tx, events).await?;
        let pg: &tokio_postgres::Transaction<'_> = &tx;
        platform::personal::shred(pg, events).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// One statement for a whole batch, rows numbered in the order given (the relay publishes in
/// that order): a chat batch of 500 events is one round trip, not 500. The rows come linked
/// (`Columns::of`); the journal's statement trigger checks every link before it moves the heads.
const INSERT: &str =
    "INSERT INTO journal (event_id, stream_id, stream_version, event_type, org_id, envelope, content_hash,
                          chain_seq, chain_hash)
     SELECT event_id, stream_id, stream_version, event_type, org_id, envelope::json, content_hash,
            chain_seq, chain_hash
     FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::uuid[], $6::text[], $7::bytea[],
                 $8::bigint[], $9::bytea[])
          WITH ORDINALITY AS e(event_id, stream_id, stream_version, event_type, org_id, envelope, content_hash,
                               chain_seq, chain_hash, n)
     ORDER BY n";

/// The head of each chain a batch joins: its last link's seq and hash.
type Heads = std::collections::HashMap<String, (i64, [u8; 32])>;

/// Takes the heads of every chain the events join, in one order (the chains' names), before the
/// rows are inserted, and reads them: the events are linked to them here, under the lock, so two
/// batches touching the same organizations cannot interleave nor deadlock, and
/// `global_position` is drawn after the lock, so within a chain journal order is chain order
/// (the relay publishes in journal order).
async fn lock_chains(
    tx: &platform::db::Transaction<'_>,
    events: &[EventEnvelope],
) -> Result<Heads, JournalError> {
    let mut chains: Vec<String> = events
        .iter()
        .map(|e| events::audit::chain_of(e.org_id))
        .collect();
    chains.sort();
    chains.dedup();
    // Two statements: the head a concurrent writer created (and committed while this one waited
    // on its key) is only visible to a statement that starts after the insert, and its seq and
    // hash are what this batch links to.
    let create = tx
        .prepare_cached(
            "INSERT INTO audit_chain_heads (chain, seq, hash)
             SELECT c, 0, decode(repeat('00', 32), 'hex') FROM unnest($1::text[]) AS c ORDER BY c
             ON CONFLICT (chain) DO NOTHING",
        )
        .await?;
    tx.execute(&create, &[&chains]).await?;
    let statement = tx
        .prepare_cached(
            "SELECT chain, seq, hash FROM audit_chain_heads WHERE chain = ANY($1) ORDER BY chain FOR UPDATE",
        )
        .await?;
    let heads: Heads = tx
        .query(&statement, &[&chains])
        .await?
        .iter()
        .map(|row| {
            let hash: &[u8] = row.get(2);
            let hash = <[u8; 32]>::try_from(hash).unwrap_or(events::audit::GENESIS);
            (row.get::<_, String>(0), (row.get::<_, i64>(1), hash))
        })
        .collect();
    Ok(heads)
}

/// The events as the journal keeps them: personal fields sealed with their persons' keys (made
/// in this transaction for a person seen first), before the content hash the chain links is
/// computed, so the chain hashes the ciphertext and shredding a key never breaks it.
/// A batch without personal data (the gateway's chat events) is not copied.
async fn sealed<'e>(
    tx: &platform::db::Transaction<'_>,
    events: &'e [EventEnvelope],
) -> Result<std::borrow::Cow<'e, [EventEnvelope]>, JournalError> {
    if events.iter().all(|e| e.payload.subject_email().is_none()) {
        return Ok(std::borrow::Cow::Borrowed(events));
    }
    let mut events = events.to_vec();
    let pg: &tokio_postgres::Transaction<'_> = tx;
    platform::personal::seal(pg, &mut events).await?;
    Ok(std::borrow::Cow::Owned(events))
}

/// An event as the journal stores it before it is linked: the envelope's JSON text, and the
/// content hash its link will cover (SHA-256 of the canonical envelope without `chain`). The
/// costly part of an append, and independent of the chain's head, so it is done before the
/// heads are locked — for a chat call, by the call itself as it spools its event.
#[derive(Debug, Clone)]
pub struct Encoded {
    text: String,
    content: [u8; 32],
}

impl Encoded {
    pub fn of(event: &EventEnvelope) -> Self {
        let mut value = serde_json::to_value(event).unwrap_or_default();
        // The journal links the event itself: a link it came with is replaced, not doubled.
        if let serde_json::Value::Object(map) = &mut value {
            map.remove("chain");
        }
        let (text, content) = events::audit::canonical_text(&value);
        Self { text, content }
    }

    /// A text [`Encoded::of`] made, read back (a line of the gateway's spool): it is already
    /// the canonical envelope without `chain`, so only its content hash is computed again.
    pub fn from_text(text: String) -> Self {
        use sha2::{Digest, Sha256};
        let content = Sha256::digest(text.as_bytes()).into();
        Self { text, content }
    }

    /// The envelope's JSON without `chain` (the gateway's spool keeps this line).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The stored envelope: this one with its `chain` member added last. Members are named, so
    /// where it stands changes nothing for a reader.
    fn linked(&self, link: &events::audit::ChainLink) -> String {
        let chain = serde_json::to_string(link).unwrap_or_default();
        let body = self.text.trim_end().strip_suffix('}').unwrap_or("{");
        let separator = if body.trim_end() == "{" { "" } else { "," };
        format!("{body}{separator}\"chain\":{chain}}}")
    }
}

/// From this many events up, encoding a batch (a few milliseconds for 500) runs with the worker
/// thread handed over (`block_in_place`): a large append (a spool's recovery) on the request
/// runtime would otherwise hold the requests queued on its worker for the whole batch.
const LARGE_BATCH: usize = 64;

/// Encodes a batch ([`Encoded`]), handing the worker over for a large one on a multi-threaded
/// runtime.
pub fn encode(events: &[EventEnvelope]) -> Vec<Encoded> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let encode = || events.iter().map(Encoded::of).collect();
    if multi_thread && events.len() >= LARGE_BATCH {
        tokio::task::block_in_place(encode)
    } else {
        encode()
    }
}

/// A batch of events as the columns `INSERT` takes, each linked to its chain.
struct Columns<'a> {
    ids: Vec<uuid::Uuid>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    types: Vec<&'a str>,
    orgs: Vec<Option<uuid::Uuid>>,
    envelopes: Vec<String>,
    content_hashes: Vec<Vec<u8>>,
    chain_seqs: Vec<i64>,
    chain_hashes: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    /// Links each event, in order, to the head of its chain (moving the head): `seq` one more,
    /// `hash` = SHA-256(prev hash ‖ content hash); the envelope stored carries the link
    /// (`ChainLink`). This is the linking the journal's trigger does for rows that arrive
    /// unlinked (a restore), done here without a PL/pgSQL call per row (issue 17). Cheap: a hash
    /// and a string per event, under the heads' locks.
    fn of(events: &'a [EventEnvelope], encoded: &[Encoded], heads: &mut Heads) -> Self {
        let n = events.len();
        let mut envelopes = Vec::with_capacity(n);
        let mut content_hashes = Vec::with_capacity(n);
        let mut chain_seqs = Vec::with_capacity(n);
        let mut chain_hashes = Vec::with_capacity(n);
        for (event, encoded) in events.iter().zip(encoded) {
            let head = heads
                .entry(events::audit::chain_of(event.org_id))
                .or_insert((0, events::audit::GENESIS));
            let seq = head.0 + 1;
            let hash = events::audit::link(&head.1, &encoded.content);
            let link = events::audit::ChainLink {
                seq,
                prev: hex::encode(head.1),
                hash: hex::encode(hash),
            };
            *head = (seq, hash);
            envelopes.push(encoded.linked(&link));
            content_hashes.push(encoded.content.to_vec());
            chain_seqs.push(seq);
            chain_hashes.push(hash.to_vec());
        }
        Self {
            ids: events.iter().map(|e| e.event_id).collect(),
            streams: events.iter().map(|e| e.stream_id.as_str()).collect(),
            versions: events.iter().map(|e| e.stream_version).collect(),
            types: events.iter().map(|e| e.event_type()).collect(),
            orgs: events.iter().map(|e| e.org_id).collect(),
            envelopes,
            content_hashes,
            chain_seqs,
            chain_hashes,
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 9] {
        [
            &self.ids,
            &self.streams,
            &self.versions,
            &self.types,
            &self.orgs,
            &self.envelopes,
            &self.content_hashes,
            &self.chain_seqs,
            &self.chain_hashes,
        ]
    }
}

impl Journal {
    /// Appends the events not in the journal yet, skipping those that are (by event id, or by
    /// their stream and version): for events recovered from a spool, some of which may have been
    /// appended before their process died. Returns how many were new.
    pub async fn append_new(&self, events: &[EventEnvelope]) -> Result<u64, JournalError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut heads = lock_chains(&tx, events).await?;
        // Under the heads' locks no other writer adds to these chains, so what is not in the
        // journal now is new; a twin within the batch is dropped here too. Only new events are
        // linked: a skipped row must not take a place in its chain.
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
        let streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
        let versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
        let present: HashSet<uuid::Uuid> = tx
            .query(
                "SELECT e.event_id FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS e(event_id, stream_id, stream_version)
                 WHERE EXISTS (SELECT 1 FROM journal j WHERE j.event_id = e.event_id)
                    OR EXISTS (SELECT 1 FROM journal j
                               WHERE j.stream_id = e.stream_id AND j.stream_version = e.stream_version)",
                &[&ids, &streams, &versions],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut seen_ids = HashSet::new();
        let mut seen_versions = HashSet::new();
        let fresh: Vec<EventEnvelope> = events
            .iter()
            .filter(|e| {
                !present.contains(&e.event_id)
                    && seen_ids.insert(e.event_id)
                    && seen_versions.insert((e.stream_id.as_str(), e.stream_version))
            })
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let events = &*sealed(&tx, &fresh).await?;
        let encoded = encode(events);
        let columns = Columns::of(events, &encoded, &mut heads);
        let inserted = tx.execute(INSERT, &columns.params()).await?;
        tx.commit().await?;
        Ok(inserted)
    }
}

/// Revoking or disabling a key refuses it at commit, not when the event is projected: the block
/// is written with the event, and the processes' key caches hear of it on `aihub_auth` at the
/// same commit. Re-enabling lifts a disable (never a revocation).
pub async fn block_keys(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[EventEnvelope],
) -> Result<(), JournalError> {
    use events::EventPayload;
    for event in events {
        let Some(key_id) = event.stream_id.uuid_of(events::StreamKind::ApiKey) else {
            continue;
        };
        let org_id = event.org_id.unwrap_or_default();
        let change = match &event.payload {
            EventPayload::ApiKeyRevoked(_) => Some("revoked"),
            EventPayload::ApiKeyUpdated(u) if u.enabled == Some(false) => Some("disabled"),
            EventPayload::ApiKeyUpdated(u) if u.enabled == Some(true) => None,
            _ => continue,
        };
        match change {
            Some(reason) => {
                tx.execute(
                    "INSERT INTO api_key_blocks (key_id, org_id, reason) VALUES ($1, $2, $3)
                     ON CONFLICT (key_id) DO UPDATE SET reason = CASE
                         WHEN api_key_blocks.reason = 'revoked' THEN 'revoked' ELSE EXCLUDED.reason END",
                    &[&key_id, &org_id, &reason],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "DELETE FROM api_key_blocks WHERE key_id = $1 AND reason = 'disabled'",
                    &[&key_id],
                )
                .await?;
            }
        }
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&platform::auth::AUTH_CHANNEL, &org_id.to_string()],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{Actor, EventPayload};

    fn event(org_id: Option<uuid::Uuid>) -> EventEnvelope {
        EventEnvelope::new(
            EventPayload::TeamCreated(events::access::TeamCreated {
                name: "Ünïcödé \"quoted\" team".into(),
                description: Some("line\nbreak".into()),
            }),
            org_id,
            StreamId::team(events::TeamId::new()),
            1,
            Actor::system(),
            "req-1".into(),
        )
    }

    #[test]
    fn a_linked_envelope_is_the_event_with_its_link_and_hashes_as_the_chain_expects() {
        let mut heads = Heads::new();
        let events = [event(Some(uuid::Uuid::now_v7())), event(None)];
        let encoded = encode(&events);
        let columns = Columns::of(&events, &encoded, &mut heads);
        for (i, event) in events.iter().enumerate() {
            let stored: serde_json::Value =
                serde_json::from_str(&columns.envelopes[i]).expect("stored JSON");
            let mut expected = serde_json::to_value(event).expect("value");
            let link = events::audit::ChainLink {
                seq: 1,
                prev: hex::encode(events::audit::GENESIS),
                hash: hex::encode(events::audit::link(
                    &events::audit::GENESIS,
                    &events::audit::content_hash(&expected),
                )),
            };
            if let serde_json::Value::Object(map) = &mut expected {
                map.insert("chain".into(), serde_json::to_value(&link).expect("link"));
            }
            assert_eq!(stored, expected);
            // The content hash ignores the link, so the stored envelope hashes as it was linked.
            assert_eq!(
                events::audit::content_hash(&stored).to_vec(),
                columns.content_hashes[i]
            );
            assert_eq!(columns.chain_seqs[i], 1);
            assert_eq!(
                columns.chain_hashes[i],
                hex::decode(&link.hash).expect("hex")
            );
            let decoded = EventEnvelope::decode(columns.envelopes[i].as_bytes()).expect("decodes");
            assert_eq!(decoded.event_id, event.event_id);
            assert_eq!(decoded.chain, Some(link));
        }
        // Two events of one chain: the second links to the first.
        let org = Some(uuid::Uuid::now_v7());
        let events = [event(org), event(org)];
        let columns = Columns::of(&events, &encode(&events), &mut Heads::new());
        assert_eq!(columns.chain_seqs, vec![1, 2]);
        assert_eq!(
            columns.chain_hashes[1],
            events::audit::link(
                &<[u8; 32]>::try_from(columns.chain_hashes[0].as_slice()).expect("32 bytes"),
                &<[u8; 32]>::try_from(columns.content_hashes[1].as_slice()).expect("32 bytes"),
            )
            .to_vec()
        );
    }

    #[test]
    fn a_link_an_event_came_with_is_replaced_not_doubled() {
        let mut linked = event(None);
        linked.chain = Some(events::audit::ChainLink {
            seq: 7,
            prev: "aa".into(),
            hash: "bb".into(),
        });
        let columns = Columns::of(
            std::slice::from_ref(&linked),
            &encode(std::slice::from_ref(&linked)),
            &mut Heads::new(),
        );
        assert_eq!(columns.envelopes[0].matches("\"chain\"").count(), 1);
        assert_eq!(columns.chain_seqs[0], 1);
    }

    #[test]
    fn an_empty_object_gets_its_link_without_a_stray_comma() {
        let encoded = Encoded {
            text: "{}".into(),
            content: [0; 32],
        };
        let link = events::audit::ChainLink {
            seq: 1,
            prev: "00".into(),
            hash: "11".into(),
        };
        assert_eq!(
            encoded.linked(&link),
            r#"{"chain":{"seq":1,"prev":"00","hash":"11"}}"#
        );
    }
}
