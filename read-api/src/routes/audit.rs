//! `GET /audit/logs` and `GET /audit/logs/{id}`: the organization's events from the audit read
//! model (`read.audit_log`, filled by the audit projection and nothing else), newest first.

use api::audit::{
    ActorKind, AuditActor, AuditChainLink, AuditChange, AuditLog, AuditLogDetail, AuditLogObject,
    AuditLogQuery, AuditPublicKey, AuditPublicKeyObject, AuditState, AuditStateQuery,
    AuditVerification,
};
use api::{List, OrgQuery};
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use platform::access::Permission;
use platform::http::PathId;
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(public_key))
        .routes(routes!(verify))
        .routes(routes!(state_at))
}

/// The event's data in the audit row aliased `alias`: its `data` column, or for a chat call
/// (written without one, migration 0033) its envelope's.
pub(crate) fn data_of(alias: &str) -> String {
    format!("COALESCE({alias}.data, ({alias}.envelope -> 'data')::jsonb, 'null'::jsonb)")
}

/// A row's columns.
fn columns() -> String {
    format!(
        "a.event_id, a.event_type, a.org_id, a.stream_id, a.stream_version, a.actor_type,
        a.actor_id, a.actor_ip, a.correlation_id, a.causation_id, a.occurred_at,
        {} AS data, a.envelope -> 'chain' AS chain",
        data_of("a")
    )
}

pub(crate) fn from_row(row: &tokio_postgres::Row) -> AuditLog {
    let actor_type: &str = row.get("actor_type");
    AuditLog {
        id: row.get("event_id"),
        object: AuditLogObject::Value,
        event_type: row.get("event_type"),
        org_id: row.get::<_, Option<Uuid>>("org_id").map(Into::into),
        stream_id: row.get("stream_id"),
        stream_version: row.get("stream_version"),
        actor: AuditActor {
            kind: ActorKind::parse(actor_type).unwrap_or(ActorKind::System),
            id: row.get("actor_id"),
            ip: row.get("actor_ip"),
        },
        correlation_id: row.get("correlation_id"),
        causation_id: row.get("causation_id"),
        occurred_at: row.get::<_, DateTime<Utc>>("occurred_at").into(),
        data: row.get("data"),
        chain: row
            .get::<_, Option<Value>>("chain")
            .and_then(|c| serde_json::from_value::<AuditChainLink>(c).ok()),
    }
}

/// The filters of a list or an export, checked, in the caller's organization.
pub(crate) struct Filters {
    pub org_id: Uuid,
    pub checked: api::audit::CheckedFilters,
}

impl Filters {
    pub(crate) fn parse(principal: &Principal, query: &AuditLogQuery) -> Result<Self, ApiError> {
        let org_id = scope::org(principal, query.org_id.as_deref())?;
        principal.require(Permission::AuditRead)?;
        Ok(Self {
            org_id,
            checked: query.filters().check()?,
        })
    }

    /// The WHERE clause over alias `a`, with the filters as `$1`..`$8`.
    pub(crate) const WHERE: &'static str = "a.org_id = $1
        AND ($2::text IS NULL OR a.actor_type = $2) AND ($3::text IS NULL OR a.actor_id = $3)
        AND ($4::text IS NULL OR a.event_type = $4) AND ($5::text IS NULL OR a.stream_id = $5)
        AND ($6::text IS NULL OR a.correlation_id = $6)
        AND ($7::timestamptz IS NULL OR a.occurred_at >= $7) AND ($8::timestamptz IS NULL OR a.occurred_at < $8)";

    pub(crate) fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        let c = &self.checked;
        vec![
            &self.org_id,
            &c.actor_type,
            &c.actor_id,
            &c.event_type,
            &c.resource,
            &c.correlation_id,
            &c.from,
            &c.to,
        ]
    }
}

/// A page position: the last row's time (microseconds) and id (audit logs, compliance reports).
pub(super) fn cursor(
    page: &platform::pagination::Page,
) -> Result<Option<(DateTime<Utc>, Uuid)>, ApiError> {
    let Some(raw) = page.after.as_deref() else {
        return Ok(None);
    };
    raw.split_once('_')
        .and_then(|(micros, id)| {
            Some((
                DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                id.parse().ok()?,
            ))
        })
        .map(Some)
        .ok_or_else(|| ApiError::invalid_param("cursor", "cursor is not one this API returned."))
}

