//! The tamper-evident audit chain (issue 12). Every event of an organization is linked to the one
//! before it: `hash = SHA-256(prev_hash ‖ SHA-256(canonical(envelope without "chain")))`, the
//! first event's `prev_hash` being 32 zero bytes. The link travels in the envelope as `chain`
//! (`{seq, prev, hash}`, hex), set by the journal when the event is appended (see
//! `schemas/sql/0014_audit_chain.sql`). Events of no organization form one more chain,
//! `platform`. Signed checkpoints (`audit.checkpoint`) pin a chain's head with Ed25519.
//!
//! Everything here is pure: the encoding, the hashes, the signatures and the walk that checks a
//! sequence of envelopes, whichever place they were read from (topic, journal, read model).

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The chain of the events that belong to no organization.
pub const PLATFORM_CHAIN: &str = "platform";

/// The `prev` of a chain's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// What the journal adds to an envelope: its place in its organization's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainLink {
    /// 1 for the chain's first event, then one more for each.
    pub seq: i64,
    /// The `hash` of the event before (hex); 64 zeros for the first.
    pub prev: String,
    /// SHA-256 of `prev` and of the canonical envelope without `chain` (hex).
    pub hash: String,
}

/// The chain an event of this organization belongs to.
pub fn chain_of(org_id: Option<Uuid>) -> String {
    match org_id {
        Some(org) => org.to_string(),
        None => PLATFORM_CHAIN.to_string(),
    }
}

/// The canonical encoding: JSON without whitespace, object keys sorted by their UTF-8 bytes,
/// strings and numbers as serde_json writes them. Python's
/// `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes the same
/// for our envelopes (integers, strings, booleans, nulls).
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(key).unwrap_or_default());
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

/// The canonical encoding as text, with its SHA-256, in one pass (issue 17: the gateway encodes
/// every chat call's event). The compact text serde_json writes for a `Value` *is* the canonical
/// encoding: its objects are `BTreeMap`s, sorted by their keys' bytes, unless serde_json's
/// `preserve_order` feature is on — no crate of ours enables it, and
/// `tests::compact_text_is_the_canonical_encoding` fails the day one does.
pub fn canonical_text(value: &Value) -> (String, [u8; 32]) {
    let text = value.to_string();
    let hash = Sha256::digest(text.as_bytes()).into();
    (text, hash)
}

/// SHA-256 of the canonical envelope without its `chain` member.
pub fn content_hash(envelope: &Value) -> [u8; 32] {
    let bytes = match envelope {
        Value::Object(map) if map.contains_key("chain") => {
            let mut map = map.clone();
            map.remove("chain");
            canonical(&Value::Object(map))
        }
        other => canonical(other),
    };
    Sha256::digest(&bytes).into()
}

/// The link hash of an event whose predecessor's hash is `prev`.
pub fn link(prev: &[u8; 32], content: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(content);
    hasher.finalize().into()
}

/// `audit.checkpoint`: a chain's head at one moment, signed. The checkpoint is itself an event of
/// the chain it signs (on the stream `audit:<chain>`), after the head it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditCheckpoint {
    /// The organization id, or `platform`.
    pub chain: String,
    /// The `seq` of the head signed.
    pub seq: i64,
    /// Its `hash` (hex).
    pub hash: String,
    /// The first 8 bytes of SHA-256 of the public key, hex: which key signed.
    pub key_id: String,
    /// Ed25519 over `checkpoint_message(chain, seq, hash)`, hex.
    pub signature: String,
}

/// `audit.exported`: an auditor exported a part of an organization's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditExported {
    pub export_id: Uuid,
    /// `jsonl` or `csv`.
    pub format: String,
    /// The filters the export was asked with, as given.
    pub filters: std::collections::BTreeMap<String, String>,
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(chain: &str, seq: i64, hash: &str) -> Vec<u8> {
    format!("aihub-audit-checkpoint/v1\n{chain}\n{seq}\n{hash}").into_bytes()
}

