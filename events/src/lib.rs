//! The public contract of AI Hub's event log: the envelope every event travels in, the event
//! types, how they are encoded on the Kafka topic, and the Kafka client settings every producer
//! and consumer of the platform uses. No HTTP and no SQL live here.

pub mod access;
pub mod alerting;
pub mod audit;
pub mod billing;
pub mod catalog;
pub mod chat;
pub mod compliance;
mod envelope;
pub mod ids;
pub mod kafka;
pub mod limits;
pub mod monitoring;
pub mod organization;
pub mod personal;
pub mod schema;
pub mod sso;

pub use envelope::{Actor, ActorType, DecodeError, EventEnvelope, EventPayload};
pub use ids::{ApiKeyId, InvoiceId, OrgId, StreamId, StreamKind, TeamId, Timestamp, UserId};

/// The one topic every event is published to. It keeps events forever and is keyed by
/// organization id.
pub const EVENTS_TOPIC: &str = "aihub.events.v1";

/// Partition count the platform creates the topic with.
pub const EVENTS_TOPIC_PARTITIONS: i32 = 12;
