//! `POST /subscriptions`, `PUT /subscriptions/{id}/upgrade`, `PUT /subscriptions/{id}/downgrade`,
//! `DELETE /subscriptions/{id}/downgrade` (cancel a pending downgrade),
//! `POST /billing/invoices/{id}/pay`.

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use platform::http::{accepted_or, Json, PathId};
use platform::plans::{plan, Plan, PLANS};
use platform::ApiError;
use serde::Deserialize;
use uuid::Uuid;

use super::aggregate::{self, stream_id, Command, DomainError, Subscription};
use super::invoice::{self, Invoice, PayError};
use crate::command::{load, short_text, time, Ctx};
use crate::organizations::routes::live_org;
use crate::CommandState;

pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/subscriptions", post(create))
        .route("/subscriptions/{id}/upgrade", put(upgrade))
        .route(
            "/subscriptions/{id}/downgrade",
            put(downgrade).delete(cancel_downgrade),
        )
        .route("/billing/invoices/{id}/pay", post(pay_invoice))
}

#[derive(Debug, Deserialize)]
struct ChoosePlan {
    plan: String,
    #[serde(default)]
    org_id: Option<Uuid>,
}

fn known_plan(id: &str) -> Result<&'static Plan, ApiError> {
    plan(id).ok_or_else(|| {
        let known: Vec<&str> = PLANS.iter().map(|p| p.id).collect();
        ApiError::invalid_param(
            "plan",
            format!("Unknown plan {id:?}; the plans are {}.", known.join(", ")),
        )
    })
}

/// Enterprise is priced by contract: only the platform admin moves an organization onto it.
fn may_choose(ctx: &Ctx, plan: &Plan) -> Result<(), ApiError> {
    if plan.price_cents.is_none() {
        ctx.principal.require_admin()?;
    }
    Ok(())
}

async fn create(ctx: Ctx, Json(body): Json<ChoosePlan>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id)?;
    ctx.principal.require("billing:write")?;
    let chosen = known_plan(&body.plan)?;
    may_choose(&ctx, chosen)?;
    live_org(&ctx, org_id).await?;
    let current = load::<Subscription>(&ctx.state, &stream_id(org_id))
        .await?
        .state;
    execute(
        &ctx,
        current,
        org_id,
        Command::Start { plan: chosen },
        StatusCode::CREATED,
    )
    .await
}

async fn upgrade(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<ChoosePlan>,
) -> Result<Response, ApiError> {
    let current = load_visible(&ctx, id).await?;
    ctx.principal.require("billing:write")?;
    let chosen = known_plan(&body.plan)?;
    may_choose(&ctx, chosen)?;
    execute(
        &ctx,
        current,
        id,
        Command::Upgrade { to: chosen },
        StatusCode::OK,
    )
    .await
}

async fn downgrade(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<ChoosePlan>,
) -> Result<Response, ApiError> {
    let current = load_visible(&ctx, id).await?;
    ctx.principal.require("billing:write")?;
    let chosen = known_plan(&body.plan)?;
    execute(
        &ctx,
        current,
        id,
        Command::Downgrade { to: chosen },
        StatusCode::OK,
    )
    .await
}

async fn cancel_downgrade(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let current = load_visible(&ctx, id).await?;
    ctx.principal.require("billing:write")?;
    execute(&ctx, current, id, Command::CancelDowngrade, StatusCode::OK).await
}

async fn load_visible(ctx: &Ctx, id: Uuid) -> Result<Subscription, ApiError> {
    let subscription = load::<Subscription>(&ctx.state, &stream_id(id))
        .await?
        .state;
    if !subscription.exists() || !ctx.principal.sees(subscription.org_id) {
        return Err(ApiError::not_found(format!(
            "No subscription with id {id}."
        )));
    }
    live_org(ctx, subscription.org_id).await?;
    Ok(subscription)
}

