//! `POST /monitoring/alert-rules`, `PUT` and `DELETE /monitoring/alert-rules/{id}`,
//! `PUT /monitoring/alerts/{id}/acknowledge`.

use std::collections::BTreeMap;

use api::alerting::{
    AcknowledgeAlert, AlertRuleObject, CreateAlertRule, NotificationChannel, UpdateAlertRule,
};
use axum::http::StatusCode;
use axum::response::Response;
use events::alerting::{AlertRuleDefined, AlertSeverity};
use platform::access::Permission;
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{Alert, AlertCommand, AlertError, Rule, RuleCommand, RuleError};
use super::{alert_stream, rule_stream, ALERTING};
use crate::command::{load, short_text, time, Aggregate, Ctx};
use crate::organizations::routes::live_org;
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update, delete))
        .routes(routes!(acknowledge))
}

/// The longest window a rule may look back over: a day of one-minute buckets per evaluation.
pub const MAX_WINDOW_SECONDS: u32 = 86_400;
/// The longest `for` duration.
pub const MAX_FOR_SECONDS: u32 = 86_400;
const MAX_CHANNELS: usize = 10;
const MAX_RECIPIENTS: usize = 20;

/// Alerting is the Pro and Enterprise plans' "advanced monitoring and alerts".
pub fn require_alerts(principal: &platform::Principal) -> Result<(), ApiError> {
    platform::plans::require_feature(principal, "alerts", "Alert rules and alerts")
}

fn unknown_metric(metric: &str) -> ApiError {
    ApiError::invalid_param(
        "metric",
        format!("{metric:?} is not a metric GET /monitoring/metrics lists."),
    )
    .with_code("unknown_metric")
}

/// A rule on a custom metric names one of the organization's own: another organization's id,
/// or one deleted, is unknown (400, as an unknown built-in is).
async fn check_custom_metric(ctx: &Ctx, org_id: Uuid, metric: &str) -> Result<(), ApiError> {
    let Ok(id) = metric.parse::<Uuid>() else {
        return Ok(());
    };
    let client = ctx.state.journal.pool().get().await?;
    match read_api::custom_metrics::find(&client, org_id, id).await? {
        Some(_) => Ok(()),
        None => Err(unknown_metric(metric)),
    }
}

/// Checks a rule's fields; `secret_hint` is the rule's, kept.
#[allow(clippy::too_many_arguments)]
fn definition(
    name: &str,
    metric: &str,
    filter: BTreeMap<String, String>,
    condition: api::alerting::AlertCondition,
    threshold: f64,
    window_seconds: u32,
    for_seconds: u32,
    severity: AlertSeverity,
    channels: Vec<NotificationChannel>,
    secret_hint: String,
) -> Result<AlertRuleDefined, ApiError> {
    let name = short_text("name", name)?;
    let builtin = read_api::monitoring::builtin_metric(metric).is_some();
    if !builtin && metric.parse::<Uuid>().is_err() {
        return Err(unknown_metric(metric));
    }
    // A custom metric's dimensions are its own (a meter's group-by fields, a pushed metric's
    // labels): any short name; whether the metric exists is checked against the organization.
    for (dimension, value) in filter.iter().filter(|_| !builtin) {
        if dimension.is_empty()
            || dimension.chars().count() > 200
            || value.is_empty()
            || value.chars().count() > 200
        {
            return Err(ApiError::invalid_param(
                "filter",
                "A custom metric's filter names a dimension and a value of 1 to 200 characters each.",
            ));
        }
    }
    for (dimension, value) in filter.iter().filter(|_| builtin) {
        let Some(d) = api::monitoring::Dimension::parse(dimension) else {
            return Err(ApiError::invalid_param(
                "filter",
                format!(
                    "{dimension:?} is not a dimension: model, provider, api_key, team or user."
                ),
            ));
        };
        let is_id = !matches!(
            d,
            api::monitoring::Dimension::Model | api::monitoring::Dimension::Provider
        );
        if value.is_empty()
            || value.chars().count() > 200
            || (is_id && value.parse::<Uuid>().is_err())
        {
            return Err(ApiError::invalid_param(
                "filter",
                format!(
                    "filter {dimension} must be a {}.",
                    if is_id {
                        "UUID"
                    } else {
                        "name of 1 to 200 characters"
                    }
                ),
            ));
        }
    }
    if !threshold.is_finite() {
        return Err(ApiError::invalid_param(
            "threshold",
            "threshold must be a finite number.",
        ));
    }
    if window_seconds == 0 || window_seconds > MAX_WINDOW_SECONDS {
        return Err(ApiError::invalid_param(
            "window_seconds",
            format!("window_seconds must be 1 to {MAX_WINDOW_SECONDS}."),
        ));
    }
    if for_seconds > MAX_FOR_SECONDS {
        return Err(ApiError::invalid_param(
            "for_seconds",
            format!("for_seconds must be 0 to {MAX_FOR_SECONDS}."),
        ));
    }
    if channels.len() > MAX_CHANNELS {
        return Err(ApiError::invalid_param(
            "channels",
            format!("A rule has at most {MAX_CHANNELS} channels."),
        ));
    }
    for channel in &channels {
        match channel {
            NotificationChannel::Webhook { url } | NotificationChannel::Slack { url } => {
                super::notify::parse_target(url)
                    .map_err(|m| ApiError::invalid_param("channels", m))?;
            }
            NotificationChannel::Email { to } => {
                if to.is_empty() || to.len() > MAX_RECIPIENTS {
                    return Err(ApiError::invalid_param(
                        "channels",
                        format!("An email channel names 1 to {MAX_RECIPIENTS} addresses."),
                    ));
                }
                for address in to {
                    address.parse::<lettre::Address>().map_err(|_| {
                        ApiError::invalid_param(
                            "channels",
                            format!("{address:?} is not an email address."),
                        )
                    })?;
                }
            }
        }
    }
    Ok(AlertRuleDefined {
        name,
        metric: metric.to_string(),
        filter,
        condition,
        threshold,
        window_seconds,
        for_seconds,
        severity,
        channels,
        secret_hint,
    })
}

