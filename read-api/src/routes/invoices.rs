//! `GET /billing/invoices`, `GET /billing/invoices/{id}`.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use platform::http::PathId;
use platform::pagination::{List, PageQuery};
use platform::{ApiError, Principal};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> Router<ReadState> {
    Router::new()
        .route("/billing/invoices", get(list))
        .route("/billing/invoices/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct InvoicesQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
    /// `YYYY-MM`: only that month's invoice.
    period: Option<String>,
    /// `open` or `paid`.
    status: Option<String>,
}

const SELECT: &str =
    "SELECT i.id, i.org_id, i.period, i.plan, i.currency, i.status, i.total_cents, i.lines,
        i.usage, i.issued_at, i.paid_at, i.paid_cents, i.payment_reference, i.version
     FROM read.invoices i";

fn from_row(row: &tokio_postgres::Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>("id"),
        "object": "invoice",
        "org_id": row.get::<_, Uuid>("org_id"),
        "period": row.get::<_, String>("period"),
        "plan": row.get::<_, String>("plan"),
        "currency": row.get::<_, String>("currency"),
        "status": row.get::<_, String>("status"),
        "total_cents": row.get::<_, i64>("total_cents"),
        "lines": row.get::<_, Value>("lines"),
        "usage": row.get::<_, Value>("usage"),
        "issued_at": scope::time(row.get("issued_at")),
        "paid_at": scope::maybe_time(row.get("paid_at")),
        "paid_cents": row.get::<_, Option<i64>>("paid_cents"),
        "payment_reference": row.get::<_, Option<String>>("payment_reference"),
        "version": row.get::<_, i64>("version"),
    })
}

const TABLE: scope::OrgTable = scope::OrgTable {
    select: SELECT,
    alias: "i",
    permission: "billing:read",
    noun: "invoice",
    to_json: from_row,
};

/// The organization's invoices in id order, optionally of one period or status.
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<InvoicesQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require("billing:read")?;
    let period = match query.period.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            platform::plans::Period::parse(raw)
                .ok_or_else(|| {
                    ApiError::invalid_param("period", "period must be a month, YYYY-MM.")
                })?
                .to_string(),
        ),
    };
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(raw @ ("open" | "paid")) => Some(raw.to_string()),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "status",
                "status must be open or paid.",
            ))
        }
    };
    let page = query.page.page()?;
    let after = scope::after(&page)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "{SELECT} WHERE i.org_id = $1 AND ($2::text IS NULL OR i.period = $2)
                   AND ($3::text IS NULL OR i.status = $3) AND ($4::uuid IS NULL OR i.id > $4)
                 ORDER BY i.id LIMIT $5"
            ),
            &[&org_id, &period, &status, &after, &(page.limit + 1)],
        )
        .await?;
    let items = rows.iter().map(from_row).collect();
    Ok(Json(List::from_rows(items, &page, |item: &Value| {
        item["id"].as_str().unwrap_or_default().to_string()
    })))
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}
