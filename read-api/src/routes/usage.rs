//! `GET /billing/usage` (sums, optionally grouped) and `GET /billing/usage/export` (one line per
//! call, CSV or JSON Lines, streamed), both over `read.chat_calls` with the same filters.

use api::usage::{Usage, UsageFigures, UsageLine, UsageObject, UsageQuery};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures::StreamExt;
use platform::access::Permission;
use platform::plans::next_month_start;
use platform::{ApiError, Principal};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

/// What usage exports may hold: a pool of their own, each connection's statements bounded by
/// `statement_timeout` (a reader too slow to take its export in that time loses it, rather
/// than hold the connection), and one export at a time per organization in this process.
#[derive(Clone)]
pub struct Exports {
    pub(crate) pool: platform::db::PgPool,
    pub(crate) statement_timeout: std::time::Duration,
    running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
}

impl Exports {
    pub fn new(pool: platform::db::PgPool, statement_timeout: std::time::Duration) -> Self {
        Self {
            pool,
            statement_timeout,
            running: Default::default(),
        }
    }

    /// The organization's export slot, or 429 when one of its exports is still streaming.
    pub(crate) fn slot(&self, org_id: Uuid) -> Result<ExportSlot, ApiError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !running.insert(org_id) {
            return Err(ApiError::too_many_requests(
                "export_in_progress",
                "An export of this organization is still streaming; one runs at a time. Retry when it is done.",
                5,
            ));
        }
        Ok(ExportSlot {
            running: self.running.clone(),
            org_id,
        })
    }
}

/// Held by a streaming export; frees the organization's slot when the stream ends or is dropped.
pub(crate) struct ExportSlot {
    running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
    org_id: Uuid,
}

/// A running export's hold: the organization's slot and a connection of the export pool whose
/// statements are bounded by the pool's `statement_timeout`.
pub(crate) struct ExportLease {
    _slot: ExportSlot,
    pub(crate) client: platform::db::Connection,
}

impl Exports {
    /// Takes the organization's slot (429 `export_in_progress` when taken) and a connection
    /// (503 `exports_busy` when every one is streaming).
    pub(crate) async fn lease(&self, org_id: Uuid) -> Result<ExportLease, ApiError> {
        let slot = self.slot(org_id)?;
        let client = self.pool.get().await.map_err(|e| {
            let mut error =
                ApiError::unavailable("Every export connection is busy; retry shortly.")
                    .with_code("exports_busy");
            error.cause = Some(e.into());
            error
        })?;
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                self.statement_timeout.as_millis()
            ))
            .await?;
        Ok(ExportLease {
            _slot: slot,
            client,
        })
    }
}

impl ExportLease {
    /// The download: `header` then `lines`, as CSV or JSON Lines, named `<name>.csv|jsonl`. The
    /// connection goes back to the export pool, and the organization's slot is freed, only when
    /// the stream is done (or dropped with the client's connection); nothing is held in memory.
    pub(crate) fn respond(
        self,
        header: Option<String>,
        lines: impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
        csv: bool,
        name: &str,
    ) -> Response {
        let keep = futures::stream::once(async move {
            drop(self);
            Ok::<_, std::io::Error>(bytes::Bytes::new())
        });
        let head =
            futures::stream::iter(header.map(|h| Ok::<_, std::io::Error>(bytes::Bytes::from(h))));
        let mut response = Body::from_stream(head.chain(lines).chain(keep)).into_response();
        let (content_type, extension) = if csv {
            ("text/csv; charset=utf-8", "csv")
        } else {
            ("application/x-ndjson", "jsonl")
        };
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(value) =
            HeaderValue::from_str(&format!("attachment; filename=\"{name}.{extension}\""))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
        response
    }
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.org_id);
    }
}

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(export))
}

/// The filters both endpoints share: organization and `[from, to)`.
struct Filter {
    org_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time.
pub(crate) fn instant(raw: &str, param: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::invalid_param(
                param,
                format!("{param} must be a date (2026-11-01) or an RFC 3339 time."),
            )
        })
}

fn filter(
    state: &ReadState,
    principal: &Principal,
    query: &UsageQuery,
) -> Result<Filter, ApiError> {
    let org_id = scope::org(principal, query.org_id.as_deref())?;
    principal.require(Permission::UsageRead)?;
    let now = state.clock.now();
    let month_start = now
        .date_naive()
        .with_day0(0)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let from = query
        .from
        .as_deref()
        .map(|f| instant(f, "from"))
        .transpose()?
        .unwrap_or(month_start);
    let to = query
        .to
        .as_deref()
        .map(|t| instant(t, "to"))
        .transpose()?
        .unwrap_or_else(|| next_month_start(now));
    if from >= to {
        return Err(ApiError::invalid_param("to", "to must be after from."));
    }
    Ok(Filter { org_id, from, to })
}

