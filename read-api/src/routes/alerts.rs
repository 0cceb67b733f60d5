//! `GET /monitoring/alert-rules`, `GET /monitoring/alert-rules/{id}`, `GET /monitoring/alerts`
//! and `GET /monitoring/alerts/{id}` (with its history), from the alerting projection.

use std::collections::BTreeMap;

use api::alerting::{
    Alert, AlertHistoryEntry, AlertObject, AlertRule, AlertRuleObject, AlertStatus, AlertsQuery,
    HistoryActor,
};
use api::{List, OrgQuery, PageParams};
use axum::extract::State;
use axum::Json;
use platform::access::Permission;
use platform::http::{PathId, Query};
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules))
        .routes(routes!(show_rule))
        .routes(routes!(list_alerts))
        .routes(routes!(show_alert))
}

/// Alerting is the Pro and Enterprise plans' "advanced monitoring and alerts".
fn require_alerts(principal: &Principal) -> Result<(), ApiError> {
    platform::plans::require_feature(principal, "alerts", "Alert rules and alerts")
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Option<T> {
    serde_json::from_value(value).ok()
}

fn enum_of<T: serde::de::DeserializeOwned>(raw: String) -> Option<T> {
    parse(Value::String(raw))
}

const RULES: &str =
    "SELECT r.id, r.org_id, r.name, r.metric, r.filter, r.condition, r.threshold, r.window_seconds,
        r.for_seconds, r.severity, r.channels, r.secret_hint, r.version, r.created_at, r.updated_at
     FROM (SELECT * FROM read.alert_rules WHERE NOT deleted) r";

fn rule_from_row(row: &tokio_postgres::Row) -> AlertRule {
    AlertRule {
        id: row.get("id"),
        object: AlertRuleObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        name: row.get("name"),
        metric: row.get("metric"),
        filter: parse(row.get("filter")).unwrap_or_default(),
        condition: enum_of(row.get("condition")).unwrap_or(api::alerting::AlertCondition::Above),
        threshold: row.get("threshold"),
        window_seconds: row.get::<_, i32>("window_seconds") as u32,
        for_seconds: row.get::<_, i32>("for_seconds") as u32,
        severity: enum_of(row.get("severity")).unwrap_or(api::alerting::AlertSeverity::Warning),
        channels: parse(row.get("channels")).unwrap_or_default(),
        secret_hint: row.get("secret_hint"),
        signing_secret: None,
        version: row.get("version"),
        created_at: scope::time(row.get("created_at")),
        updated_at: scope::time(row.get("updated_at")),
    }
}

const RULE_TABLE: scope::OrgTable<AlertRule> = scope::OrgTable {
    select: RULES,
    alias: "r",
    permission: Permission::MonitoringRead,
    noun: "alert rule",
    to_json: rule_from_row,
    key: |r| r.id,
};

#[derive(Debug, Deserialize)]
struct RulesQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
}

/// The organization's alert rules, in id order (Pro and Enterprise). The signing secret shows
/// only as its last characters.
#[utoipa::path(get, path = "/monitoring/alert-rules", tag = "monitoring", params(PageParams, OrgQuery),
    responses((status = 200, body = List<AlertRule>)))]
