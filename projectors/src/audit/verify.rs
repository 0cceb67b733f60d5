//! `aihub audit verify` and `GET /audit/verify`: every chain walked on the topic, in the journal
//! and in the audit read model, each link and checkpoint checked (`events::audit::Walker`), and
//! the three sources compared, so an event altered, inserted, removed or reordered in any of them
//! is named.

use std::collections::{BTreeMap, HashMap, HashSet};

use api::audit::{AuditBreak, AuditChainReport, AuditVerification, AuditVerificationObject};
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use events::audit::{Break, Step, Walker};
use events::kafka::KafkaConnection;
use futures::{pin_mut, TryStreamExt};
use platform::db::PgPool;
use serde_json::Value;
use uuid::Uuid;

use super::{chain_of_message, read_topic};

/// Where the events are.
pub struct Sources<'a> {
    pub pool: &'a PgPool,
    pub kafka: &'a KafkaConnection,
    pub topic: &'a str,
    /// Checks checkpoint signatures when given.
    pub key: Option<VerifyingKey>,
}

/// What the topic said about one event.
struct Seen {
    seq: i64,
    hash: String,
    partition: i32,
    offset: i64,
}

/// One chain as read from the topic.
struct TopicChain {
    walker: Walker,
    broken: Option<Break>,
    events: HashMap<Uuid, Seen>,
    /// Platform events are spread over partitions: walked by seq once all are read.
    pending: Vec<Value>,
}

fn breaks(source: &str, b: Break) -> AuditBreak {
    AuditBreak {
        source: source.to_string(),
        event_id: b.event_id,
        seq: b.seq,
        reason: b.reason,
    }
}

