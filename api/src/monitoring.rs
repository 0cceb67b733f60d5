//! Monitoring: the metrics an organization can chart and their time series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, Timestamp};

object_name!(MetricObject = "metric");
object_name!(MetricSeriesObject = "metric.series");

/// Where a metric's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Computed by the platform from every chat call.
    Builtin,
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
    /// `chat.requests`, `chat.latency_ms.p95`, …
    pub id: String,
    pub object: MetricObject,
    pub kind: MetricKind,
    pub description: String,
    /// `requests`, `tokens`, `usd_micros`, `ms` or `ratio`.
    pub unit: String,
    /// What its series can be grouped and filtered by.
    pub dimensions: Vec<Dimension>,
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
    pub group_by: Vec<Dimension>,
    /// One series per group, ordered by group; a single series with an empty group when not
    /// grouped. Groups with no call in the range are absent.
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Series {
    /// The group's value of each `group_by` dimension (null: the calls had none, such as a key
    /// without a team).
    pub group: BTreeMap<Dimension, Option<String>>,
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
    /// Comma-separated dimensions: `model`, `provider`, `api_key`, `team`, `user`.
    pub group_by: Option<String>,
    /// Comma-separated `dimension:value` pairs, all of which a call must match
    /// (`model:gpt-4o,provider:openrouter`).
    pub filter: Option<String>,
}