/// Creates an alert rule (Pro and Enterprise). The answer holds the webhook signing secret in
/// full, once: store it now.
#[utoipa::path(post, path = "/monitoring/alert-rules", tag = "monitoring", request_body = CreateAlertRule,
    responses((status = 201, body = api::alerting::AlertRule)))]
async fn create(ctx: Ctx, Json(body): Json<CreateAlertRule>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id.map(Into::into))?;
    require_alerts(&ctx.principal)?;
    ctx.principal.require(Permission::MonitoringWrite)?;
    let secret = format!("whsec_{}", random_hex(24)?);
    let hint = secret[secret.len() - 4..].to_string();
    let rule = definition(
        &body.name,
        &body.metric,
        body.filter,
        body.condition,
        body.threshold,
        body.window_seconds,
        body.for_seconds,
        body.severity.unwrap_or(AlertSeverity::Warning),
        body.channels,
        hint,
    )?;
    live_org(&ctx, org_id).await?;
    check_custom_metric(&ctx, org_id, &rule.metric).await?;
    let id = Uuid::now_v7();
    // The secret first: a rule whose append fails leaves an orphan secret, never a rule
    // without one.
    let client = ctx.state.journal.pool().get().await?;
    client
        .execute(
            "INSERT INTO alert_rule_secrets (rule_id, org_id, secret) VALUES ($1, $2, $3)",
            &[&id, &org_id, &secret],
        )
        .await?;
    drop(client);
    let payloads = Rule::default()
        .decide(RuleCommand::Define(rule))
        .map_err(rule_error)?;
    let mut batch = ctx.batch();
    batch.push(&rule_stream(id), Some(org_id), 0, payloads);
    let state = batch
        .events()
        .iter()
        .fold(Rule::default(), Aggregate::apply);
    let projected = batch.commit_to(ALERTING).await?;
    let mut body = rule_resource(&state);
    body.signing_secret = Some(secret);
    Ok(accepted_or(
        StatusCode::CREATED,
        projected,
        &format!("/api/v1/monitoring/alert-rules/{id}"),
        Some(body),
    ))
}

/// Changes the fields given; the signing secret stays.
#[utoipa::path(put, path = "/monitoring/alert-rules/{id}", tag = "monitoring", request_body = UpdateAlertRule,
    params(crate::IdParam, crate::IfMatch),
    responses((status = 200, body = api::alerting::AlertRule)))]
