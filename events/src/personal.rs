//! Personal data in events, and how it is shredded (GDPR erasure on an immutable log).
//!
//! A personal field (an email, a person's name; marked `"x-personal": true` in the schemas) is
//! written to the journal and the topic sealed with a key of its own person: XChaCha20-Poly1305
//! under a random 256-bit key, the envelope naming the key id and carrying the nonce. The keys
//! live in Postgres (`person_keys`); erasing a person destroys the key, and every copy of every
//! event that ever carried their data becomes unreadable where it lies, without editing one.
//! Whoever reads an event opens its sealed fields with the keys that still exist; a field whose
//! key is gone reads as [`ERASED`].

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// What a shredded (or unopened) personal field reads as, everywhere.
pub const ERASED: &str = "[erased]";

/// The one algorithm of [`Sealed`]; the name travels in the field, so another can follow.
pub const ALGORITHM: &str = "xchacha20poly1305";

/// A personal field: in clear inside a process, sealed in the journal and on the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Personal {
    /// In clear: as a command decided it, after opening, or in an event older than sealing.
    Plain(String),
    /// Sealed with its person's key.
    Sealed(Sealed),
}

/// A sealed personal field: `{"alg", "kid", "nonce", "ct"}`, nonce and ciphertext in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub alg: String,
    /// The person's key (`person_keys.key_id`).
    pub kid: Uuid,
    /// 24 random bytes.
    pub nonce: String,
    /// The ciphertext and its 16-byte tag.
    pub ct: String,
}

impl Personal {
    /// The value in clear, or [`ERASED`] if it is sealed (its key destroyed, or never opened).
    pub fn shown(&self) -> &str {
        match self {
            Self::Plain(text) => text,
            Self::Sealed(_) => ERASED,
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, Self::Sealed(_))
    }
}

impl From<String> for Personal {
    fn from(text: String) -> Self {
        Self::Plain(text)
    }
}

impl From<&str> for Personal {
    fn from(text: &str) -> Self {
        Self::Plain(text.to_string())
    }
}

/// `person.erased`: a data-subject erasure. The person's keys were destroyed in the transaction
/// that appended this event; it names what was shredded, never the person's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PersonErased {
    /// The keys destroyed: every field sealed under them now reads as `[erased]`.
    pub key_ids: Vec<Uuid>,
    /// The organization's users who were this person.
    pub user_ids: Vec<Uuid>,
}

/// `person.exported`: a data-subject access request was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PersonExported {
    /// The organization's users who were this person (none when it held nothing about them).
    pub user_ids: Vec<Uuid>,
}

/// One person's key.
#[derive(Clone)]
pub struct PersonKey {
    pub id: Uuid,
    key: [u8; 32],
}

impl std::fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonKey").field("id", &self.id).finish()
    }
}

impl PersonKey {
    pub fn generate() -> Self {
        let key = Key::generate();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(key.as_slice());
        Self {
            id: Uuid::now_v7(),
            key: bytes,
        }
    }

    pub fn from_bytes(id: Uuid, bytes: &[u8]) -> Option<Self> {
        Some(Self {
            id,
            key: bytes.try_into().ok()?,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.key
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.key))
    }

    /// The associated data binds a ciphertext to its key id: a field cannot be moved under
    /// another person's key id.
    fn aad(id: Uuid) -> Vec<u8> {
        let mut aad = b"aihub-personal/v1\n".to_vec();
        aad.extend_from_slice(id.as_bytes());
        aad
    }

    pub fn seal(&self, text: &str) -> Sealed {
        let nonce = XNonce::generate();
        let aad = Self::aad(self.id);
        // Encryption with a well-sized key and nonce cannot fail.
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: text.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        Sealed {
            alg: ALGORITHM.into(),
            kid: self.id,
            nonce: B64.encode(nonce.as_slice()),
            ct: B64.encode(ct),
        }
    }

    /// The text in clear; `None` if the field is not this key's or was altered.
    pub fn open(&self, sealed: &Sealed) -> Option<String> {
        if sealed.kid != self.id || sealed.alg != ALGORITHM {
            return None;
        }
        let nonce = B64.decode(&sealed.nonce).ok()?;
        let nonce = XNonce::try_from(nonce.as_slice()).ok()?;
        let ct = B64.decode(&sealed.ct).ok()?;
        let aad = Self::aad(self.id);
        let text = self
            .cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(text).ok()
    }
}

