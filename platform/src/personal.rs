//! Personal data at rest (GDPR): the platform's blind-index secret, and the per-person keys in
//! Postgres that seal events' personal fields on their way into the journal and open them for
//! whoever builds state from events (`events::personal` holds the cryptography).

use std::collections::HashMap;
use std::sync::OnceLock;

use events::personal::{blind_index, PersonKey};
use events::EventEnvelope;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// `AIHUB_PERSONAL_DATA_SECRET`: the key of the emails' blind index, 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct IndexSecret([u8; 32]);

impl std::fmt::Debug for IndexSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexSecret(<redacted>)")
    }
}

impl IndexSecret {
    pub fn from_hex(raw: &str) -> Result<Self, String> {
        let bytes = hex::decode(raw).map_err(|_| "must be 64 hexadecimal digits".to_string())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 64 hexadecimal digits (32 bytes)".to_string())?;
        Ok(Self(bytes))
    }
}

/// A fixed secret for development and tests, used when none is configured (and said so at
/// start): an index under a public secret only hides emails from someone who does not read this
/// file.
const DEVELOPMENT_SECRET: [u8; 32] = *b"aihub-development-index-secret!!";

static SECRET: OnceLock<IndexSecret> = OnceLock::new();

/// Sets the process's blind-index secret, once, at start; later calls are ignored. Without one
/// the development secret is used (`aihub serve` warns about it; the CLI's commands, whose
/// output is data, do not).
pub fn install(secret: Option<IndexSecret>) {
    if let Some(secret) = secret {
        let _ = SECRET.set(secret);
    }
}

fn secret() -> &'static [u8] {
    SECRET
        .get()
        .map_or(&DEVELOPMENT_SECRET[..], |secret| &secret.0[..])
}

/// The blind index of an email under this process's secret.
pub fn email_index(email: &str) -> String {
    blind_index(secret(), email)
}

/// Seals the personal fields of `events` with their persons' keys, creating a key for a person
/// seen for the first time, in the caller's transaction (the journal's append).
pub async fn seal(
    client: &impl GenericClient,
    events: &mut [EventEnvelope],
) -> Result<(), tokio_postgres::Error> {
    for event in events.iter_mut() {
        let Some(email) = event.payload.subject_email() else {
            continue;
        };
        let org_id = event.org_id.unwrap_or_default();
        let key = key_for(client, org_id, &email_index(email)).await?;
        event.seal_with(&key);
    }
    Ok(())
}

/// The live key of a person of an organization, made on first use.
async fn key_for(
    client: &impl GenericClient,
    org_id: Uuid,
    subject: &str,
) -> Result<PersonKey, tokio_postgres::Error> {
    let fresh = PersonKey::generate();
    let row = client
        .query_one(
            "WITH new AS (
                 INSERT INTO person_keys (key_id, org_id, subject, key) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id, subject) WHERE subject IS NOT NULL DO NOTHING
                 RETURNING key_id, key)
             SELECT key_id, key FROM new
             UNION ALL
             SELECT key_id, key FROM person_keys WHERE org_id = $2 AND subject = $3
             LIMIT 1",
            &[&fresh.id, &org_id, &subject, &fresh.bytes()],
        )
        .await?;
    let id: Uuid = row.get(0);
    let bytes: Vec<u8> = row.get(1);
    Ok(PersonKey::from_bytes(id, &bytes).unwrap_or(fresh))
}