async fn update(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<UpdateAlertRule>,
) -> Result<Response, ApiError> {
    let (rule, version) = load_rule(&ctx, id).await?;
    require_alerts(&ctx.principal)?;
    ctx.principal.require(Permission::MonitoringWrite)?;
    ctx.check_version(version)?;
    let Some(current) = rule.definition.clone() else {
        return Err(ApiError::not_found(format!("No alert rule with id {id}.")));
    };
    let next = definition(
        body.name.as_deref().unwrap_or(&current.name),
        body.metric.as_deref().unwrap_or(&current.metric),
        body.filter.unwrap_or(current.filter),
        body.condition.unwrap_or(current.condition),
        body.threshold.unwrap_or(current.threshold),
        body.window_seconds.unwrap_or(current.window_seconds),
        body.for_seconds.unwrap_or(current.for_seconds),
        body.severity.unwrap_or(current.severity),
        body.channels.unwrap_or(current.channels),
        current.secret_hint,
    )?;
    if Some(next.metric.as_str()) != rule.definition.as_ref().map(|d| d.metric.as_str()) {
        check_custom_metric(&ctx, rule.org_id, &next.metric).await?;
    }
    let payloads = rule.decide(RuleCommand::Define(next)).map_err(rule_error)?;
    let mut batch = ctx.batch();
    batch.push(&rule_stream(id), Some(rule.org_id), version, payloads);
    let state = batch.events().iter().fold(rule, Aggregate::apply);
    let projected = batch.commit_to(ALERTING).await?;
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &format!("/api/v1/monitoring/alert-rules/{id}"),
        Some(rule_resource(&state)),
    ))
}

/// Deletes the rule: it is no longer evaluated, and an alert of it that is open resolves.
#[utoipa::path(delete, path = "/monitoring/alert-rules/{id}", tag = "monitoring",
    params(crate::IdParam, crate::IfMatch),
    responses((status = 204, description = "Deleted")))]
async fn delete(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let (rule, version) = load_rule(&ctx, id).await?;
    require_alerts(&ctx.principal)?;
    ctx.principal.require(Permission::MonitoringWrite)?;
    ctx.check_version(version)?;
    let payloads = rule.decide(RuleCommand::Delete).map_err(rule_error)?;
    let mut batch = ctx.batch();
    batch.push(&rule_stream(id), Some(rule.org_id), version, payloads);
    let projected = batch.commit_to(ALERTING).await?;
    Ok(accepted_or(
        StatusCode::NO_CONTENT,
        projected,
        &format!("/api/v1/monitoring/alert-rules/{id}"),
        None::<()>,
    ))
}

/// Acknowledges a firing alert: someone is on it. The event names who, with the note.
#[utoipa::path(put, path = "/monitoring/alerts/{id}/acknowledge", tag = "monitoring", request_body = AcknowledgeAlert,
    params(crate::IdParam),
    responses((status = 200, body = api::alerting::Alert)))]
async fn acknowledge(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<AcknowledgeAlert>,
) -> Result<Response, ApiError> {
    let note = match body.note {
        Some(n) if n.chars().count() > 2000 || n.chars().any(|c| c.is_control() && c != '\n') => {
            return Err(ApiError::invalid_param(
                "note",
                "note must be at most 2000 characters, without control characters.",
            ))
        }
        Some(n) if n.trim().is_empty() => None,
        other => other,
    };
    let loaded = load::<Alert>(&ctx.state, &alert_stream(id)).await?;
    let alert = loaded.state;
    if alert.triggered.is_none() || !ctx.principal.sees(alert.org_id) {
        return Err(ApiError::not_found(format!("No alert with id {id}.")));
    }
    require_alerts(&ctx.principal)?;
    ctx.principal.require(Permission::MonitoringWrite)?;
    let payloads = alert
        .decide(AlertCommand::Acknowledge { note })
        .map_err(alert_error)?;
    let mut batch = ctx.batch();
    batch.push(
        &alert_stream(id),
        Some(alert.org_id),
        loaded.version,
        payloads,
    );
    let state = batch.events().iter().fold(alert, Aggregate::apply);
    let projected = batch.commit_to(ALERTING).await?;
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &format!("/api/v1/monitoring/alerts/{id}"),
        Some(alert_resource(&state)),
    ))
}

