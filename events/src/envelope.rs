use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::*;
use crate::alerting::{
    AlertAcknowledged, AlertResolved, AlertRuleDefined, AlertRuleDeleted, AlertTriggered,
    NotificationDelivered, NotificationFailed,
};
use crate::audit::{AuditCheckpoint, AuditExported, ChainLink};
use crate::billing::{
    BillingPeriodClosed, DowngradeCancelled, DowngradeScheduled, InvoiceIssued, InvoicePaid,
    SubscriptionStarted, SubscriptionUpgraded,
};
use crate::catalog::CatalogSynced;
use crate::chat::{ChatCompletionFailed, ChatCompletionSucceeded};
use crate::ids::{StreamId, Timestamp};
use crate::limits::LimitsSet;
use crate::monitoring::{
    HealthCheckCompleted, HealthCheckDefined, HealthCheckDeleted, MetricDefined, MetricDeleted,
    MetricRecorded,
};
use crate::organization::{OrganizationCreated, OrganizationDeleted, OrganizationUpdated};
use crate::personal::{PersonErased, PersonExported};
use crate::sso::{SsoConfigured, SsoRemoved};

/// Declares the event types once: the enum variant, its wire name and its schema version.
macro_rules! event_types {
    ($( $variant:ident => $name:literal, version $version:literal, $data:ty; )*) => {
        /// Every event type of the platform, with its type-specific data. On the wire the
        /// variant is the envelope's `event_type` and its data the envelope's `data`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "event_type", content = "data")]
        pub enum EventPayload {
            $( #[serde(rename = $name)] $variant($data), )*
        }

        impl EventPayload {
            /// Every event type name.
            pub const TYPES: &'static [&'static str] = &[ $( $name, )* ];

            /// The `noun.past_tense` name of the event type.
            pub fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $name, )* }
            }

            /// The schema version this build writes for the event type.
            pub fn schema_version(&self) -> u32 {
                match self { $( Self::$variant(_) => $version, )* }
            }

            /// The payload of type `event_type` read from its `data` text.
            fn from_wire(
                event_type: &str,
                data: &serde_json::value::RawValue,
            ) -> Result<Self, serde_json::Error> {
                match event_type {
                    $( $name => serde_json::from_str(data.get()).map(Self::$variant), )*
                    other => Err(serde::de::Error::unknown_variant(other, Self::TYPES)),
                }
            }

            /// Every event type name with the JSON Schema of its `data`.
            pub fn data_schemas() -> Vec<(&'static str, u32, schemars::Schema)> {
                vec![ $( ($name, $version, schemars::schema_for!($data)), )* ]
            }
        }
    };
}