async fn list_rules(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<RulesQuery>,
) -> Result<Json<List<AlertRule>>, ApiError> {
    scope::org(&principal, query.org_id.as_deref())?;
    require_alerts(&principal)?;
    Ok(Json(
        RULE_TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

/// One alert rule.
#[utoipa::path(get, path = "/monitoring/alert-rules/{id}", tag = "monitoring", params(scope::IdParam),
    responses((status = 200, body = AlertRule)))]
async fn show_rule(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<AlertRule>, ApiError> {
    let row = RULE_TABLE.row(&state, &principal, id).await?;
    require_alerts(&principal)?;
    Ok(Json(rule_from_row(&row)))
}

const ALERTS: &str =
    "SELECT a.id, a.org_id, a.rule_id, a.rule_name, a.status, a.severity, a.metric, a.filter,
        a.condition, a.threshold, a.value, a.breached_since, a.triggered_at, a.acknowledged_at,
        a.acknowledged_by, a.note, a.resolved_at, a.resolved_value, a.version
     FROM read.alerts a";

fn actor(value: Option<Value>) -> Option<HistoryActor> {
    let value = value?;
    Some(HistoryActor {
        kind: value["type"].as_str().unwrap_or_default().to_string(),
        id: value["id"].as_str().unwrap_or_default().to_string(),
    })
}

fn alert_from_row(row: &tokio_postgres::Row) -> Alert {
    let time = |col: &str| api::Timestamp(row.get(col));
    Alert {
        id: row.get("id"),
        object: AlertObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        rule_id: row.get("rule_id"),
        rule_name: row.get("rule_name"),
        status: AlertStatus::parse(row.get("status")).unwrap_or(AlertStatus::Firing),
        severity: enum_of(row.get("severity")).unwrap_or(api::alerting::AlertSeverity::Warning),
        metric: row.get("metric"),
        filter: parse::<BTreeMap<String, String>>(row.get("filter")).unwrap_or_default(),
        condition: enum_of(row.get("condition")).unwrap_or(api::alerting::AlertCondition::Above),
        threshold: row.get("threshold"),
        value: row.get("value"),
        breached_since: time("breached_since"),
        triggered_at: time("triggered_at"),
        acknowledged_at: scope::time(row.get("acknowledged_at")),
        acknowledged_by: actor(row.get("acknowledged_by")),
        note: row.get("note"),
        resolved_at: scope::time(row.get("resolved_at")),
        resolved_value: row.get("resolved_value"),
        version: row.get("version"),
        history: None,
    }
}

const ALERT_TABLE: scope::OrgTable<Alert> = scope::OrgTable {
    select: ALERTS,
    alias: "a",
    permission: Permission::MonitoringRead,
    noun: "alert",
    to_json: alert_from_row,
    key: |a| a.id,
};

/// The organization's alerts, newest first within each page's id order (ids are UUIDv7, so id
/// order is the order they fired in), optionally of one status (Pro and Enterprise).
#[utoipa::path(get, path = "/monitoring/alerts", tag = "monitoring", params(AlertsQuery),
    responses((status = 200, body = List<Alert>)))]
async fn list_alerts(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<AlertsQuery>,
) -> Result<Json<List<Alert>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    require_alerts(&principal)?;
    principal.require(Permission::MonitoringRead)?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(AlertStatus::parse(raw).ok_or_else(|| {
            ApiError::invalid_param("status", "status must be firing, acknowledged or resolved.")
        })?),
    };
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let after = scope::after(&page)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "{ALERTS} WHERE a.org_id = $1 AND ($2::text IS NULL OR a.status = $2)
                 AND ($3::uuid IS NULL OR a.id > $3) ORDER BY a.id LIMIT $4"
            ),
            &[
                &org_id,
                &status.map(AlertStatus::as_str),
                &after,
                &(page.limit + 1),
            ],
        )
        .await?;
    let items = rows.iter().map(alert_from_row).collect();
    Ok(Json(List::from_rows(items, &page, |a: &Alert| {
        a.id.to_string()
    })))
}

/// One alert with its history: triggered, acknowledged, resolved, and every notification
/// attempt, oldest first.
#[utoipa::path(get, path = "/monitoring/alerts/{id}", tag = "monitoring", params(scope::IdParam),
    responses((status = 200, body = Alert)))]
async fn show_alert(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Alert>, ApiError> {
    let row = ALERT_TABLE.row(&state, &principal, id).await?;
    require_alerts(&principal)?;
    let mut alert = alert_from_row(&row);
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT event_id, event_type, occurred_at, actor, correlation_id, data
             FROM read.alert_history WHERE alert_id = $1 ORDER BY occurred_at, event_id",
            &[&id],
        )
        .await?;
    alert.history = Some(
        rows.iter()
            .map(|r| AlertHistoryEntry {
                event_id: r.get("event_id"),
                event_type: r.get("event_type"),
                occurred_at: api::Timestamp(r.get("occurred_at")),
                actor: actor(r.get("actor")).unwrap_or(HistoryActor {
                    kind: String::new(),
                    id: String::new(),
                }),
                correlation_id: r.get("correlation_id"),
                data: r.get("data"),
            })
            .collect(),
    );
    Ok(Json(alert))
}
