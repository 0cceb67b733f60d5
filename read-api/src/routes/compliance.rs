//! `GET /audit/compliance` and `GET /audit/compliance/{id}`: compliance reports, read from the
//! audit read model. A report is its stream `compliance_report:<id>`: `compliance.report_requested`
//! (version 1), then `compliance.report_generated` or `compliance.report_failed` (version 2),
//! which carries the report whole. Served as JSON, or as printable HTML.

use api::compliance::{
    ComplianceFramework, ComplianceListQuery, ComplianceReport, ComplianceReportContent,
    ComplianceReportObject, ComplianceReportQuery, ComplianceReportStatus, ComplianceSummary,
    ControlResult,
};
use api::List;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use platform::access::Permission;
use platform::http::PathId;
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
}

/// The request and its outcome; `$report` is the whole report or null.
fn select(report: &str) -> String {
    format!(
        "SELECT r.event_id, r.org_id, r.occurred_at, {requested} AS requested,
            g.event_type AS outcome, g.event_id AS outcome_id, g.occurred_at AS completed_at,
            g.data ->> 'content_hash' AS content_hash, g.data ->> 'reason' AS reason,
            g.data -> 'report' -> 'summary' AS summary, {report} AS report
         FROM read.audit_log r
         LEFT JOIN LATERAL (
             SELECT o.event_type, o.event_id, o.occurred_at, {outcome} AS data
             FROM read.audit_log o
             WHERE o.stream_id = r.stream_id AND o.stream_version = 2
         ) g ON true",
        requested = super::audit::data_of("r"),
        outcome = super::audit::data_of("o"),
    )
}

fn from_row(row: &tokio_postgres::Row) -> Result<ComplianceReport, ApiError> {
    let requested: Value = row.get("requested");
    let field = |name: &str| {
        requested
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let id: Uuid = requested
        .get("report_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let outcome: Option<String> = row.get("outcome");
    let status = match outcome.as_deref() {
        Some("compliance.report_generated") => ComplianceReportStatus::Ready,
        Some(_) => ComplianceReportStatus::Failed,
        None => ComplianceReportStatus::Pending,
    };
    let report = row
        .get::<_, Option<Value>>("report")
        .map(serde_json::from_value::<ComplianceReportContent>)
        .transpose()
        .map_err(|e| ApiError::internal(e.into()))?;
    Ok(ComplianceReport {
        id,
        object: ComplianceReportObject::Value,
        org_id: row
            .get::<_, Option<Uuid>>("org_id")
            .unwrap_or_default()
            .into(),
        framework: ComplianceFramework::parse(&field("framework"))
            .unwrap_or(ComplianceFramework::Soc2),
        period: field("period"),
        status,
        requested_at: row.get::<_, DateTime<Utc>>("occurred_at").into(),
        completed_at: scope::time(row.get("completed_at")),
        content_hash: row.get("content_hash"),
        event_id: (status == ComplianceReportStatus::Ready)
            .then(|| row.get::<_, Option<Uuid>>("outcome_id"))
            .flatten(),
        summary: row
            .get::<_, Option<Value>>("summary")
            .and_then(|s| serde_json::from_value::<ComplianceSummary>(s).ok()),
        report,
        error: row.get("reason"),
    })
}

/// The organization's compliance reports, newest first, without their content (`summary` says
/// how they came out).
#[utoipa::path(get, path = "/audit/compliance", tag = "audit", params(ComplianceListQuery),
    responses((status = 200, body = List<ComplianceReport>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<ComplianceListQuery>,
) -> Result<Json<List<ComplianceReport>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require(Permission::AuditRead)?;
    let page = PageQuery {
        limit: query.limit.clone(),
        cursor: query.cursor.clone(),
    }
    .page()?;
    let after = super::audit::cursor(&page)?;
    let (after_at, after_id) = (after.map(|a| a.0), after.map(|a| a.1));
    let limit = page.limit + 1;
    let sql = format!(
        "{} WHERE r.org_id = $1 AND r.event_type = 'compliance.report_requested'
           AND ($2::timestamptz IS NULL OR (r.occurred_at, r.event_id) < ($2, $3))
         ORDER BY r.occurred_at DESC, r.event_id DESC LIMIT $4",
        select("NULL::jsonb")
    );
    let client = state.pool.get().await?;
    let rows = client
        .query(&sql, &[&org_id, &after_at, &after_id, &limit])
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let item = from_row(row)?;
        keys.push((
            row.get::<_, DateTime<Utc>>("occurred_at"),
            row.get::<_, Uuid>("event_id"),
        ));
        items.push(item);
    }
    let keyed: Vec<(ComplianceReport, (DateTime<Utc>, Uuid))> =
        items.into_iter().zip(keys).collect();
    let page_list = List::from_rows(keyed, &page, |(_, (at, id))| {
        format!("{}_{id}", at.timestamp_micros())
    });
    Ok(Json(List {
        object: page_list.object,
        data: page_list.data.into_iter().map(|(item, _)| item).collect(),
        next_cursor: page_list.next_cursor,
    }))
}

/// One compliance report: its status and, once computed, the report with every control's
/// result and evidence (event ids of `/audit/logs`) and the content hash its
/// `compliance.report_generated` event records. `?format=html` (or `Accept: text/html`) gives
/// a printable page.
#[utoipa::path(get, path = "/audit/compliance/{id}", tag = "audit",
    params(scope::IdParam, ComplianceReportQuery),
    responses((status = 200, description = "The report", content(
        (ComplianceReport = "application/json"),
        (String = "text/html"),
    ))))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
    Query(query): Query<ComplianceReportQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let html = match query.format.as_deref() {
        Some("html") => true,
        Some("json") => false,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "format",
                "format must be json or html.",
            ))
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(prefers_html),
    };
    let stream = events::StreamId::compliance_report(id).to_string();
    let sql = format!(
        "{} WHERE r.stream_id = $1 AND r.event_type = 'compliance.report_requested'",
        select("g.data -> 'report'")
    );
    let client = state.pool.get().await?;
    let row = client.query_opt(&sql, &[&stream]).await?;
    let row = match row {
        Some(row)
            if row
                .get::<_, Option<Uuid>>("org_id")
                .is_some_and(|o| principal.sees(o)) =>
        {
            row
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "No compliance report with id {id}."
            )))
        }
    };
    principal.require(Permission::AuditRead)?;
    let report = from_row(&row)?;
    if !html {
        return Ok(Json(report).into_response());
    }
    let mut response = page(&report).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(response)
}

