//! Custom metrics and synthetic health checks of an organization (issue 11). A meter counts the
//! organization's own events; a gauge or counter is pushed by the customer as `metric.recorded`
//! points; a health check calls a model (or, for the platform admin, a URL) on a schedule and
//! records each outcome as `health_check.completed`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Timestamp;

/// How a custom metric gets its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomMetricKind {
    /// Computed from the organization's own events, back-filled from the first one.
    Meter,
    /// Pushed by the customer: a level at a time (aggregated by `avg` unless told otherwise).
    Gauge,
    /// Pushed by the customer: increments (aggregated by `sum` unless told otherwise).
    Counter,
}

impl CustomMetricKind {
    pub fn name(self) -> &'static str {
        match self {
            CustomMetricKind::Meter => "meter",
            CustomMetricKind::Gauge => "gauge",
            CustomMetricKind::Counter => "counter",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Meter, Self::Gauge, Self::Counter]
            .into_iter()
            .find(|k| k.name() == raw)
    }
}

/// The value at a dot-separated path into an event's `data` (`call.model`; a leading `$.` is
/// allowed; a number picks an array's item), if there is one.
pub fn path_get<'a>(data: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    use serde_json::Value;
    let path = path.strip_prefix("$.").unwrap_or(path);
    path.split('.').try_fold(data, |at, segment| match at {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A path as a meter may name it: 1 to 8 segments of letters, digits and `_`, at most 200
/// characters, optionally after `$.`. The canonical form has no `$.`.
pub fn parse_path(raw: &str) -> Option<String> {
    let path = raw.trim();
    let path = path.strip_prefix("$.").unwrap_or(path);
    let segments: Vec<&str> = path.split('.').collect();
    let valid = !path.is_empty()
        && path.len() <= 200
        && segments.len() <= 8
        && segments
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    valid.then(|| path.to_string())
}

/// How the values of one bucket become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    UniqueCount,
    P50,
    P95,
    P99,
}

impl Aggregation {
    pub const ALL: [Aggregation; 9] = [
        Aggregation::Count,
        Aggregation::Sum,
        Aggregation::Avg,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::UniqueCount,
        Aggregation::P50,
        Aggregation::P95,
        Aggregation::P99,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::UniqueCount => "unique_count",
            Aggregation::P50 => "p50",
            Aggregation::P95 => "p95",
            Aggregation::P99 => "p99",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == raw)
    }

    /// The quantile a percentile aggregation asks for.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Aggregation::P50 => Some(0.5),
            Aggregation::P95 => Some(0.95),
            Aggregation::P99 => Some(0.99),
            _ => None,
        }
    }

    /// Whether it needs a value per event (all but `count`).
    pub fn needs_value(self) -> bool {
        self != Aggregation::Count
    }
}

/// What a meter counts: events of one type of its own organization that match `filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MeterSpec {
    /// An event type (`chat.completion.succeeded`).
    pub event_type: String,
    /// Paths into the event's `data` (dot-separated: `call.model` or `model`) and the JSON value
    /// each must equal.
    #[serde(default)]
    pub filter: BTreeMap<String, serde_json::Value>,
    /// The path of the number aggregated (absent for `count`; for `unique_count`, any value).
    #[serde(default)]
    pub value: Option<String>,
    /// Paths whose values split the series into groups.
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// `metric.defined` (stream `metric:<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricDefined {
    pub metric_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub kind: CustomMetricKind,
    pub aggregation: Aggregation,
    #[serde(default)]
    pub unit: Option<String>,
    /// For a meter: what it counts.
    #[serde(default)]
    pub meter: Option<MeterSpec>,
}

/// `metric.deleted`: its values are dropped and nothing counts towards it any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MetricDeleted {
    pub metric_id: Uuid,
}

/// `metric.recorded`: one point of a pushed gauge or counter (stream
/// `metric_point:<metric id>/<point id>`, so a point sent twice is recorded once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricRecorded {
    pub metric_id: Uuid,
    /// The client's id of the point.
    pub point_id: String,
    /// When the value was observed, as the client says.
    pub at: Timestamp,
    pub value: f64,
    /// Labels the series can be grouped and filtered by.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What a synthetic check calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckTarget {
    /// A chat completion of a tiny prompt against a model of the catalog, billed as any call.
    Model { model: String },
    /// A `GET` of a URL (platform admin only).
    Http { url: String },
}

/// `health_check.defined` (stream `health_check:<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheckDefined {
    pub check_id: Uuid,
    pub name: String,
    pub target: CheckTarget,
    pub interval_seconds: u32,
}

/// `health_check.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheckDeleted {
    pub check_id: Uuid,
}

/// `health_check.completed`: one run of a check (stream `health_check_run:<run id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheckCompleted {
    pub check_id: Uuid,
    pub ok: bool,
    pub latency_ms: u64,
    /// The HTTP status the call got, when it got one.
    #[serde(default)]
    pub status: Option<u16>,
    /// Why it failed (an error code or message); absent when ok.
    #[serde(default)]
    pub error: Option<String>,
    /// The chat call's request id, whose `chat.completion.*` event bills it.
    #[serde(default)]
    pub request_id: Option<String>,
}
