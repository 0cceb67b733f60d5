//! `GET /audit/exports/{id}` and `GET /audit/exports/{id}/download`. An export is its
//! `audit.exported` event: the download streams, from the export pool, the organization's events
//! before it that match its filters, in chain order, with every signed checkpoint among them, so
//! the file verifies offline (`infra/audit/verify_export.py`).

use std::collections::BTreeMap;

use api::audit::{AuditExport, AuditExportObject, AuditFilters, ExportFormat, ExportStatus};
use axum::extract::State;

use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use platform::access::Permission;
use platform::http::PathId;
use platform::{ApiError, Principal};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::audit::Filters;
use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(download))
}

/// An export the caller may see: its organization, its place in the chain, format and filters.
struct Requested {
    org_id: Uuid,
    seq: i64,
    created_at: DateTime<Utc>,
    format: ExportFormat,
    filters: AuditFilters,
}

async fn requested(
    state: &ReadState,
    principal: &Principal,
    id: Uuid,
) -> Result<Requested, ApiError> {
    let client = state.pool.get().await?;
    let stream = events::StreamId::audit_export(id).to_string();
    let row = client
        .query_opt(
            &format!(
                "SELECT org_id, chain_seq, occurred_at, {} FROM read.audit_log a
                 WHERE stream_id = $1 AND event_type = 'audit.exported'",
                super::audit::data_of("a")
            ),
            &[&stream],
        )
        .await?;
    let not_found = || ApiError::not_found(format!("No audit export with id {id}."));
    let row = match row {
        Some(row)
            if row
                .get::<_, Option<Uuid>>(0)
                .is_some_and(|o| principal.sees(o)) =>
        {
            row
        }
        _ => return Err(not_found()),
    };
    principal.require(Permission::AuditRead)?;
    let data: Value = row.get(3);
    let recorded: BTreeMap<String, String> = data
        .get("filters")
        .cloned()
        .and_then(|f| serde_json::from_value(f).ok())
        .unwrap_or_default();
    let field = |name: &str| recorded.get(name).cloned();
    Ok(Requested {
        org_id: row.get::<_, Option<Uuid>>(0).unwrap_or_default(),
        seq: row.get::<_, Option<i64>>(1).unwrap_or(i64::MAX),
        created_at: row.get(2),
        format: match data.get("format").and_then(Value::as_str) {
            Some("csv") => ExportFormat::Csv,
            _ => ExportFormat::Jsonl,
        },
        filters: AuditFilters {
            actor_type: field("actor_type"),
            actor_id: field("actor_id"),
            event_type: field("event_type"),
            resource: field("resource"),
            correlation_id: field("correlation_id"),
            from: field("from"),
            to: field("to"),
        },
    })
}

/// An export's status and where to download it.
#[utoipa::path(get, path = "/audit/exports/{id}", tag = "audit", params(scope::IdParam),
    responses((status = 200, body = AuditExport)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<AuditExport>, ApiError> {
    let export = requested(&state, &principal, id).await?;
    Ok(Json(AuditExport {
        id,
        object: AuditExportObject::Value,
        org_id: export.org_id.into(),
        status: ExportStatus::Ready,
        format: export.format,
        filters: export.filters,
        created_at: export.created_at.into(),
        download_url: format!("/api/v1/audit/exports/{id}/download"),
    }))
}

const CSV_COLUMNS: [&str; 13] = [
    "chain_seq",
    "chain_prev",
    "chain_hash",
    "event_id",
    "event_type",
    "occurred_at",
    "org_id",
    "actor_type",
    "actor_id",
    "correlation_id",
    "stream_id",
    "stream_version",
    "envelope",
];

/// The export's file, streamed: JSON Lines (one envelope per line) or CSV (the link, the columns
/// an auditor sorts by, and the canonical envelope). One export streams at a time per
/// organization (429 `export_in_progress`), from the export pool (503 `exports_busy`).
#[utoipa::path(get, path = "/audit/exports/{id}/download", tag = "audit", params(scope::IdParam),
    responses((status = 200, description = "The events, oldest first in chain order", content(
        (String = "application/x-ndjson"),
        (String = "text/csv"),
    ))))]
async fn download(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let export = requested(&state, &principal, id).await?;
    let filters = Filters {
        org_id: export.org_id,
        checked: export.filters.check()?,
    };
    let lease = state.exports.lease(export.org_id).await?;
    let sql = format!(
        "SELECT a.envelope FROM read.audit_log a
         WHERE (({}) OR (a.org_id = $1 AND a.event_type = 'audit.checkpoint'))
           AND a.envelope IS NOT NULL AND a.chain_seq < $9
         ORDER BY a.chain_seq",
        Filters::WHERE
    );
    let mut params = filters.params();
    params.push(&export.seq);
    let rows = lease.client.query_raw(&sql, params).await?;
    let csv = export.format == ExportFormat::Csv;
    let header_line = csv.then(|| format!("{}\n", CSV_COLUMNS.join(",")));
    let lines = rows.map(move |row| match row {
        Ok(row) => {
            let envelope: Value = row.get(0);
            Ok::<_, std::io::Error>(bytes::Bytes::from(if csv {
                csv_row(&envelope)
            } else {
                format!("{envelope}\n")
            }))
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    });
    Ok(lease.respond(header_line, lines, csv, &format!("audit-{id}")))
}

fn csv_row(envelope: &Value) -> String {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let chain = envelope.get("chain");
    let field = |name: &str| text(chain.and_then(|c| c.get(name)));
    let actor = envelope.get("actor");
    let fields = [
        field("seq"),
        field("prev"),
        field("hash"),
        text(envelope.get("event_id")),
        text(envelope.get("event_type")),
        text(envelope.get("occurred_at")),
        text(envelope.get("org_id")),
        text(actor.and_then(|a| a.get("type"))),
        text(actor.and_then(|a| a.get("id"))),
        text(envelope.get("correlation_id")),
        text(envelope.get("stream_id")),
        text(envelope.get("stream_version")),
        String::from_utf8(events::audit::canonical(envelope)).unwrap_or_default(),
    ];
    super::usage::csv_line(&fields)
}