/// The organization's events, newest first, filtered by actor, event type, resource, request
/// and time.
#[utoipa::path(get, path = "/audit/logs", tag = "audit", params(AuditLogQuery),
    responses((status = 200, body = List<AuditLog>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<AuditLogQuery>,
) -> Result<Json<List<AuditLog>>, ApiError> {
    let filters = Filters::parse(&principal, &query)?;
    let page = PageQuery {
        limit: query.limit.clone(),
        cursor: query.cursor.clone(),
    }
    .page()?;
    let after = cursor(&page)?;
    let (after_at, after_id) = (after.map(|a| a.0), after.map(|a| a.1));
    let mut params = filters.params();
    params.push(&after_at);
    params.push(&after_id);
    let limit = page.limit + 1;
    params.push(&limit);
    let sql = format!(
        "SELECT {} FROM read.audit_log a
         WHERE {} AND ($9::timestamptz IS NULL OR (a.occurred_at, a.event_id) < ($9, $10))
         ORDER BY a.occurred_at DESC, a.event_id DESC LIMIT $11",
        columns(),
        Filters::WHERE
    );
    let client = state.pool.get().await?;
    let rows = client.query(&sql, &params).await?;
    let items = rows.iter().map(from_row).collect();
    Ok(Json(List::from_rows(items, &page, |log: &AuditLog| {
        format!("{}_{}", log.occurred_at.timestamp_micros(), log.id)
    })))
}

/// The event types whose changes are shown field by field.
const UPDATES: [&str; 5] = [
    "organization.updated",
    "team.updated",
    "api_key.updated",
    "api_key.permissions_changed",
    "subscription.upgraded",
];

/// One event: its whole envelope and, for an update, each field before and after.
#[utoipa::path(get, path = "/audit/logs/{id}", tag = "audit", params(scope::IdParam),
    responses((status = 200, body = AuditLogDetail)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<AuditLogDetail>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {}, a.envelope AS whole FROM read.audit_log a WHERE a.event_id = $1",
                columns()
            ),
            &[&id],
        )
        .await?;
    let row = match row {
        Some(row)
            if row
                .get::<_, Option<Uuid>>("org_id")
                .is_some_and(|o| principal.sees(o)) =>
        {
            row
        }
        _ => return Err(ApiError::not_found(format!("No audit log with id {id}."))),
    };
    principal.require(Permission::AuditRead)?;
    let log = from_row(&row);
    let envelope: Option<Value> = row.get("whole");
    let changes = if UPDATES.contains(&log.event_type.as_str()) {
        let earlier = client
            .query(
                &format!(
                    "SELECT {} FROM read.audit_log a
                     WHERE org_id = $1 AND stream_id = $2 AND stream_version < $3
                     ORDER BY stream_version",
                    data_of("a")
                ),
                &[
                    &log.org_id.map(|o| o.uuid()),
                    &log.stream_id,
                    &log.stream_version,
                ],
            )
            .await?;
        let history: Vec<Value> = earlier.iter().map(|r| r.get(0)).collect();
        Some(changes(&log.event_type, &history, &log.data))
    } else {
        None
    };
    let envelope = envelope.unwrap_or_else(|| serde_json::to_value(&log).unwrap_or_default());
    Ok(Json(AuditLogDetail {
        log,
        envelope,
        changes,
    }))
}

/// The Ed25519 key whose signatures the `audit.checkpoint` events carry; 404
/// `audit_signing_not_configured` when the platform has none.
#[utoipa::path(get, path = "/audit/public-key", tag = "audit",
    responses((status = 200, body = AuditPublicKey)))]
async fn public_key(
    State(state): State<ReadState>,
    principal: Principal,
) -> Result<Json<AuditPublicKey>, ApiError> {
    principal.require(Permission::AuditRead)?;
    let key = state.audit.public_key.ok_or_else(|| {
        ApiError::not_found(
            "This platform signs no audit checkpoints (AIHUB_AUDIT_SIGNING_KEY is unset).",
        )
        .with_code("audit_signing_not_configured")
    })?;
    Ok(Json(AuditPublicKey {
        object: AuditPublicKeyObject::Value,
        algorithm: "ed25519".into(),
        public_key: hex::encode(key.to_bytes()),
        key_id: events::audit::key_id(&key),
    }))
}

/// The organization's audit chain checked end to end: every link and signed checkpoint on the
/// topic, in the journal and in the audit read model, and the three compared. `ok` is false, with
/// the first event that does not verify named, when any event was altered, inserted, removed or
/// reordered. It reads the whole topic: one at a time per organization (429 `export_in_progress`).
#[utoipa::path(get, path = "/audit/verify", tag = "audit", params(OrgQuery),
    responses((status = 200, body = AuditVerification)))]
async fn verify(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<OrgQuery>,
) -> Result<Json<AuditVerification>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require(Permission::AuditRead)?;
    let _slot = state.exports.slot(org_id)?;
    let sources = projectors::audit::verify::Sources {
        pool: &state.pool,
        kafka: &state.audit.kafka,
        topic: &state.audit.topic,
        key: state.audit.public_key,
    };
    let report = projectors::audit::verify::verify(&sources, Some(org_id))
        .await
        .map_err(|e| {
            let mut error =
                ApiError::unavailable("The event topic could not be read; retry shortly.");
            error.cause = Some(e);
            error
        })?;
    Ok(Json(report))
}