/// The keyed blind index of an email: HMAC-SHA256 under the platform's secret of the address as
/// the platform stores it (trimmed, lower case), in hex. Uniqueness and lookups by email compare
/// these, so no table needs the address in clear.
pub fn blind_index(secret: &[u8], email: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(b"aihub-email/v1\n");
    mac.update(email.trim().to_lowercase().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl crate::EventPayload {
    /// The email of the person whose data the event carries, in clear (none when sealed or
    /// absent): their key seals the event's personal fields.
    pub fn subject_email(&self) -> Option<&str> {
        let field = match self {
            Self::UserCreated(e) => Some(&e.email),
            Self::OrganizationCreated(e) => e.owner_email.as_ref(),
            Self::OrganizationUpdated(e) => e.owner_email.as_ref(),
            _ => None,
        }?;
        match field {
            Personal::Plain(text) => Some(text),
            Personal::Sealed(_) => None,
        }
    }

    /// Every personal field of the event (the `"x-personal"` fields of its schema).
    pub fn personal_fields(&mut self) -> Vec<&mut Personal> {
        match self {
            Self::UserCreated(e) => {
                let mut fields = vec![&mut e.email];
                fields.extend(e.name.as_mut());
                fields
            }
            Self::OrganizationCreated(e) => e.owner_email.as_mut().into_iter().collect(),
            Self::OrganizationUpdated(e) => e.owner_email.as_mut().into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

impl crate::EventEnvelope {
    /// Seals every personal field still in clear with `key`.
    pub fn seal_with(&mut self, key: &PersonKey) {
        for field in self.payload.personal_fields() {
            if let Personal::Plain(text) = field {
                *field = Personal::Sealed(key.seal(text));
            }
        }
    }

    /// The key ids the event's sealed fields name.
    pub fn sealed_key_ids(&mut self) -> Vec<Uuid> {
        self.payload
            .personal_fields()
            .into_iter()
            .filter_map(|field| match field {
                Personal::Sealed(s) => Some(s.kid),
                Personal::Plain(_) => None,
            })
            .collect()
    }

    /// Opens every sealed field with the keys given; a field whose key is not among them (it
    /// was destroyed) or does not open becomes [`ERASED`].
    pub fn open_with(&mut self, keys: &HashMap<Uuid, PersonKey>) {
        for field in self.payload.personal_fields() {
            if let Personal::Sealed(sealed) = field {
                let text = keys
                    .get(&sealed.kid)
                    .and_then(|key| key.open(sealed))
                    .unwrap_or_else(|| ERASED.to_string());
                *field = Personal::Plain(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::UserCreated;
    use crate::{Actor, EventEnvelope, EventPayload, StreamId};

    fn user_created() -> EventEnvelope {
        let user = Uuid::now_v7();
        EventEnvelope::new(
            EventPayload::UserCreated(UserCreated {
                email: "ada@example.com".into(),
                name: Some("Ada Lovelace".into()),
            }),
            Some(Uuid::now_v7()),
            StreamId::user(user.into()),
            1,
            Actor::system(),
            "req".into(),
        )
    }

    #[test]
    fn a_sealed_event_holds_no_clear_text_and_opens_with_its_key() {
        let key = PersonKey::generate();
        let mut event = user_created();
        event.seal_with(&key);
        let wire = String::from_utf8(event.encode()).expect("utf-8");
        assert!(
            !wire.contains("ada@") && !wire.contains("Lovelace"),
            "{wire}"
        );
        let mut decoded = EventEnvelope::decode(wire.as_bytes()).expect("decodes sealed");
        assert_eq!(decoded, event, "a sealed event round-trips unchanged");
        assert_eq!(decoded.sealed_key_ids(), vec![key.id, key.id]);
        decoded.open_with(&HashMap::from([(key.id, key.clone())]));
        assert_eq!(
            decoded,
            user_created_like(&event, "ada@example.com", "Ada Lovelace")
        );
    }

    fn user_created_like(event: &EventEnvelope, email: &str, name: &str) -> EventEnvelope {
        let mut out = event.clone();
        out.payload = EventPayload::UserCreated(UserCreated {
            email: email.into(),
            name: Some(name.into()),
        });
        out
    }

    #[test]
    fn without_its_key_a_field_reads_as_erased() {
        let key = PersonKey::generate();
        let mut event = user_created();
        event.seal_with(&key);
        let other = PersonKey::generate();
        let mut opened = event.clone();
        opened.open_with(&HashMap::from([(other.id, other)]));
        assert_eq!(opened, user_created_like(&event, ERASED, ERASED));
    }

    #[test]
    fn a_ciphertext_moved_under_another_key_id_does_not_open() {
        let a = PersonKey::generate();
        let b = PersonKey::from_bytes(Uuid::now_v7(), a.bytes()).expect("32 bytes");
        let mut sealed = a.seal("ada@example.com");
        assert_eq!(a.open(&sealed).as_deref(), Some("ada@example.com"));
        sealed.kid = b.id;
        assert_eq!(
            b.open(&sealed),
            None,
            "the key id is bound as associated data"
        );
    }

    #[test]
    fn the_blind_index_is_keyed_and_ignores_case() {
        let one = blind_index(b"secret one", "Ada@Example.com ");
        assert_eq!(one, blind_index(b"secret one", "ada@example.com"));
        assert_ne!(one, blind_index(b"secret two", "ada@example.com"));
        assert_eq!(one.len(), 64);
    }
}
