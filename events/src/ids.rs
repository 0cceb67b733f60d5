//! Typed identifiers, the one stream id format (`kind:key`), and the one timestamp format
//! (RFC 3339, UTC, milliseconds) every event and every resource is written with.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

macro_rules! ids {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
            Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(raw: &str) -> Result<Self, uuid::Error> {
                raw.parse().map(Self)
            }
        }
    )+};
}

ids! {
    /// An organization, the tenant.
    OrgId;
    /// A user of an organization.
    UserId;
    /// A team of an organization.
    TeamId;
    /// An API key.
    ApiKeyId;
    /// An invoice.
    InvoiceId;
}

/// The kinds of stream the journal holds, each with the prefix of its stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Organization,
    User,
    Team,
    ApiKey,
    /// An organization's subscription; keyed by the organization's id.
    Subscription,
    Invoice,
    /// The closing of one billing period; keyed by the period, `YYYY-MM`.
    BillingPeriod,
    /// One chat call.
    Chat,
    AuthFailure,
    /// A provider's imported model catalog; keyed by the provider's name.
    Catalog,
    /// The signed checkpoints of one audit chain; keyed by the chain (an organization id, or
    /// `platform`).
    AuditChain,
    /// One export of an audit log.
    AuditExport,
    /// An organization's single sign-on configuration; keyed by the organization's id.
    Sso,
    /// An alert rule.
    AlertRule,
    /// One alert raised by a rule.
    Alert,
    /// The deliveries of one alert event to one channel.
    Notification,
    /// One compliance report.
    ComplianceReport,
    /// A custom metric's definition.
    Metric,
    /// One pushed point of a custom metric; keyed by `<metric id>/<the client's point id>`.
    MetricPoint,
    /// A synthetic health check's definition.
    HealthCheck,
    /// One run of a health check.
    HealthCheckRun,
    /// One data-subject request (GDPR access or erasure); keyed by the request's id.
    Person,
}

impl StreamKind {
    const ALL: [StreamKind; 22] = [
        StreamKind::Organization,
        StreamKind::User,
        StreamKind::Team,
        StreamKind::ApiKey,
        StreamKind::Subscription,
        StreamKind::Invoice,
        StreamKind::BillingPeriod,
        StreamKind::Chat,
        StreamKind::AuthFailure,
        StreamKind::Catalog,
        StreamKind::AuditChain,
        StreamKind::AuditExport,
        StreamKind::Sso,
        StreamKind::AlertRule,
        StreamKind::Alert,
        StreamKind::Notification,
        StreamKind::ComplianceReport,
        StreamKind::Metric,
        StreamKind::MetricPoint,
        StreamKind::HealthCheck,
        StreamKind::HealthCheckRun,
        StreamKind::Person,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            StreamKind::Organization => "organization",
            StreamKind::User => "user",
            StreamKind::Team => "team",
            StreamKind::ApiKey => "api_key",
            StreamKind::Subscription => "subscription",
            StreamKind::Invoice => "invoice",
            StreamKind::BillingPeriod => "billing_period",
            StreamKind::Chat => "chat",
            StreamKind::AuthFailure => "auth_failure",
            StreamKind::Catalog => "catalog",
            StreamKind::AuditChain => "audit",
            StreamKind::AuditExport => "audit_export",
            StreamKind::Sso => "sso",
            StreamKind::AlertRule => "alert_rule",
            StreamKind::Alert => "alert",
            StreamKind::Notification => "notification",
            StreamKind::ComplianceReport => "compliance_report",
            StreamKind::Metric => "metric",
            StreamKind::MetricPoint => "metric_point",
            StreamKind::HealthCheck => "health_check",
            StreamKind::HealthCheckRun => "health_check_run",
            StreamKind::Person => "person",
        }
    }
}

/// The stream an event belongs to, written `kind:key` (`team:0193…`). Only this type builds or
/// reads that format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a stream id (kind:key)")]
pub struct BadStreamId(String);

impl StreamId {
    fn of(kind: StreamKind, key: impl fmt::Display) -> Self {
        Self(format!("{}:{key}", kind.prefix()))
    }

    pub fn organization(id: OrgId) -> Self {
        Self::of(StreamKind::Organization, id)
    }