/// The key that signs checkpoints, from a 32-byte seed (configuration, hex).
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSigner(key_id {})", self.key_id())
    }
}

impl CheckpointSigner {
    /// A 64-digit hex seed; anything else is an error naming what is wrong.
    pub fn from_seed_hex(raw: &str) -> Result<Self, String> {
        let bytes = hex::decode(raw).map_err(|_| "must be 64 hexadecimal digits".to_string())?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 64 hexadecimal digits (a 32-byte Ed25519 seed)".to_string())?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.public().to_bytes())
    }

    pub fn key_id(&self) -> String {
        key_id(&self.public())
    }

    pub fn sign(&self, chain: &str, seq: i64, hash: &str) -> AuditCheckpoint {
        let signature = self.key.sign(&checkpoint_message(chain, seq, hash));
        AuditCheckpoint {
            chain: chain.to_string(),
            seq,
            hash: hash.to_string(),
            key_id: self.key_id(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.to_bytes())[..8])
}

/// A public key from 64 hex digits.
pub fn public_key_from_hex(raw: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(raw).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Whether the checkpoint's signature is the key's over what it names.
pub fn signature_holds(key: &VerifyingKey, checkpoint: &AuditCheckpoint) -> bool {
    let Some(bytes) = hex::decode(&checkpoint.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(
        &checkpoint_message(&checkpoint.chain, checkpoint.seq, &checkpoint.hash),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

/// The first thing wrong with a chain, naming the event where it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Break {
    pub event_id: Option<Uuid>,
    pub seq: Option<i64>,
    pub reason: String,
}

/// What one more envelope did to the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next link, checked.
    Linked,
    /// The same event again (the relay publishes at least once): skipped.
    Duplicate,
    /// An event from before the chain existed (no `chain`, and nothing chained before it).
    Unchained,
}

/// Checks one chain's envelopes in the order a source holds them.
pub struct Walker {
    chain: String,
    key: Option<VerifyingKey>,
    next: i64,
    prev: [u8; 32],
    /// Every hash and event id by seq: checkpoints and duplicates are checked against them.
    seen: HashMap<i64, ([u8; 32], Uuid)>,
    pub checkpoints: u64,
    pub last_checkpoint: Option<i64>,
}

impl Walker {
    /// `key` checks checkpoint signatures; without one, checkpoints are checked against the
    /// chain only.
    pub fn new(chain: &str, key: Option<VerifyingKey>) -> Self {
        Self {
            chain: chain.to_string(),
            key,
            next: 1,
            prev: GENESIS,
            seen: HashMap::new(),
            checkpoints: 0,
            last_checkpoint: None,
        }
    }

    /// How many events were linked.
    pub fn linked(&self) -> i64 {
        self.next - 1
    }

    /// The head's hash (hex), if any event was linked.
    pub fn head(&self) -> Option<String> {
        (self.next > 1).then(|| hex::encode(self.prev))
    }

    /// The hash at `seq`, if walked.
    pub fn hash_at(&self, seq: i64) -> Option<([u8; 32], Uuid)> {
        self.seen.get(&seq).copied()
    }

    pub fn push(&mut self, envelope: &Value) -> Result<Step, Break> {
        let event_id = envelope
            .get("event_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok());
        let broken = |seq: Option<i64>, reason: String| Break {
            event_id,
            seq,
            reason,
        };
        let Some(event_id_value) = event_id else {
            return Err(broken(None, "an event without a readable event_id".into()));
        };
        let link: ChainLink = match envelope.get("chain") {
            None | Some(Value::Null) if self.next == 1 => return Ok(Step::Unchained),
            None | Some(Value::Null) => {
                return Err(broken(
                    None,
                    "an event without a chain link after chained events: inserted".into(),
                ))
            }
            Some(raw) => serde_json::from_value(raw.clone())
                .map_err(|_| broken(None, "its chain link is malformed".into()))?,
        };
        let seq = Some(link.seq);
        let computed = link_hex(&self.prev, envelope);
        if link.seq < self.next {
            return match self.seen.get(&link.seq) {
                Some((hash, id))
                    if *id == event_id_value
                        && hex::encode(hash) == link.hash
                        && self.rehash_at(link.seq, envelope) =>
                {
                    Ok(Step::Duplicate)
                }
                _ => Err(broken(
                    seq,
                    format!(
                        "seq {} comes after seq {}: reordered or inserted",
                        link.seq,
                        self.next - 1
                    ),
                )),
            };
        }
        if link.seq > self.next {
            return Err(broken(
                seq,
                format!(
                    "expected seq {}, found {}: an event before it is missing",
                    self.next, link.seq
                ),
            ));
        }
        if link.prev != hex::encode(self.prev) {
            return Err(broken(
                seq,
                "its prev does not match the hash of the event before it: reordered or inserted"
                    .into(),
            ));
        }
        if computed != link.hash {
            return Err(broken(
                seq,
                "its content does not match its hash: altered".into(),
            ));
        }
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(&link.hash, &mut hash).is_err() {
            return Err(broken(seq, "its hash is not hex".into()));
        }
        if envelope.get("event_type").and_then(Value::as_str) == Some("audit.checkpoint") {
            self.checkpoint(envelope)
                .map_err(|reason| broken(seq, reason))?;
        }
        self.seen.insert(link.seq, (hash, event_id_value));
        self.prev = hash;
        self.next += 1;
        Ok(Step::Linked)
    }

    /// Whether a repeated event's content still gives the hash recorded at its seq.
    fn rehash_at(&self, seq: i64, envelope: &Value) -> bool {
        let prev = if seq == 1 {
            Some(GENESIS)
        } else {
            self.seen.get(&(seq - 1)).map(|(h, _)| *h)
        };
        match (prev, self.seen.get(&seq)) {
            (Some(prev), Some((hash, _))) => link_hex(&prev, envelope) == hex::encode(hash),
            _ => false,
        }
    }

    fn checkpoint(&mut self, envelope: &Value) -> Result<(), String> {
        let checkpoint: AuditCheckpoint = envelope
            .get("data")
            .cloned()
            .and_then(|d| serde_json::from_value(d).ok())
            .ok_or("a checkpoint whose data is unreadable")?;
        if checkpoint.chain != self.chain {
            return Err(format!(
                "a checkpoint of chain {} inside chain {}",
                checkpoint.chain, self.chain
            ));
        }
        match self.seen.get(&checkpoint.seq) {
            Some((hash, _)) if hex::encode(hash) == checkpoint.hash => {}
            _ => {
                return Err(format!(
                    "the checkpoint signed seq {} with a hash the chain does not have there",
                    checkpoint.seq
                ))
            }
        }
        if let Some(key) = &self.key {
            if checkpoint.key_id != key_id(key) || !signature_holds(key, &checkpoint) {
                return Err(
                    "the checkpoint's signature does not verify with the public key".into(),
                );
            }
        }
        self.checkpoints += 1;
        self.last_checkpoint = Some(checkpoint.seq);
        Ok(())
    }
}

fn link_hex(prev: &[u8; 32], envelope: &Value) -> String {
    hex::encode(link(prev, &content_hash(envelope)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Links envelopes as the journal's trigger does.
    fn chained(mut events: Vec<Value>) -> Vec<Value> {
        let mut prev = GENESIS;
        for (i, event) in events.iter_mut().enumerate() {
            let hash = link(&prev, &content_hash(event));
            event["chain"] =
                json!({"seq": i + 1, "prev": hex::encode(prev), "hash": hex::encode(hash)});
            prev = hash;
        }
        events
    }

    fn event(n: u32) -> Value {
        json!({"event_id": Uuid::now_v7(), "event_type": "team.created", "data": {"name": format!("t{n}")}})
    }

    fn walk(events: &[Value]) -> Result<(), Break> {
        let mut walker = Walker::new("org", None);
        for e in events {
            walker.push(e)?;
        }
        Ok(())
    }

    #[test]
    fn canonical_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": [1, {"z": null, "a": "é\n"}], "a": true }"#)
            .expect("json");
        assert_eq!(
            String::from_utf8(canonical(&v)).expect("utf8"),
            r#"{"a":true,"b":[1,{"a":"é\n","z":null}]}"#
        );
    }

    #[test]
    fn compact_text_is_the_canonical_encoding() {
        // Members inserted out of order, nested, escaped, non-ASCII, numbers of every kind.
        let mut v = json!({});
        for key in ["zeta", "Alpha", "é", "a\"b", "10", "9", "_"] {
            v[key] = json!({"y": [3, -1, 2.5, 1e3, u64::MAX], "x": "line\nbreak\u{1}\u{2028}", "b": null, "a": false});
        }
        v["nested"] = json!([{"b": {"d": 1, "c": 2}}, "日本", {}]);
        let (text, hash) = canonical_text(&v);
        assert_eq!(text.as_bytes(), canonical(&v).as_slice());
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(canonical(&v))));
        assert_eq!(hash, content_hash(&v));
    }

    #[test]
    fn a_clean_chain_walks_and_duplicates_are_skipped() {
        let events = chained((0..5).map(event).collect());
        assert_eq!(walk(&events), Ok(()));
        let mut walker = Walker::new("org", None);
        for e in &events[..3] {
            assert_eq!(walker.push(e), Ok(Step::Linked));
        }
        assert_eq!(walker.push(&events[1]), Ok(Step::Duplicate));
        assert_eq!(walker.push(&events[3]), Ok(Step::Linked));
    }

    #[test]
    fn altered_removed_inserted_and_swapped_events_are_named() {
        let events = chained((0..5).map(event).collect());
        let id = |i: usize| events[i]["event_id"].as_str().and_then(|s| s.parse().ok());

        let mut altered = events.clone();
        altered[2]["data"]["name"] = json!("changed");
        assert_eq!(walk(&altered).expect_err("altered").event_id, id(2));

        let mut removed = events.clone();
        removed.remove(2);
        assert_eq!(walk(&removed).expect_err("removed").event_id, id(3));

        let mut swapped = events.clone();
        swapped.swap(1, 2);
        assert_eq!(walk(&swapped).expect_err("swapped").event_id, id(2));

        let mut inserted = events.clone();
        let mut forged = events[2].clone();
        forged["event_id"] = json!(Uuid::now_v7());
        inserted.insert(3, forged.clone());
        let err = walk(&inserted).expect_err("inserted");
        assert_eq!(
            err.event_id,
            forged["event_id"].as_str().and_then(|s| s.parse().ok())
        );
    }

    #[test]
    fn checkpoints_verify_with_the_key_and_fail_with_another() {
        let signer = CheckpointSigner::from_seed_hex(&"11".repeat(32)).expect("seed");
        let mut events = (0..3).map(event).collect::<Vec<_>>();
        let mut prefix = chained(events.clone());
        let head = prefix[2]["chain"]["hash"]
            .as_str()
            .expect("hash")
            .to_string();
        let checkpoint = signer.sign("org", 3, &head);
        events.push(json!({"event_id": Uuid::now_v7(), "event_type": "audit.checkpoint", "data": checkpoint}));
        prefix = chained(events);
        let mut walker = Walker::new("org", Some(signer.public()));
        for e in &prefix {
            walker.push(e).expect("links");
        }
        assert_eq!(walker.checkpoints, 1);

        let other = CheckpointSigner::from_seed_hex(&"22".repeat(32)).expect("seed");
        let mut walker = Walker::new("org", Some(other.public()));
        let err = prefix
            .iter()
            .try_for_each(|e| walker.push(e).map(|_| ()))
            .expect_err("wrong key");
        assert!(err.reason.contains("signature"), "{err:?}");
        assert!(CheckpointSigner::from_seed_hex("xyz").is_err());
    }
}