event_types! {
    OrganizationCreated => "organization.created", version 1, OrganizationCreated;
    OrganizationUpdated => "organization.updated", version 1, OrganizationUpdated;
    OrganizationDeleted => "organization.deleted", version 1, OrganizationDeleted;
    OwnerAdded => "organization.owner_added", version 1, OwnerAdded;
    OwnerRemoved => "organization.owner_removed", version 1, OwnerRemoved;
    UserCreated => "user.created", version 1, UserCreated;
    RoleAssigned => "user.role_assigned", version 1, RoleAssigned;
    RoleRemoved => "user.role_removed", version 1, RoleRemoved;
    TeamCreated => "team.created", version 1, TeamCreated;
    TeamUpdated => "team.updated", version 1, TeamUpdated;
    TeamMemberAdded => "team.member_added", version 1, TeamMemberAdded;
    TeamMemberRemoved => "team.member_removed", version 1, TeamMemberRemoved;
    ApiKeyCreated => "api_key.created", version 1, ApiKeyCreated;
    ApiKeyUpdated => "api_key.updated", version 1, ApiKeyUpdated;
    ApiKeyPermissionsChanged => "api_key.permissions_changed", version 1, ApiKeyPermissionsChanged;
    ApiKeyRevoked => "api_key.revoked", version 1, ApiKeyRevoked;
    OrganizationLimitsSet => "organization.limits_set", version 1, LimitsSet;
    ApiKeyLimitsSet => "api_key.limits_set", version 1, LimitsSet;
    AuthFailed => "auth.failed", version 1, AuthFailed;
    ChatCompletionSucceeded => "chat.completion.succeeded", version 1, ChatCompletionSucceeded;
    ChatCompletionFailed => "chat.completion.failed", version 1, ChatCompletionFailed;
    SubscriptionStarted => "subscription.started", version 1, SubscriptionStarted;
    SubscriptionUpgraded => "subscription.upgraded", version 1, SubscriptionUpgraded;
    DowngradeScheduled => "subscription.downgrade_scheduled", version 1, DowngradeScheduled;
    DowngradeCancelled => "subscription.downgrade_cancelled", version 1, DowngradeCancelled;
    InvoiceIssued => "invoice.issued", version 1, InvoiceIssued;
    InvoicePaid => "invoice.paid", version 1, InvoicePaid;
    BillingPeriodClosed => "billing.period_closed", version 1, BillingPeriodClosed;
    CatalogSynced => "catalog.synced", version 1, CatalogSynced;
    AuditCheckpoint => "audit.checkpoint", version 1, AuditCheckpoint;
    AuditExported => "audit.exported", version 1, AuditExported;
    SsoConfigured => "organization.sso_configured", version 1, SsoConfigured;
    SsoRemoved => "organization.sso_removed", version 1, SsoRemoved;
    AlertRuleCreated => "alert_rule.created", version 1, AlertRuleDefined;
    AlertRuleUpdated => "alert_rule.updated", version 1, AlertRuleDefined;
    AlertRuleDeleted => "alert_rule.deleted", version 1, AlertRuleDeleted;
    AlertTriggered => "alert.triggered", version 1, AlertTriggered;
    AlertAcknowledged => "alert.acknowledged", version 1, AlertAcknowledged;
    AlertResolved => "alert.resolved", version 1, AlertResolved;
    NotificationDelivered => "notification.delivered", version 1, NotificationDelivered;
    NotificationFailed => "notification.failed", version 1, NotificationFailed;
    ComplianceReportRequested => "compliance.report_requested", version 1, crate::compliance::ComplianceReportRequested;
    ComplianceReportGenerated => "compliance.report_generated", version 1, crate::compliance::ComplianceReportGenerated;
    ComplianceReportFailed => "compliance.report_failed", version 1, crate::compliance::ComplianceReportFailed;
    MetricDefined => "metric.defined", version 1, MetricDefined;
    MetricDeleted => "metric.deleted", version 1, MetricDeleted;
    MetricRecorded => "metric.recorded", version 1, MetricRecorded;
    HealthCheckDefined => "health_check.defined", version 1, HealthCheckDefined;
    HealthCheckDeleted => "health_check.deleted", version 1, HealthCheckDeleted;
    HealthCheckCompleted => "health_check.completed", version 1, HealthCheckCompleted;
    PersonErased => "person.erased", version 1, PersonErased;
    PersonExported => "person.exported", version 1, PersonExported;
}

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    ApiKey,
    User,
    PlatformAdmin,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorType,
    pub id: String,
    #[serde(default)]
    pub ip: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            kind: ActorType::System,
            id: "aihub".into(),
            ip: None,
        }
    }
}

/// The envelope of DESIGN.md §2, identical for every event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    #[serde(flatten)]
    pub payload: EventPayload,
    pub schema_version: u32,
    pub occurred_at: Timestamp,
    pub org_id: Option<Uuid>,
    pub stream_id: StreamId,
    pub stream_version: i64,
    pub actor: Actor,
    pub correlation_id: String,
    pub causation_id: Option<Uuid>,
    /// The event's link in its organization's audit chain, set by the journal when it is
    /// appended (`crate::audit`); absent before that, and on events older than the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
}

/// The envelope as `EventEnvelope::decode` reads it: `data` kept as its text until the type is
/// known. The derived decoder of the flattened payload buffers the whole envelope in serde's
/// generic tree and reads it a second time; every projection decodes every message, so this one
/// pass is most of their decoding (the `codec` bench).
#[derive(Deserialize)]
struct Wire<'a> {
    event_id: Uuid,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    schema_version: u32,
    occurred_at: Timestamp,
    org_id: Option<Uuid>,
    stream_id: StreamId,
    stream_version: i64,
    actor: Actor,
    correlation_id: String,
    causation_id: Option<Uuid>,
    #[serde(default)]
    chain: Option<ChainLink>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event is not valid JSON for a known event type: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "event type {event_type} has schema version {found}, this build reads up to {supported}"
    )]
    UnsupportedVersion {
        event_type: String,
        found: u32,
        supported: u32,
    },
}