/// A rule the caller may see; anything else is 404.
async fn load_rule(ctx: &Ctx, id: Uuid) -> Result<(Rule, i64), ApiError> {
    let loaded = load::<Rule>(&ctx.state, &rule_stream(id)).await?;
    if !loaded.state.exists() || !ctx.principal.sees(loaded.state.org_id) {
        return Err(ApiError::not_found(format!("No alert rule with id {id}.")));
    }
    Ok((loaded.state, loaded.version))
}

fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the system random source failed: {e}")))?;
    Ok(hex::encode(buf))
}

/// The rule as `GET /monitoring/alert-rules/{id}` answers.
pub fn rule_resource(rule: &Rule) -> api::alerting::AlertRule {
    let d = rule.definition.clone().unwrap_or_else(|| AlertRuleDefined {
        name: String::new(),
        metric: String::new(),
        filter: BTreeMap::new(),
        condition: api::alerting::AlertCondition::Above,
        threshold: 0.0,
        window_seconds: 0,
        for_seconds: 0,
        severity: AlertSeverity::Warning,
        channels: vec![],
        secret_hint: String::new(),
    });
    api::alerting::AlertRule {
        id: rule.id,
        object: AlertRuleObject::Value,
        org_id: rule.org_id.into(),
        name: d.name,
        metric: d.metric,
        filter: d.filter,
        condition: d.condition,
        threshold: d.threshold,
        window_seconds: d.window_seconds,
        for_seconds: d.for_seconds,
        severity: d.severity,
        channels: d.channels,
        secret_hint: d.secret_hint,
        signing_secret: None,
        version: rule.version,
        created_at: time(rule.created_at),
        updated_at: time(rule.updated_at),
    }
}

fn actor(a: &events::Actor) -> api::alerting::HistoryActor {
    let json = serde_json::to_value(a.kind).unwrap_or_default();
    api::alerting::HistoryActor {
        kind: json.as_str().unwrap_or_default().to_string(),
        id: a.id.clone(),
    }
}

/// The alert as `GET /monitoring/alerts/{id}` answers, without its history.
pub fn alert_resource(alert: &Alert) -> api::alerting::Alert {
    use super::aggregate::Status;
    let t = alert.triggered.clone();
    let status = match alert.status {
        Status::Acknowledged => api::alerting::AlertStatus::Acknowledged,
        Status::Resolved => api::alerting::AlertStatus::Resolved,
        _ => api::alerting::AlertStatus::Firing,
    };
    let now = events::Timestamp::now();
    api::alerting::Alert {
        id: alert.id,
        object: api::alerting::AlertObject::Value,
        org_id: alert.org_id.into(),
        rule_id: t.as_ref().map(|t| t.rule_id).unwrap_or_default(),
        rule_name: t.as_ref().map(|t| t.rule_name.clone()).unwrap_or_default(),
        status,
        severity: t.as_ref().map_or(AlertSeverity::Warning, |t| t.severity),
        metric: t.as_ref().map(|t| t.metric.clone()).unwrap_or_default(),
        filter: t.as_ref().map(|t| t.filter.clone()).unwrap_or_default(),
        condition: t
            .as_ref()
            .map_or(api::alerting::AlertCondition::Above, |t| t.condition),
        threshold: t.as_ref().map_or(0.0, |t| t.threshold),
        value: t.as_ref().and_then(|t| t.value),
        breached_since: t.as_ref().map_or(now, |t| t.breached_since),
        triggered_at: alert.triggered_at.map_or(now, events::Timestamp),
        acknowledged_at: time(alert.acknowledged_at),
        acknowledged_by: alert.acknowledged_by.as_ref().map(actor),
        note: alert.note.clone(),
        resolved_at: time(alert.resolved_at),
        resolved_value: alert.resolved_value,
        version: alert.version,
        history: None,
    }
}

fn rule_error(error: RuleError) -> ApiError {
    match error {
        RuleError::NotFound => ApiError::not_found("No such alert rule."),
    }
}

fn alert_error(error: AlertError) -> ApiError {
    match error {
        AlertError::NotFound => ApiError::not_found("No such alert."),
        AlertError::AlreadyAcknowledged => ApiError::conflict(
            "already_acknowledged",
            "The alert was already acknowledged.",
        ),
        AlertError::Resolved => ApiError::conflict(
            "alert_resolved",
            "The alert is resolved; nothing to acknowledge.",
        ),
        AlertError::Exists => ApiError::conflict("already_exists", "The alert exists."),
    }
}