/// Opens the sealed fields of `events` with the keys that still exist; the rest read as
/// `[erased]`. One query for the whole batch, none when nothing is sealed.
pub async fn open(
    client: &impl GenericClient,
    events: &mut [EventEnvelope],
) -> Result<(), tokio_postgres::Error> {
    let mut ids: Vec<Uuid> = events.iter_mut().flat_map(|e| e.sealed_key_ids()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort();
    ids.dedup();
    let keys: HashMap<Uuid, PersonKey> = client
        .query(
            "SELECT key_id, key FROM person_keys WHERE key_id = ANY($1) AND key IS NOT NULL",
            &[&ids],
        )
        .await?
        .iter()
        .filter_map(|row| {
            let bytes: Vec<u8> = row.get(1);
            PersonKey::from_bytes(row.get(0), &bytes).map(|key| (key.id, key))
        })
        .collect();
    for event in events.iter_mut() {
        event.open_with(&keys);
    }
    Ok(())
}

/// Destroys the keys every `person.erased` among `events` names (key bytes and blind index),
/// in the transaction that appends it: from its commit on, nothing sealed under them opens.
/// Restores call it too, so an erasure after a backup is not undone by reloading the backup.
pub async fn shred(
    client: &impl GenericClient,
    events: &[EventEnvelope],
) -> Result<(), tokio_postgres::Error> {
    for event in events {
        if let events::EventPayload::PersonErased(erased) = &event.payload {
            client
                .execute(
                    "UPDATE person_keys
                     SET key = NULL, subject = NULL, erased_at = $3, publish_pending = true
                     WHERE org_id = $1 AND key_id = ANY($2) AND key IS NOT NULL",
                    &[
                        &event.org_id.unwrap_or_default(),
                        &erased.key_ids,
                        &*event.occurred_at,
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

/// The compacted topic beside the events' `topic` that carries every live person key, wrapped,
/// and a tombstone for each destroyed one (created by `events::kafka::ensure_topic`).
pub fn keys_topic(topic: &str) -> String {
    format!("{topic}{}", events::kafka::KEYS_TOPIC_SUFFIX)
}

/// One person key as the keys topic carries it (its message key is `key_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub subject: String,
    pub key: Vec<u8>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WrappedRecord {
    key_id: Uuid,
    org_id: Uuid,
    created_at: chrono::DateTime<chrono::Utc>,
    /// `{"subject", "key"}` sealed under the wrapping key, bound to `key_id`.
    wrapped: events::personal::Sealed,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Secret {
    subject: String,
    key: String,
}

/// The key that wraps person keys on the topic, derived from the blind-index secret: a copy of
/// the topic alone opens no personal field. Bound to each key's id by the cipher's associated
/// data.
fn wrapping_key(key_id: Uuid) -> PersonKey {
    let derived = blind_index(secret(), "aihub-person-key-wrapping/v1");
    let bytes = hex::decode(derived).unwrap_or_default();
    PersonKey::from_bytes(key_id, &bytes).unwrap_or_else(PersonKey::generate)
}

impl KeyRecord {
    /// The message value: the key and its subject wrapped, the rest in clear.
    pub fn wrap(&self) -> Vec<u8> {
        let secret = Secret {
            subject: self.subject.clone(),
            key: hex::encode(&self.key),
        };
        let text = serde_json::to_string(&secret).unwrap_or_default();
        let record = WrappedRecord {
            key_id: self.key_id,
            org_id: self.org_id,
            created_at: self.created_at,
            wrapped: wrapping_key(self.key_id).seal(&text),
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }

    /// A message value back; `None` if it is not one, or does not open under this platform's
    /// secret.
    pub fn unwrap(value: &[u8]) -> Option<Self> {
        let record: WrappedRecord = serde_json::from_slice(value).ok()?;
        let text = wrapping_key(record.key_id).open(&record.wrapped)?;
        let secret: Secret = serde_json::from_str(&text).ok()?;
        Some(Self {
            key_id: record.key_id,
            org_id: record.org_id,
            subject: secret.subject,
            key: hex::decode(secret.key).ok()?,
            created_at: record.created_at,
        })
    }
}

/// A key whose current state is not on the keys topic yet: live (publish it) or destroyed
/// (publish a tombstone).
pub struct PendingKey {
    pub key_id: Uuid,
    /// `None` once destroyed.
    pub record: Option<KeyRecord>,
}

/// The keys to publish, at most `limit`.
pub async fn pending_keys(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<PendingKey>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT key_id, org_id, subject, key, created_at FROM person_keys
             WHERE publish_pending ORDER BY key_id LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let key_id: Uuid = row.get(0);
            let subject: Option<String> = row.get(2);
            let key: Option<Vec<u8>> = row.get(3);
            let record = subject.zip(key).map(|(subject, key)| KeyRecord {
                key_id,
                org_id: row.get(1),
                subject,
                key,
                created_at: row.get(4),
            });
            PendingKey { key_id, record }
        })
        .collect())
}

/// Marks keys published in the state they were read in: a key destroyed meanwhile stays
/// pending, so its tombstone follows.
pub async fn mark_published(
    client: &impl GenericClient,
    published: &[PendingKey],
) -> Result<(), tokio_postgres::Error> {
    let (live, gone): (Vec<&PendingKey>, Vec<&PendingKey>) =
        published.iter().partition(|p| p.record.is_some());
    let live: Vec<Uuid> = live.iter().map(|p| p.key_id).collect();
    let gone: Vec<Uuid> = gone.iter().map(|p| p.key_id).collect();
    client
        .execute(
            "UPDATE person_keys SET publish_pending = false
             WHERE (key_id = ANY($1) AND key IS NOT NULL) OR (key_id = ANY($2) AND key IS NULL)",
            &[&live, &gone],
        )
        .await?;
    Ok(())
}

/// Loads keys read back from the keys topic (a restore), keeping any the database already
/// holds; they are on the topic, so not pending.
pub async fn load_keys(
    client: &impl GenericClient,
    records: &[KeyRecord],
) -> Result<u64, tokio_postgres::Error> {
    let mut loaded = 0;
    for record in records {
        loaded += client
            .execute(
                "INSERT INTO person_keys (key_id, org_id, subject, key, created_at, publish_pending)
                 VALUES ($1, $2, $3, $4, $5, false)
                 ON CONFLICT DO NOTHING",
                &[
                    &record.key_id,
                    &record.org_id,
                    &record.subject,
                    &record.key,
                    &record.created_at,
                ],
            )
            .await?;
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_as_itself() {
        let record = KeyRecord {
            key_id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            subject: "ab12".into(),
            key: vec![7; 32],
            created_at: chrono::Utc::now(),
        };
        let value = record.wrap();
        assert_eq!(KeyRecord::unwrap(&value), Some(record.clone()));
        let text = String::from_utf8(value.clone()).expect("json");
        assert!(!text.contains("ab12"), "the subject is wrapped: {text}");
        // Moved under another key id, it does not open.
        let moved = text.replace(&record.key_id.to_string(), &Uuid::now_v7().to_string());
        assert_eq!(KeyRecord::unwrap(moved.as_bytes()), None);
    }
}