    pub fn user(id: UserId) -> Self {
        Self::of(StreamKind::User, id)
    }

    pub fn team(id: TeamId) -> Self {
        Self::of(StreamKind::Team, id)
    }

    pub fn api_key(id: ApiKeyId) -> Self {
        Self::of(StreamKind::ApiKey, id)
    }

    pub fn subscription(org: OrgId) -> Self {
        Self::of(StreamKind::Subscription, org)
    }

    pub fn invoice(id: InvoiceId) -> Self {
        Self::of(StreamKind::Invoice, id)
    }

    /// `period` is `YYYY-MM`.
    pub fn billing_period(period: impl fmt::Display) -> Self {
        Self::of(StreamKind::BillingPeriod, period)
    }

    pub fn chat(id: Uuid) -> Self {
        Self::of(StreamKind::Chat, id)
    }

    pub fn auth_failure(id: Uuid) -> Self {
        Self::of(StreamKind::AuthFailure, id)
    }

    pub fn catalog(provider: &str) -> Self {
        Self::of(StreamKind::Catalog, provider)
    }

    pub fn audit_chain(chain: &str) -> Self {
        Self::of(StreamKind::AuditChain, chain)
    }

    pub fn audit_export(id: Uuid) -> Self {
        Self::of(StreamKind::AuditExport, id)
    }

    pub fn person_request(id: Uuid) -> Self {
        Self::of(StreamKind::Person, id)
    }

    pub fn sso(org: OrgId) -> Self {
        Self::of(StreamKind::Sso, org)
    }

    pub fn alert_rule(id: Uuid) -> Self {
        Self::of(StreamKind::AlertRule, id)
    }

    pub fn alert(id: Uuid) -> Self {
        Self::of(StreamKind::Alert, id)
    }

    pub fn notification(id: Uuid) -> Self {
        Self::of(StreamKind::Notification, id)
    }

    pub fn compliance_report(id: Uuid) -> Self {
        Self::of(StreamKind::ComplianceReport, id)
    }

    pub fn metric(id: Uuid) -> Self {
        Self::of(StreamKind::Metric, id)
    }

    pub fn metric_point(metric: Uuid, point_id: &str) -> Self {
        Self::of(StreamKind::MetricPoint, format!("{metric}/{point_id}"))
    }

    pub fn health_check(id: Uuid) -> Self {
        Self::of(StreamKind::HealthCheck, id)
    }

    pub fn health_check_run(id: Uuid) -> Self {
        Self::of(StreamKind::HealthCheckRun, id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> Option<StreamKind> {
        let (prefix, _) = self.0.split_once(':')?;
        StreamKind::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// The key after the kind.
    pub fn key(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, key)| key)
    }

    /// The id of a stream of `kind` keyed by a UUID; `None` for any other stream.
    pub fn uuid_of(&self, kind: StreamKind) -> Option<Uuid> {
        (self.kind() == Some(kind))
            .then(|| self.key().parse().ok())
            .flatten()
    }
}

impl FromStr for StreamId {
    type Err = BadStreamId;

    fn from_str(raw: &str) -> Result<Self, BadStreamId> {
        match raw.split_once(':') {
            Some((kind, key)) if !kind.is_empty() && !key.is_empty() => Ok(Self(raw.to_string())),
            _ => Err(BadStreamId(raw.to_string())),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for StreamId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StreamId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// An instant, written RFC 3339 in UTC with milliseconds (`2026-11-27T09:30:00.000Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn at(&self) -> DateTime<Utc> {
        self.0
    }
}

impl std::ops::Deref for Timestamp {
    type Target = DateTime<Utc>;