async fn execute(
    ctx: &Ctx,
    current: Subscription,
    org_id: Uuid,
    command: Command,
    status: StatusCode,
) -> Result<Response, ApiError> {
    ctx.check_version(current.version)?;
    let now = ctx.state.clock.now();
    let payloads = aggregate::decide(&current, command, now).map_err(domain_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(org_id), Some(org_id), current.version, payloads);
    let after = batch.events().iter().fold(current, aggregate::apply);
    let projected = batch.commit().await?;
    let body = representation(&after, now);
    Ok(accepted_or(
        status,
        projected,
        &format!("/api/v1/subscriptions/{org_id}"),
        Some(body),
    ))
}

/// The same shape `GET /subscriptions/{id}` answers with.
pub fn representation(s: &Subscription, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let effective = s.effective_plan(now);
    serde_json::json!({
        "id": s.org_id,
        "object": "subscription",
        "org_id": s.org_id,
        "plan": effective,
        "pending_downgrade": s.pending_at(now).map(|(plan, at)| serde_json::json!({"plan": plan, "effective_at": time(Some(*at))})),
        "started_at": time(s.started_at),
        "version": s.version,
    })
}

fn domain_error(error: DomainError) -> ApiError {
    match error {
        DomainError::AlreadySubscribed => ApiError::conflict(
            "already_subscribed",
            "The organization already has a subscription; upgrade or downgrade it.",
        ),
        DomainError::NotFound => ApiError::not_found("No such subscription."),
        DomainError::NotAnUpgrade { from, to } => ApiError::invalid_param(
            "plan",
            format!("{to} is not an upgrade from {from}; use the downgrade endpoint to go down."),
        ),
        DomainError::NotADowngrade { from, to } => ApiError::invalid_param(
            "plan",
            format!("{to} is not a downgrade from {from}; use the upgrade endpoint to go up."),
        ),
        DomainError::NoPendingDowngrade => {
            ApiError::not_found("No downgrade is pending.").with_code("no_pending_downgrade")
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payment {
    amount_cents: i64,
    reference: String,
}

/// Records a payment of an invoice's whole amount; paying twice is a conflict.
async fn pay_invoice(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<Payment>,
) -> Result<Response, ApiError> {
    let loaded = load::<Invoice>(&ctx.state, &invoice::stream_id(id)).await?;
    let current = loaded.state;
    if !current.exists() || !ctx.principal.sees(current.org_id) {
        return Err(ApiError::not_found(format!("No invoice with id {id}.")));
    }
    ctx.principal.require("billing:write")?;
    if body.amount_cents < 0 {
        return Err(ApiError::invalid_param(
            "amount_cents",
            "amount_cents must be a whole, non-negative number of cents.",
        ));
    }
    let reference = short_text("reference", &body.reference)?;
    ctx.check_version(current.version)?;
    let now = ctx.state.clock.now();
    let payloads = invoice::pay(&current, body.amount_cents, reference.clone(), now)
        .map_err(|e| match e {
            PayError::AlreadyPaid => {
                ApiError::conflict("invoice_already_paid", format!("Invoice {id} is already paid."))
            }
            PayError::AmountMismatch { due, offered } => ApiError::invalid_param(
                "amount_cents",
                format!("The invoice's amount due is {due} cents; a payment of {offered} cents does not match it."),
            )
            .with_code("amount_mismatch"),
        })?;
    let mut batch = ctx.batch();
    batch.push(
        &invoice::stream_id(id),
        Some(current.org_id),
        current.version,
        payloads,
    );
    let projected = batch.commit().await?;
    let body = serde_json::json!({
        "id": id,
        "object": "invoice",
        "org_id": current.org_id,
        "status": "paid",
        "total_cents": current.total_cents,
        "paid_cents": body.amount_cents,
        "payment_reference": reference,
        "paid_at": time(Some(now)),
        "version": current.version + 1,
    });
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &format!("/api/v1/billing/invoices/{id}"),
        Some(body),
    ))
}
