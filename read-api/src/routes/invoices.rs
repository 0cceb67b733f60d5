//! `GET /billing/invoices`, `GET /billing/invoices/{id}`.

use api::billing::{Invoice, InvoiceObject, InvoiceStatus};
use api::{List, OrgQuery, PageParams};
use axum::extract::{Query, State};
use axum::Json;
use platform::access::Permission;
use platform::http::PathId;
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use serde::Deserialize;
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

#[derive(Debug, Deserialize)]
struct InvoicesQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
    period: Option<String>,
    status: Option<String>,
}

/// The invoice filters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct InvoiceFilter {
    /// `YYYY-MM`: only that month's invoice.
    period: Option<String>,
    /// `open` or `paid`.
    status: Option<String>,
}

const SELECT: &str =
    "SELECT i.id, i.org_id, i.period, i.plan, i.currency, i.status, i.total_cents, i.lines,
        i.usage, i.issued_at, i.paid_at, i.paid_cents, i.payment_reference, i.version
     FROM read.invoices i";

fn from_row(row: &tokio_postgres::Row) -> Invoice {
    let plan: &str = row.get("plan");
    Invoice {
        id: row.get::<_, Uuid>("id").into(),
        object: InvoiceObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        period: row.get("period"),
        plan: plan.parse().unwrap_or_else(|e| {
            tracing::error!(error = %e, "an invoice names an unknown plan");
            platform::plans::DEFAULT_PLAN
        }),
        currency: row.get("currency"),
        status: match row.get::<_, &str>("status") {
            "paid" => InvoiceStatus::Paid,
            _ => InvoiceStatus::Open,
        },
        total_cents: row.get("total_cents"),
        lines: row.get("lines"),
        usage: row.get("usage"),
        issued_at: scope::time(row.get("issued_at")),
        paid_at: scope::time(row.get("paid_at")),
        paid_cents: row.get("paid_cents"),
        payment_reference: row.get("payment_reference"),
        version: row.get("version"),
    }
}

const TABLE: scope::OrgTable<Invoice> = scope::OrgTable {
    select: SELECT,
    alias: "i",
    permission: Permission::BillingRead,
    noun: "invoice",
    to_json: from_row,
    key: |i| i.id.uuid(),
};

/// The organization's invoices in id order, optionally of one period or status.
#[utoipa::path(get, path = "/billing/invoices", tag = "billing", params(PageParams, OrgQuery, InvoiceFilter),
    responses((status = 200, body = List<Invoice>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<InvoicesQuery>,
) -> Result<Json<List<Invoice>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require(Permission::BillingRead)?;
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
    Ok(Json(List::from_rows(items, &page, |i: &Invoice| {
        i.id.to_string()
    })))
}

/// One invoice.
#[utoipa::path(get, path = "/billing/invoices/{id}", tag = "billing", params(scope::IdParam),
    responses((status = 200, body = Invoice)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Invoice>, ApiError> {
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}