    fn deref(&self) -> &DateTime<Utc> {
        &self.0
    }
}

impl Timestamp {
    /// Now, truncated to milliseconds so it survives a round trip through the wire format.
    pub fn now() -> Self {
        let now = Utc::now();
        Self(DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}

/// `to_rfc3339_opts(SecondsFormat::Millis, true)` written into `buf` without chrono's formatting
/// machinery (an answer may hold a month of minutes, 43,200 instants); `None` for what that
/// format writes otherwise (a year outside 0..=9999, a leap second), which chrono then writes.
fn rfc3339_millis<'b>(at: &DateTime<Utc>, buf: &'b mut [u8; 24]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9_999)?;
    let nanos = at.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    *buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |end: usize, mut value: u32, width: usize| {
        for i in 0..width {
            buf[end - i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(3, year, 4);
    put(6, at.month(), 2);
    put(9, at.day(), 2);
    put(12, at.hour(), 2);
    put(15, at.minute(), 2);
    put(18, at.second(), 2);
    put(22, nanos / 1_000_000, 3);
    std::str::from_utf8(buf).ok()
}

impl Timestamp {
    /// Appends the instant as it serializes, without the quotes.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        match rfc3339_millis(&self.0, &mut [0; 24]) {
            Some(written) => out.extend_from_slice(written.as_bytes()),
            None => out.extend_from_slice(
                self.0
                    .to_rfc3339_opts(SecondsFormat::Millis, true)
                    .as_bytes(),
            ),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rfc3339_millis(&self.0, &mut [0; 24]) {
            Some(written) => f.write_str(written),
            None => f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true)),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match rfc3339_millis(&self.0, &mut [0; 24]) {
            Some(written) => s.serialize_str(written),
            None => s.collect_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true)),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|at| Self(at.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let chrono = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Millis, true);
        // From year 0 to 9999 by an odd stride in milliseconds, so every field and fraction
        // varies; then the edges and what the fast path leaves to chrono.
        let (first, last) = (-62_167_219_200_000_i64, 253_402_300_799_999_i64);
        let mut millis = first;
        let mut checked = 0;
        while millis <= last {
            let at = DateTime::from_timestamp_millis(millis).expect("in range");
            assert_eq!(Timestamp(at).to_string(), chrono(at), "{millis}");
            millis += 7_777_777_123;
            checked += 1;
        }
        assert!(checked > 40_000);
        let mut edges: Vec<DateTime<Utc>> = [first, last, 0, -1, 1_795_000_000_000]
            .iter()
            .map(|m| DateTime::from_timestamp_millis(*m).expect("in range"))
            .collect();
        edges.push(DateTime::from_timestamp(1_795_000_000, 999_999_999).expect("ns"));
        edges.push(DateTime::from_timestamp(-62_167_219_201, 0).expect("year -1"));
        edges.push(DateTime::from_timestamp(253_402_300_800, 0).expect("year 10000"));
        // A leap second: chrono writes second 60.
        edges.push(DateTime::from_timestamp(1_483_228_799, 1_500_000_000).expect("leap"));
        for at in edges {
            assert_eq!(Timestamp(at).to_string(), chrono(at));
            assert_eq!(
                serde_json::to_string(&Timestamp(at)).expect("json"),
                format!("\"{}\"", chrono(at))
            );
        }
    }

    #[test]
    fn stream_ids_name_their_kind_and_key() {
        let team = TeamId::new();
        let stream = StreamId::team(team);
        assert_eq!(stream.as_str(), format!("team:{team}"));
        assert_eq!(stream.kind(), Some(StreamKind::Team));
        assert_eq!(stream.uuid_of(StreamKind::Team), Some(team.uuid()));
        assert_eq!(
            stream.uuid_of(StreamKind::User),
            None,
            "a team is not a user"
        );
        let period = StreamId::billing_period("2026-11");
        assert_eq!(
            period.uuid_of(StreamKind::BillingPeriod),
            None,
            "not keyed by a UUID"
        );
        assert_eq!(period.key(), "2026-11");
        assert!("team".parse::<StreamId>().is_err());
        assert!(":x".parse::<StreamId>().is_err());
        let back: StreamId = serde_json::from_str("\"user:1\"").expect("stream id");
        assert_eq!(back.kind(), Some(StreamKind::User));
        assert_eq!(
            back.uuid_of(StreamKind::User),
            None,
            "a malformed id is None, never nil"
        );
    }

    #[test]
    fn timestamps_are_utc_milliseconds() {
        let at = DateTime::parse_from_rfc3339("2026-11-27T10:30:00.123456+02:00")
            .expect("time")
            .with_timezone(&Utc);
        let json = serde_json::to_string(&Timestamp(at)).expect("json");
        assert_eq!(json, "\"2026-11-27T08:30:00.123Z\"");
    }
}