fn id_of(envelope: &Value) -> Option<Uuid> {
    envelope
        .get("event_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn link_of(envelope: &Value) -> Option<(i64, String)> {
    let chain = envelope.get("chain")?;
    Some((
        chain.get("seq")?.as_i64()?,
        chain.get("hash")?.as_str()?.to_string(),
    ))
}

/// Verifies one organization's chain (`Some`), or every chain (`None`).
pub async fn verify(sources: &Sources<'_>, org: Option<Uuid>) -> anyhow::Result<AuditVerification> {
    let wanted = org.map(|o| events::audit::chain_of(Some(o)));
    let mut chains: BTreeMap<String, TopicChain> = BTreeMap::new();
    if let Some(chain) = &wanted {
        chains.insert(chain.clone(), topic_chain(chain, sources.key));
    }
    let mut messages = read_topic(sources.kafka, sources.topic, None).await?;
    while let Some(message) = messages.recv().await {
        let message = message?;
        let chain = chain_of_message(&message);
        if wanted.as_ref().is_some_and(|w| *w != chain) {
            continue;
        }
        let state = chains
            .entry(chain.clone())
            .or_insert_with(|| topic_chain(&chain, sources.key));
        if state.broken.is_some() {
            continue;
        }
        let Some(envelope) = message.envelope else {
            state.broken = Some(Break {
                event_id: None,
                seq: None,
                reason: format!(
                    "the message at partition {} offset {} is not JSON: inserted",
                    message.partition, message.offset
                ),
            });
            continue;
        };
        if let (Some(id), Some((seq, hash))) = (id_of(&envelope), link_of(&envelope)) {
            match state.events.get(&id) {
                Some(seen) if seen.hash != hash || seen.seq != seq => {
                    state.broken = Some(Break {
                        event_id: Some(id),
                        seq: Some(seq),
                        reason: "the topic holds two different versions of this event".into(),
                    });
                    continue;
                }
                Some(_) => {}
                None => {
                    state.events.insert(
                        id,
                        Seen {
                            seq,
                            hash,
                            partition: message.partition,
                            offset: message.offset,
                        },
                    );
                }
            }
        }
        if chain == events::audit::PLATFORM_CHAIN {
            state.pending.push(envelope);
        } else if let Err(b) = state.walker.push(&envelope) {
            state.broken = Some(b);
        }
    }
    let mut reports = Vec::new();
    let offsets = audit_offsets(sources).await?;
    for (chain, mut state) in chains {
        if !state.pending.is_empty() {
            state
                .pending
                .sort_by_key(|e| link_of(e).map(|(seq, _)| seq).unwrap_or(0));
            for envelope in std::mem::take(&mut state.pending) {
                if let Err(b) = state.walker.push(&envelope) {
                    state.broken = Some(b);
                    break;
                }
            }
        }
        let mut broken = state.broken.take().map(|b| breaks("topic", b));
        if broken.is_none() {
            broken = journal(sources, &chain, &state).await?;
        }
        if broken.is_none() {
            broken = read_model(sources, &chain, &state, &offsets).await?;
        }
        reports.push(AuditChainReport {
            chain,
            events: state.walker.linked(),
            head_seq: state.walker.linked(),
            head_hash: state.walker.head(),
            checkpoints: state.walker.checkpoints,
            last_checkpoint_seq: state.walker.last_checkpoint,
            broken,
        });
    }
    Ok(AuditVerification {
        object: AuditVerificationObject::Value,
        ok: reports.iter().all(|r| r.broken.is_none()),
        chains: reports,
    })
}

fn topic_chain(chain: &str, key: Option<VerifyingKey>) -> TopicChain {
    TopicChain {
        walker: Walker::new(chain, key),
        broken: None,
        events: HashMap::new(),
        pending: Vec::new(),
    }
}

/// The journal's rows of the chain, in journal order: walked, their columns checked against
/// their envelope, and compared with the topic.
async fn journal(
    sources: &Sources<'_>,
    chain: &str,
    topic: &TopicChain,
) -> anyhow::Result<Option<AuditBreak>> {
    let client = sources.pool.get().await?;
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&chain];
    let rows = client
        .query_raw(
            "SELECT event_id, stream_id, event_type, org_id, envelope::text,
                    NOT EXISTS (SELECT 1 FROM journal_outbox o WHERE o.global_position = journal.global_position)
             FROM journal WHERE COALESCE(org_id::text, 'platform') = $1 ORDER BY global_position",
            params,
        )
        .await?;
    pin_mut!(rows);
    let mut walker = Walker::new(chain, sources.key);
    let mut in_journal = HashSet::new();
    let broken = |id: Uuid, seq: Option<i64>, reason: &str| {
        Some(AuditBreak {
            source: "journal".into(),
            event_id: Some(id),
            seq,
            reason: reason.to_string(),
        })
    };
    while let Some(row) = rows.try_next().await? {
        let id: Uuid = row.get(0);
        let text: &str = row.get(4);
        let Ok(envelope) = serde_json::from_str::<Value>(text) else {
            return Ok(broken(id, None, "its envelope is not JSON"));
        };
        let link = link_of(&envelope);
        let seq = link.as_ref().map(|l| l.0);
        let agrees = id_of(&envelope) == Some(id)
            && envelope.get("stream_id").and_then(Value::as_str) == Some(row.get(1))
            && envelope.get("event_type").and_then(Value::as_str) == Some(row.get(2))
            && envelope
                .get("org_id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Uuid>().ok())
                == row.get::<_, Option<Uuid>>(3);
        if !agrees {
            return Ok(broken(
                id,
                seq,
                "its columns do not match its envelope: altered",
            ));
        }
        match walker.push(&envelope) {
            Ok(Step::Linked) | Ok(Step::Unchained) => {}
            Ok(Step::Duplicate) => {
                return Ok(broken(id, seq, "the journal holds this event twice"))
            }
            Err(b) => return Ok(Some(named_missing("journal", b, &walker, topic))),
        }
        let published: bool = row.get(5);
        if let Some((seq, hash)) = link {
            match topic.events.get(&id) {
                Some(seen) if seen.hash != hash || seen.seq != seq => {
                    return Ok(broken(
                        id,
                        Some(seq),
                        "the journal and the topic hold different versions of this event",
                    ))
                }
                None if published => {
                    return Ok(broken(
                        id,
                        Some(seq),
                        "published, but not on the topic: removed from the topic",
                    ))
                }
                _ => {}
            }
        }
        in_journal.insert(id);
    }
    let mut forged: Vec<(&Uuid, &Seen)> = topic
        .events
        .iter()
        .filter(|(id, _)| !in_journal.contains(*id))
        .collect();
    forged.sort_by_key(|(_, seen)| seen.seq);
    Ok(forged.first().map(|(id, seen)| AuditBreak {
        source: "topic".into(),
        event_id: Some(**id),
        seq: Some(seen.seq),
        reason: "on the topic but not in the journal: forged".into(),
    }))
}

/// A gap names the event after it; the topic says which event is missing there.
fn named_missing(source: &str, b: Break, walker: &Walker, topic: &TopicChain) -> AuditBreak {
    let expected = walker.linked() + 1;
    if b.seq.is_some_and(|seq| seq > expected) {
        if let Some((id, _)) = topic.events.iter().find(|(_, seen)| seen.seq == expected) {
            return AuditBreak {
                source: source.to_string(),
                event_id: Some(*id),
                seq: Some(expected),
                reason: format!("seq {expected} is missing here: removed"),
            };
        }
    }
    breaks(source, b)
}

/// The audit projection's next offset per partition.
async fn audit_offsets(sources: &Sources<'_>) -> anyhow::Result<HashMap<i32, i64>> {
    let client = sources.pool.get().await?;
    let rows = client
        .query(
            "SELECT partition, next_offset FROM projector_offsets WHERE projection = 'audit' AND topic = $1",
            &[&sources.topic],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The audit read model's rows of the chain, in chain order: walked, their columns checked
/// against their envelope, and every event the projection has passed on the topic present.
async fn read_model(
    sources: &Sources<'_>,
    chain: &str,
    topic: &TopicChain,
    offsets: &HashMap<i32, i64>,
) -> anyhow::Result<Option<AuditBreak>> {
    let client = sources.pool.get().await?;
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&chain];
    let rows = client
        .query_raw(
            "SELECT event_id, event_type, org_id, stream_id, stream_version, actor_type, actor_id,
                    correlation_id, occurred_at, data, chain_seq, chain_hash, envelope
             FROM read.audit_log WHERE COALESCE(org_id::text, 'platform') = $1 AND envelope IS NOT NULL
             ORDER BY chain_seq NULLS FIRST, occurred_at",
            params,
        )
        .await?;
    pin_mut!(rows);
    let mut walker = Walker::new(chain, sources.key);
    let mut present = HashSet::new();
    while let Some(row) = rows.try_next().await? {
        let id: Uuid = row.get(0);
        let envelope: Value = row.get(12);
        let link = link_of(&envelope);
        let seq = link.as_ref().map(|l| l.0);
        if !row_agrees(&row, &envelope) {
            return Ok(Some(AuditBreak {
                source: "read_model".into(),
                event_id: Some(id),
                seq,
                reason: "its columns do not match its envelope: altered".into(),
            }));
        }
        if let Err(b) = walker.push(&envelope) {
            return Ok(Some(named_missing("read_model", b, &walker, topic)));
        }
        if let (Some((seq, hash)), Some(seen)) = (&link, topic.events.get(&id)) {
            if seen.hash != *hash || seen.seq != *seq {
                return Ok(Some(AuditBreak {
                    source: "read_model".into(),
                    event_id: Some(id),
                    seq: Some(*seq),
                    reason: "the read model and the topic hold different versions of this event"
                        .into(),
                }));
            }
        } else if link.is_some() {
            return Ok(Some(AuditBreak {
                source: "read_model".into(),
                event_id: Some(id),
                seq,
                reason: "in the read model but not on the topic: inserted".into(),
            }));
        }
        present.insert(id);
    }
    let mut missing: Vec<(&Uuid, &Seen)> = topic
        .events
        .iter()
        .filter(|(id, seen)| {
            !present.contains(*id)
                && offsets
                    .get(&seen.partition)
                    .is_some_and(|next| seen.offset < *next)
        })
        .collect();
    missing.sort_by_key(|(_, seen)| seen.seq);
    Ok(missing.first().map(|(id, seen)| AuditBreak {
        source: "read_model".into(),
        event_id: Some(**id),
        seq: Some(seen.seq),
        reason: "projected, but not in the audit read model: removed".into(),
    }))
}

/// Whether the columns the API filters and shows by say what the envelope says.
fn row_agrees(row: &tokio_postgres::Row, envelope: &Value) -> bool {
    let text = |field: &str| envelope.get(field).and_then(Value::as_str);
    let actor = |field: &str| {
        envelope
            .get("actor")
            .and_then(|a| a.get(field))
            .and_then(Value::as_str)
    };
    let at = text("occurred_at")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let chain = envelope.get("chain");
    id_of(envelope) == Some(row.get(0))
        && text("event_type") == Some(row.get(1))
        && text("org_id").and_then(|s| s.parse::<Uuid>().ok()) == row.get::<_, Option<Uuid>>(2)
        && text("stream_id") == Some(row.get(3))
        && envelope.get("stream_version").and_then(Value::as_i64) == Some(row.get(4))
        && actor("type") == Some(row.get(5))
        && actor("id") == Some(row.get(6))
        && text("correlation_id") == Some(row.get(7))
        && at == Some(row.get::<_, DateTime<Utc>>(8))
        // A chat call's data is stored only in its envelope (migration 0033).
        && row
            .get::<_, Option<Value>>(9)
            .is_none_or(|data| envelope.get("data") == Some(&data))
        && chain.and_then(|c| c.get("seq")).and_then(Value::as_i64) == row.get::<_, Option<i64>>(10)
        && chain.and_then(|c| c.get("hash")).and_then(Value::as_str)
            == row.get::<_, Option<&str>>(11)
}