/// Whether an `Accept` header ranks HTML before JSON.
fn prefers_html(accept: &str) -> bool {
    let position = |what: &str| accept.find(what);
    match (position("text/html"), position("application/json")) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn result_label(result: ControlResult) -> &'static str {
    match result {
        ControlResult::Pass => "Pass",
        ControlResult::Fail => "Fail",
        ControlResult::NotApplicable => "Not applicable",
    }
}

/// A self-contained printable page (no scripts, no external resources).
fn page(report: &ComplianceReport) -> String {
    let title = format!(
        "{} report, {} — organization {}",
        report.framework.title(),
        report.period,
        report.org_id
    );
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#111}}\
         table{{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}}\
         th,td{{border:1px solid #999;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.9em}}\
         .pass{{color:#0a6b1f}}.fail{{color:#a40000}}.not_applicable{{color:#555}}\
         code{{font-size:.85em}}section{{page-break-inside:avoid}}\
         @media print{{body{{margin:1cm}}}}\
         </style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    html.push_str(&format!(
        "<p>Report <code>{}</code>, status <strong>{}</strong>, requested {}.</p>\n",
        report.id,
        match report.status {
            ComplianceReportStatus::Pending => "pending",
            ComplianceReportStatus::Ready => "ready",
            ComplianceReportStatus::Failed => "failed",
        },
        escape(&report.requested_at.to_string())
    ));
    if let Some(error) = &report.error {
        html.push_str(&format!("<p class=\"fail\">{}</p>\n", escape(error)));
    }
    if let (Some(content), Some(hash)) = (&report.report, &report.content_hash) {
        html.push_str(&format!(
            "<p>Period {} to {} (exclusive), judged as of {}; the organization's audit chain read \
             through seq {} ({} events). Content SHA-256 <code>{}</code>, recorded by event \
             <code>{}</code>.</p>\n<p><span class=\"pass\">{} pass</span>, \
             <span class=\"fail\">{} fail</span>, <span class=\"not_applicable\">{} not applicable</span>.</p>\n",
            escape(&content.period.from.to_string()),
            escape(&content.period.to.to_string()),
            escape(&content.as_of.to_string()),
            content.through_seq,
            content.events_read,
            escape(hash),
            report.event_id.map(|e| e.to_string()).unwrap_or_default(),
            content.summary.pass,
            content.summary.fail,
            content.summary.not_applicable,
        ));
        for control in &content.controls {
            html.push_str(&format!(
                "<section><h2>{} <small>({})</small></h2>\n<p><strong class=\"{}\">{}</strong>: {}</p>\n<p>{}</p>\n",
                escape(&control.title),
                escape(&control.reference),
                control.result.as_str(),
                result_label(control.result),
                escape(&control.reason),
                escape(&control.description),
            ));
            if !control.findings.is_empty() {
                html.push_str("<table><tr><th>Subject</th><th>Finding</th><th>Evidence (event ids)</th></tr>\n");
                for finding in &control.findings {
                    let evidence: Vec<String> = finding
                        .evidence
                        .iter()
                        .map(|e| format!("<code>{e}</code>"))
                        .collect();
                    html.push_str(&format!(
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                        escape(&finding.subject),
                        escape(&finding.detail),
                        evidence.join("<br>")
                    ));
                }
                html.push_str("</table>\n");
                if control.findings_total > control.findings.len() as u64 {
                    html.push_str(&format!(
                        "<p>{} findings in all; the first {} are listed.</p>\n",
                        control.findings_total,
                        control.findings.len()
                    ));
                }
            } else if !control.evidence.is_empty() {
                let evidence: Vec<String> = control
                    .evidence
                    .iter()
                    .map(|e| format!("<code>{e}</code>"))
                    .collect();
                html.push_str(&format!("<p>Evidence: {}</p>\n", evidence.join(", ")));
            }
            html.push_str("</section>\n");
        }
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_accept_is_ranked() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert!(prefers_html("text/html,application/xhtml+xml"));
        assert!(!prefers_html("application/json, text/html"));
        assert!(!prefers_html("*/*"));
    }
}
