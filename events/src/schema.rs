//! JSON Schemas of the public event contract, generated from the Rust types. The committed copies
//! under `schemas/events/` are checked against these by a test.

use serde_json::{json, Value};

/// File name → schema, for the envelope and for the `data` of every event type.
pub fn all() -> Vec<(String, Value)> {
    let mut files = vec![("envelope.schema.json".to_string(), envelope())];
    for (name, version, schema) in crate::EventPayload::data_schemas() {
        let mut value = schema.to_value();
        if let Some(object) = value.as_object_mut() {
            object.insert("title".into(), json!(name));
            object.insert(
                "description".into(),
                json!(format!(
                    "`data` of a `{name}` event, schema_version {version}."
                )),
            );
        }
        files.push((format!("{name}.schema.json"), value));
    }
    files
}

fn envelope() -> Value {
    let actor = schemars::schema_for!(crate::Actor).to_value();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "AI Hub event envelope",
        "description": "Every message on aihub.events.v1 is one envelope; `data` follows the schema named by `event_type`.",
        "type": "object",
        "required": ["event_id", "event_type", "schema_version", "occurred_at", "org_id", "stream_id",
                     "stream_version", "actor", "correlation_id", "causation_id", "data"],
        "properties": {
            "event_id": {"type": "string", "format": "uuid", "description": "UUIDv7, unique per event; consumers de-duplicate by it."},
            "event_type": {"type": "string", "enum": crate::EventPayload::data_schemas().iter().map(|(n, _, _)| *n).collect::<Vec<_>>()},
            "schema_version": {"type": "integer", "minimum": 1},
            "occurred_at": {"type": "string", "format": "date-time", "description": "RFC 3339 UTC with milliseconds."},
            "org_id": {"type": ["string", "null"], "format": "uuid"},
            "stream_id": {"type": "string", "description": "`<aggregate>:<uuid>`"},
            "stream_version": {"type": "integer", "minimum": 1},
            "actor": actor,
            "correlation_id": {"type": "string", "description": "The x-request-id of the request that caused the event."},
            "causation_id": {"type": ["string", "null"], "format": "uuid"},
            "data": {"type": "object"},
            "chain": {
                "type": "object",
                "description": "The event's link in its organization's audit chain (events of no organization: the chain `platform`): hash = SHA-256(prev ‖ SHA-256(the envelope without `chain`, as JSON with sorted keys and no whitespace)). Set by the journal; see docs/ARCHITECTURE.md, \"Audit trail\".",
                "required": ["seq", "prev", "hash"],
                "properties": {
                    "seq": {"type": "integer", "minimum": 1},
                    "prev": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Set `AIHUB_BLESS_SCHEMAS=1` to rewrite the committed schemas after a deliberate change.
    #[test]
    fn committed_schemas_match_the_rust_types() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/events");
        let bless = std::env::var("AIHUB_BLESS_SCHEMAS").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for (file, schema) in super::all() {
            let generated = serde_json::to_string_pretty(&schema).expect("serializes") + "\n";
            let path = dir.join(&file);
            if bless {
                std::fs::create_dir_all(&dir).expect("schemas dir");
                std::fs::write(&path, &generated).expect("writes schema");
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
                stale.push(file);
            }
        }
        assert!(
            stale.is_empty(),
            "schemas/events differs from the Rust types for {stale:?}; rerun with AIHUB_BLESS_SCHEMAS=1 after an additive change"
        );
    }
}
