//! Monitoring: the metrics an organization can chart and their time series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, Timestamp};

object_name!(MetricObject = "metric");
object_name!(MetricSeriesObject = "metric.series");
object_name!(RecordedPointsObject = "metric.points");
object_name!(HealthCheckObject = "health_check");

/// Where a metric's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Computed by the platform from every chat call.
    Builtin,
    /// Defined by the organization over its own events; back-filled from the first event.
    Meter,
    /// Pushed by the organization: a level at a time.
    Gauge,
    /// Pushed by the organization: increments.
    Counter,
}

/// What a series can be grouped and filtered by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The public model name the client asked for.
    Model,
    /// The provider that answered (for a failed call, the last one tried).
    Provider,
    /// The API key's id.
    ApiKey,
    /// The team of the key, when it has one.
    Team,
    /// The user the key acts for, when it has one.
    User,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::Model,
        Dimension::Provider,
        Dimension::ApiKey,
        Dimension::Team,
        Dimension::User,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Model => "model",
            Dimension::Provider => "provider",
            Dimension::ApiKey => "api_key",
            Dimension::Team => "team",
            Dimension::User => "user",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == raw)
    }
}

/// The width of a series' buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Step {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
}

impl Step {
    pub fn seconds(self) -> i32 {
        match self {
            Step::Minute => 60,
            Step::Hour => 3_600,
            Step::Day => 86_400,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "1m" => Some(Step::Minute),
            "1h" => Some(Step::Hour),
            "1d" => Some(Step::Day),
            _ => None,
        }
    }
}

/// A metric the organization can chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Metric {
    /// `chat.requests`, `chat.latency_ms.p95`, …; a custom metric's UUID.
    pub id: String,
    pub object: MetricObject,
    pub kind: MetricKind,
    pub description: String,
    /// `requests`, `tokens`, `usd_micros`, `ms` or `ratio`; for a custom metric what it was
    /// given (empty when none).
    pub unit: String,
    /// What its series can be grouped and filtered by: for a built-in metric `model`,
    /// `provider`, `api_key`, `team`, `user`; for a meter its `group_by` paths; for a pushed
    /// metric any label its points carry.
    pub dimensions: Vec<String>,
    /// A custom metric's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A custom metric's aggregation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<String>,
    /// What a meter counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<MeterDefinition>,
    /// A meter's back-fill from the first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
    /// When a custom metric was defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

/// What a meter counts: the organization's events of one type that match a filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeterDefinition {
    /// An event type of the platform (`chat.completion.succeeded`); see `schemas/events`.
    pub event_type: String,
    /// Dot-separated paths into the event's `data` and the JSON value each must equal.
    #[schema(value_type = Object)]
    pub filter: BTreeMap<String, serde_json::Value>,
    /// The path of the number aggregated (none for `count`).
    pub value: Option<String>,
    /// Paths whose values split the series into groups.
    pub group_by: Vec<String>,
}

/// A meter's back-fill: `pending`, `running` or `done`, and the events it counted so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Backfill {
    pub status: String,
    pub events_done: i64,
}

/// `POST /monitoring/metrics`: a custom metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineMetric {
    /// 1 to 200 characters.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `meter` (over the organization's events), `gauge` or `counter` (pushed).
    pub kind: String,
    /// `count`, `sum`, `avg`, `min`, `max`, `unique_count`, `p50`, `p95` or `p99`. A meter
    /// needs one; a gauge defaults to `avg`, a counter to `sum`.
    #[serde(default)]
    pub aggregation: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    /// A meter's event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// A meter's filter: dot-separated paths into the event's `data` and the JSON value each
    /// must equal (`{"provider": "openrouter"}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<BTreeMap<String, serde_json::Value>>,
    /// A meter's value path (`total_tokens`, `call.latency_ms`); required but for `count`.
    #[serde(default)]
    pub value: Option<String>,
    /// A meter's group-by paths (at most 5).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
}

/// One point of a pushed gauge or counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointInput {
    /// The client's id of the point (1 to 128 letters, digits, `.`, `_`, `:`, `-`): a point sent
    /// again with the same id is recorded once.
    pub id: String,
    /// When the value was observed (RFC 3339).
    pub t: String,
    pub value: f64,
    /// Up to 10 labels to group and filter by.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /monitoring/metrics/{id}/data`: up to 1,000 points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPoints {
    pub points: Vec<PointInput>,
}

/// What a push recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordedPoints {
    pub object: RecordedPointsObject,
    pub metric: String,
    /// New points, each now a `metric.recorded` event.
    pub recorded: u64,
    /// Points whose id was recorded before: ignored.
    pub duplicates: u64,
}

/// `POST /monitoring/health/checks`: a synthetic check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineHealthCheck {
    /// 1 to 200 characters.
    pub name: String,
    /// A model of the catalog to call with a tiny prompt (billed like any call).
    #[serde(default)]
    pub model: Option<String>,
    /// An `http(s)` URL to `GET` instead: the platform admin only.
    #[serde(default)]
    pub url: Option<String>,
    /// Seconds between runs: 30 to 86,400 (default 60).
    #[serde(default)]
    pub interval_seconds: Option<u32>,
    /// Platform admin only: the organization the check belongs to.
    #[serde(default)]
    pub org_id: Option<String>,
}

/// A synthetic health check and its latest outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    pub id: String,
    pub object: HealthCheckObject,
    pub org_id: OrgId,
    pub name: String,
    /// The model it calls, for a model check.
    pub model: Option<String>,
    /// The URL it fetches, for an HTTP check.
    pub url: Option<String>,
    pub interval_seconds: u32,
    pub created_at: Timestamp,
    /// `ok`, `failing`, or `pending` before its first run.
    pub status: String,
    pub last_run_at: Option<Timestamp>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<String>,
    pub runs: i64,
    pub failures: i64,
}

/// `GET /monitoring/metrics/{id}/data`: a metric's values, one series per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricSeries {
    pub object: MetricSeriesObject,
    pub metric: String,
    pub org_id: OrgId,
    /// The first bucket's start: `from` rounded down to the step.
    pub from: Timestamp,
    /// Exclusive.
    pub to: Timestamp,
    pub step: Step,
    pub group_by: Vec<String>,
    /// One series per group, ordered by group; a single series with an empty group when not
    /// grouped. Groups with no call in the range are absent.
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Series {
    /// The group's value of each `group_by` dimension (null: the calls had none, such as a key
    /// without a team).
    pub group: BTreeMap<String, Option<String>>,
    /// Buckets in time order; a bucket without calls (or, for a percentile, without values) is
    /// absent.
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Point {
    /// The bucket's start.
    pub t: Timestamp,
    pub value: f64,
}

/// `GET /monitoring/metrics/{id}/data`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricDataQuery {
    /// Platform admin only.
    pub org_id: Option<String>,
    /// A date (`2026-11-01`) or RFC 3339 time; default a day before `to`.
    pub from: Option<String>,
    /// Exclusive; a date or RFC 3339 time; default now.
    pub to: Option<String>,
    /// `1m` (default; at most 31 days), `1h` (at most 366 days) or `1d`.
    pub step: Option<String>,
    /// Comma-separated dimensions: `model`, `provider`, `api_key`, `team`, `user`; for a custom
    /// metric its group-by paths or labels.
    pub group_by: Option<String>,
    /// Comma-separated `dimension:value` pairs, all of which a call must match
    /// (`model:gpt-4o,provider:openrouter`).
    pub filter: Option<String>,
}
