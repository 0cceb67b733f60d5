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

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<InvoicesQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    Ok(Json(
        TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}