/// How far ahead of this server's clock `as_of` may be (clocks of callers drift).
const AS_OF_SKEW: chrono::Duration = chrono::Duration::seconds(5);

/// `as_of`: required, RFC 3339, not in the future beyond a small skew.
fn as_of(raw: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let raw = raw.filter(|r| !r.is_empty()).ok_or_else(|| {
        ApiError::invalid_param("as_of", "as_of is required: an RFC 3339 instant.")
    })?;
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            ApiError::invalid_param(
                "as_of",
                "as_of must be an RFC 3339 instant, like 2026-11-27T16:30:00Z.",
            )
        })?
        .with_timezone(&Utc);
    if at > now + AS_OF_SKEW {
        return Err(ApiError::invalid_param(
            "as_of",
            "as_of is in the future: the state of an instant to come is not known.",
        ));
    }
    Ok(at)
}

/// Who could do what at an instant: the organization, its users and their roles, its teams and
/// their members, its API keys with their permissions and status, and its subscription, as they
/// were at `as_of`. Rebuilt by replaying the organization's events on the topic up to that
/// instant through the tenancy projection into a scratch schema that is rolled back; no current
/// read model is consulted. It reads the whole topic: one at a time per organization (429
/// `export_in_progress`).
#[utoipa::path(get, path = "/audit/state", tag = "audit", params(AuditStateQuery),
    responses((status = 200, body = AuditState)))]
async fn state_at(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<AuditStateQuery>,
) -> Result<Json<AuditState>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require(Permission::AuditRead)?;
    let at = as_of(query.as_of.as_deref(), Utc::now())?;
    let _slot = state.exports.slot(org_id)?;
    let answer = projectors::audit::state::state_at(
        &state.pool,
        &state.audit.kafka,
        &state.audit.topic,
        org_id,
        at,
    )
    .await
    .map_err(|e| {
        let mut error =
            ApiError::unavailable("The event topic could not be replayed; retry shortly.");
        error.cause = Some(e);
        error
    })?;
    Ok(Json(answer))
}

/// What an update changed: the resource's fields folded from its earlier events' data (a
/// field's last non-null value), against the same with this event's data.
fn changes(event_type: &str, history: &[Value], data: &Value) -> Vec<AuditChange> {
    if event_type == "subscription.upgraded" {
        return vec![AuditChange {
            field: "plan".into(),
            before: data.get("from_plan").cloned().unwrap_or_default(),
            after: data.get("to_plan").cloned().unwrap_or_default(),
        }];
    }
    let mut before = Map::new();
    for earlier in history {
        fold(&mut before, earlier);
    }
    let mut changed = Vec::new();
    if let Some(fields) = data.as_object() {
        for (field, after) in fields {
            if after.is_null() {
                continue;
            }
            let was = before.get(field).cloned().unwrap_or_default();
            if &was != after {
                changed.push(AuditChange {
                    field: field.clone(),
                    before: was,
                    after: after.clone(),
                });
            }
        }
    }
    changed
}

fn fold(state: &mut Map<String, Value>, data: &Value) {
    if let Some(fields) = data.as_object() {
        for (field, value) in fields {
            if !value.is_null() {
                state.insert(field.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn as_of_is_rfc3339_and_not_in_the_future() {
        let now = Utc::now();
        assert!(as_of(None, now).is_err());
        assert!(as_of(Some("yesterday"), now).is_err());
        assert!(as_of(Some("2026-11-27"), now).is_err());
        let future = (now + chrono::Duration::minutes(5)).to_rfc3339();
        assert!(as_of(Some(&future), now).is_err());
        let skewed = (now + chrono::Duration::seconds(2)).to_rfc3339();
        assert!(as_of(Some(&skewed), now).is_ok());
        assert_eq!(
            as_of(Some("2026-01-02T03:04:05+01:00"), now).ok(),
            DateTime::parse_from_rfc3339("2026-01-02T02:04:05Z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        );
    }

    #[test]
    fn an_update_shows_each_changed_field_before_and_after() {
        let history = [
            json!({"name": "Research", "description": null}),
            json!({"name": "R&D", "description": "old"}),
        ];
        let changed = changes(
            "team.updated",
            &history,
            &json!({"name": "Labs", "description": "old"}),
        );
        assert_eq!(
            changed,
            vec![AuditChange {
                field: "name".into(),
                before: json!("R&D"),
                after: json!("Labs")
            }]
        );
        let permissions = changes(
            "api_key.permissions_changed",
            &[json!({"permissions": ["a", "b"], "name": "k"})],
            &json!({"permissions": ["a"]}),
        );
        assert_eq!(permissions[0].before, json!(["a", "b"]));
        assert_eq!(permissions[0].after, json!(["a"]));
    }
}
