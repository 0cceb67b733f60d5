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

/// Sets the process's blind-index secret, once, at start; later calls are ignored.
pub fn install(secret: Option<IndexSecret>) {
    match secret {
        Some(secret) => {
            let _ = SECRET.set(secret);
        }
        None => tracing::warn!(
            "AIHUB_PERSONAL_DATA_SECRET is not set: emails are indexed under the public development secret"
        ),
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
                    "UPDATE person_keys SET key = NULL, subject = NULL, erased_at = $3
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