impl EventEnvelope {
    /// A new event with a fresh UUIDv7 id and the current time, truncated to milliseconds so
    /// that it survives a round trip through the wire format unchanged.
    pub fn new(
        payload: EventPayload,
        org_id: Option<Uuid>,
        stream_id: StreamId,
        stream_version: i64,
        actor: Actor,
        correlation_id: String,
    ) -> Self {
        let occurred_at = Timestamp::now();
        Self {
            event_id: Uuid::now_v7(),
            schema_version: payload.schema_version(),
            payload,
            occurred_at,
            org_id,
            stream_id,
            stream_version,
            actor,
            correlation_id,
            causation_id: None,
            chain: None,
        }
    }

    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data structures to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: Wire = serde_json::from_slice(bytes)?;
        let envelope = Self {
            event_id: wire.event_id,
            payload: EventPayload::from_wire(&wire.event_type, wire.data)?,
            schema_version: wire.schema_version,
            occurred_at: wire.occurred_at,
            org_id: wire.org_id,
            stream_id: wire.stream_id,
            stream_version: wire.stream_version,
            actor: wire.actor,
            correlation_id: wire.correlation_id,
            causation_id: wire.causation_id,
            chain: wire.chain,
        };
        let supported = envelope.payload.schema_version();
        if envelope.schema_version > supported {
            return Err(DecodeError::UnsupportedVersion {
                event_type: envelope.event_type().to_string(),
                found: envelope.schema_version,
                supported,
            });
        }
        Ok(envelope)
    }

    /// The Kafka message key: the organization id, or the stream id for platform events, so
    /// every event of one tenant lands in one partition, in order.
    pub fn partition_key(&self) -> String {
        match self.org_id {
            Some(org) => org.to_string(),
            None => self.stream_id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventEnvelope {
        EventEnvelope::new(
            EventPayload::OrganizationCreated(OrganizationCreated {
                name: "Acme".into(),
                slug: "acme".into(),
                owner_email: None,
            }),
            Some(Uuid::now_v7()),
            crate::StreamId::organization(Uuid::now_v7().into()),
            1,
            Actor::system(),
            "req-1".into(),
        )
    }

    #[test]
    fn envelope_round_trips_through_the_wire_format() {
        let event = sample();
        let decoded = EventEnvelope::decode(&event.encode()).expect("decodes");
        assert_eq!(decoded, event);
    }

    #[test]
    fn wire_format_has_every_envelope_field_at_the_top_level() {
        let json: serde_json::Value = serde_json::from_slice(&sample().encode()).expect("json");
        for field in [
            "event_id",
            "event_type",
            "schema_version",
            "occurred_at",
            "org_id",
            "stream_id",
            "stream_version",
            "actor",
            "correlation_id",
            "causation_id",
            "data",
        ] {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        assert_eq!(json["event_type"], "organization.created");
        assert_eq!(json["data"]["slug"], "acme");
        let at = json["occurred_at"].as_str().expect("string");
        assert!(
            at.ends_with('Z') && at.len() == "2026-01-01T00:00:00.000Z".len(),
            "{at}"
        );
    }

    #[test]
    fn decode_reads_what_the_derived_decoder_reads() {
        let mut chat = EventEnvelope::new(
            EventPayload::ChatCompletionFailed(crate::chat::ChatCompletionFailed {
                call: crate::chat::ChatCall {
                    request_id: "req \"q\" \u{e9}\\".into(),
                    api_key_id: Some(Uuid::now_v7()),
                    team_id: None,
                    user_id: None,
                    model: "m".into(),
                    streamed: false,
                    attempts: vec![],
                    latency_ms: 3,
                },
                status: 429,
                error_code: "rate_limited".into(),
            }),
            Some(Uuid::now_v7()),
            crate::StreamId::chat(Uuid::now_v7()),
            1,
            Actor {
                kind: ActorType::ApiKey,
                id: "key\u{1F600}".into(),
                ip: Some("10.0.0.1".into()),
            },
            "corr\t1".into(),
        );
        chat.causation_id = Some(Uuid::now_v7());
        chat.chain = Some(ChainLink {
            seq: 7,
            prev: "0".repeat(64),
            hash: "f".repeat(64),
        });
        for event in [sample(), chat] {
            let value = serde_json::to_value(&event).expect("value");
            // As serialized from the type, and as the journal stores it (canonical: sorted).
            for text in [
                event.encode(),
                crate::audit::canonical_text(&value).0.into_bytes(),
            ] {
                let read = EventEnvelope::decode(&text).expect("decodes");
                let derived: EventEnvelope = serde_json::from_slice(&text).expect("derived");
                assert_eq!(read, derived);
                assert_eq!(read, event);
            }
        }
    }

    #[test]
    fn an_unknown_event_type_or_a_missing_member_is_an_error() {
        let mut json: serde_json::Value = serde_json::from_slice(&sample().encode()).expect("json");
        json["event_type"] = "organization.renamed_in_a_later_build".into();
        let err = EventEnvelope::decode(json.to_string().as_bytes()).expect_err("refused");
        assert!(err.to_string().contains("unknown variant"), "{err}");
        for member in ["data", "event_id", "stream_id", "actor"] {
            let mut json: serde_json::Value =
                serde_json::from_slice(&sample().encode()).expect("json");
            json.as_object_mut().expect("object").remove(member);
            let err = EventEnvelope::decode(json.to_string().as_bytes()).expect_err(member);
            assert!(err.to_string().contains(member), "{member}: {err}");
        }
    }

    #[test]
    fn a_newer_schema_version_is_refused_not_misread() {
        let mut json: serde_json::Value = serde_json::from_slice(&sample().encode()).expect("json");
        json["schema_version"] = 99.into();
        let err = EventEnvelope::decode(json.to_string().as_bytes()).expect_err("refused");
        assert!(matches!(
            err,
            DecodeError::UnsupportedVersion { found: 99, .. }
        ));
    }
}