/// Requests, tokens and cost in `[from, to)`, optionally grouped by day, model, key, team or user.
#[utoipa::path(get, path = "/billing/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, body = Usage)))]
async fn usage(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Usage>, ApiError> {
    let filter = filter(&state, &principal, &query)?;
    let key = match query.group_by.as_deref() {
        None | Some("") => "'all'",
        Some("day") => "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        Some("model") => "model",
        Some("api_key") => "COALESCE(api_key_id::text, '')",
        Some("team") => "COALESCE(team_id::text, '')",
        Some("user") => "COALESCE(user_id::text, '')",
        Some(other) => {
            return Err(ApiError::invalid_param(
                "group_by",
                format!("group_by {other:?} is not one of day, model, api_key, team, user."),
            ))
        }
    };
    let sql = format!(
        "SELECT {key} AS key, count(*) AS requests, count(*) FILTER (WHERE outcome = 'failed') AS failed,
                COALESCE(sum(prompt_tokens), 0)::bigint, COALESCE(sum(completion_tokens), 0)::bigint,
                COALESCE(sum(total_tokens), 0)::bigint, COALESCE(sum(cost_micros), 0)::bigint
         FROM read.chat_calls WHERE org_id = $1 AND occurred_at >= $2 AND occurred_at < $3
         GROUP BY 1 ORDER BY 1"
    );
    let client = state.pool.get().await?;
    let rows = client
        .query(&sql, &[&filter.org_id, &filter.from, &filter.to])
        .await?;
    let mut totals = UsageFigures::default();
    let data: Vec<UsageLine> = rows
        .iter()
        .map(|r| {
            let figures = UsageFigures {
                requests: r.get(1),
                failed_requests: r.get(2),
                prompt_tokens: r.get(3),
                completion_tokens: r.get(4),
                total_tokens: r.get(5),
                cost_micros: r.get(6),
            };
            totals.requests += figures.requests;
            totals.failed_requests += figures.failed_requests;
            totals.prompt_tokens += figures.prompt_tokens;
            totals.completion_tokens += figures.completion_tokens;
            totals.total_tokens += figures.total_tokens;
            totals.cost_micros += figures.cost_micros;
            UsageLine {
                key: r.get(0),
                figures,
            }
        })
        .collect();
    Ok(Json(Usage {
        object: UsageObject::Value,
        org_id: filter.org_id.into(),
        from: filter.from.into(),
        to: filter.to.into(),
        group_by: query.group_by,
        data,
        totals,
    }))
}

const EXPORT_COLUMNS: [&str; 13] = [
    "occurred_at",
    "request_id",
    "model",
    "provider",
    "api_key_id",
    "team_id",
    "user_id",
    "outcome",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_micros",
];

/// Every call in the window, oldest first, as CSV or JSON Lines; streamed, never held in memory.
/// One export at a time per organization (429 `export_in_progress` with `retry-after`); 503
/// `exports_busy` when every export connection is streaming.
#[utoipa::path(get, path = "/billing/usage/export", tag = "usage", params(UsageQuery),
    responses((status = 200, description = "One line per call", content(
        (String = "text/csv"),
        (String = "application/x-ndjson"),
    ))))]
async fn export(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let filter = filter(&state, &principal, &query)?;
    let csv = match query.format.as_deref() {
        None | Some("csv") => true,
        Some("jsonl") => false,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "format",
                format!("format {other:?} is not csv or jsonl."),
            ))
        }
    };
    let lease = state.exports.lease(filter.org_id).await?;
    let sql = "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), request_id, model,
                      COALESCE(provider, ''), COALESCE(api_key_id::text, ''), COALESCE(team_id::text, ''),
                      COALESCE(user_id::text, ''), outcome, status::text, prompt_tokens::text, completion_tokens::text,
                      total_tokens::text, cost_micros::text
               FROM read.chat_calls WHERE org_id = $1 AND occurred_at >= $2 AND occurred_at < $3
               ORDER BY occurred_at, event_id";
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&filter.org_id, &filter.from, &filter.to];
    let rows = lease.client.query_raw(sql, params).await?;
    let header_line = csv.then(|| format!("{}\n", EXPORT_COLUMNS.join(",")));
    let lines = rows.map(move |row| match row {
        Ok(row) => {
            let fields: Vec<String> = (0..EXPORT_COLUMNS.len())
                .map(|i| row.get::<_, String>(i))
                .collect();
            Ok::<_, std::io::Error>(bytes::Bytes::from(if csv {
                csv_line(&fields)
            } else {
                jsonl_line(&fields)
            }))
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    });
    Ok(lease.respond(header_line, lines, csv, &format!("usage-{}", filter.org_id)))
}

pub(crate) fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            let f = neutralised(f);
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a tab or carriage return
/// first) gets a leading `'`, so an exported request id or name cannot become a formula in the
/// reader's spreadsheet (OWASP's CSV injection advice). Numbers are left alone.
fn neutralised(cell: &str) -> String {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn jsonl_line(fields: &[String]) -> String {
    let mut object = serde_json::Map::new();
    for (name, value) in EXPORT_COLUMNS.iter().zip(fields) {
        let typed = match *name {
            "status" | "prompt_tokens" | "completion_tokens" | "total_tokens" | "cost_micros" => {
                value.parse::<i64>().map(Value::from).unwrap_or(Value::Null)
            }
            _ if value.is_empty() => Value::Null,
            _ => Value::String(value.clone()),
        };
        object.insert((*name).to_string(), typed);
    }
    format!("{}\n", Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_numbers_kept() {
        let line = csv_line(&[
            "=HYPERLINK(\"http://evil\")".into(),
            "+1+2".into(),
            "@SUM(A1)".into(),
            "-5".into(),
            "plain".into(),
            "a,b".into(),
        ]);
        assert_eq!(
            line,
            "\"'=HYPERLINK(\"\"http://evil\"\")\",'+1+2,'@SUM(A1),-5,plain,\"a,b\"\n"
        );
    }
}
