//! `POST /subscriptions`, `PUT /subscriptions/{id}/upgrade`, `PUT /subscriptions/{id}/downgrade`,
//! `DELETE /subscriptions/{id}/downgrade` (cancel a pending downgrade),
//! `POST /billing/invoices/{id}/pay`.

use api::billing::{
    ChoosePlan, InvoiceObject, InvoicePayment, InvoiceStatus, Payment, PendingDowngrade,
    SubscriptionObject,
};
use axum::http::StatusCode;
use axum::response::Response;
use platform::access::Permission;
use platform::http::{accepted_or, Json, PathId};
use platform::plans::{Plan, PlanId};
use platform::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{stream_id, Command, DomainError, Subscription};
use super::invoice::{self, Invoice, PayError};
use crate::command::{load, short_text, time, Aggregate, Ctx};
use crate::organizations::routes::live_org;
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(upgrade))
        .routes(routes!(downgrade, cancel_downgrade))
        .routes(routes!(pay_invoice))
}

/// Enterprise is priced by contract: only the platform admin moves an organization onto it.
fn may_choose(ctx: &Ctx, plan: &Plan) -> Result<(), ApiError> {
    if plan.price_cents.is_none() {
        ctx.principal.require_admin()?;
    }
    Ok(())
}

/// Starts the organization's subscription (every organization already has one, on Free).
#[utoipa::path(post, path = "/subscriptions", tag = "billing", request_body = ChoosePlan,
    responses(
        (status = 201, body = api::billing::Subscription),
    ))]
async fn create(ctx: Ctx, Json(body): Json<ChoosePlan>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id.map(Into::into))?;
    ctx.principal.require(Permission::BillingWrite)?;
    let chosen = body.plan.plan();
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

/// Moves up at once; the rest of the month is charged prorated.
#[utoipa::path(put, path = "/subscriptions/{id}/upgrade", tag = "billing", request_body = ChoosePlan,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::billing::Subscription),
    ))]
async fn upgrade(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<ChoosePlan>,
) -> Result<Response, ApiError> {
    let current = load_visible(&ctx, id).await?;
    ctx.principal.require(Permission::BillingWrite)?;
    let chosen = body.plan.plan();
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

/// Moves down on the first of next month.
#[utoipa::path(put, path = "/subscriptions/{id}/downgrade", tag = "billing", request_body = ChoosePlan,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::billing::Subscription),
    ))]
async fn downgrade(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<ChoosePlan>,
) -> Result<Response, ApiError> {
    let current = load_visible(&ctx, id).await?;
    ctx.principal.require(Permission::BillingWrite)?;
    let chosen = body.plan.plan();
    execute(
        &ctx,
        current,
        id,
        Command::Downgrade { to: chosen },
        StatusCode::OK,
    )
    .await
}

/// Cancels the pending downgrade.
#[utoipa::path(delete, path = "/subscriptions/{id}/downgrade", tag = "billing", params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::billing::Subscription),
    ))]
async fn cancel_downgrade(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let current = load_visible(&ctx, id).await?;
    ctx.principal.require(Permission::BillingWrite)?;
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
    let payloads = current.decide((command, now)).map_err(domain_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(org_id), Some(org_id), current.version, payloads);
    let after = batch.events().iter().fold(current, Aggregate::apply);
    let projected = batch.commit().await?;
    let body = resource(&after, now);
    Ok(accepted_or(
        status,
        projected,
        &format!("/api/v1/subscriptions/{org_id}"),
        Some(body),
    ))
}

/// The subscription as `GET /subscriptions/{id}` answers, as of `now`.
pub fn resource(
    s: &Subscription,
    now: chrono::DateTime<chrono::Utc>,
) -> api::billing::Subscription {
    api::billing::Subscription {
        id: s.org_id.into(),
        object: SubscriptionObject::Value,
        org_id: s.org_id.into(),
        plan: plan_id(s.effective_plan(now)),
        pending_downgrade: s.pending_at(now).map(|(plan, at)| PendingDowngrade {
            plan: plan_id(plan),
            effective_at: (*at).into(),
        }),
        started_at: time(s.started_at),
        version: s.version,
    }
}

/// A plan named in the subscription's own events, which only this side writes.
fn plan_id(name: &str) -> PlanId {
    name.parse().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a subscription names an unknown plan");
        platform::plans::DEFAULT_PLAN
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

/// Records a payment of an invoice's whole amount; paying twice is a conflict.
#[utoipa::path(post, path = "/billing/invoices/{id}/pay", tag = "billing", request_body = Payment,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = InvoicePayment),
    ))]
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
    ctx.principal.require(Permission::BillingWrite)?;
    if body.amount_cents < 0 {
        return Err(ApiError::invalid_param(
            "amount_cents",
            "amount_cents must be a whole, non-negative number of cents.",
        ));
    }
    let reference = short_text("reference", &body.reference)?;
    ctx.check_version(current.version)?;
    let now = ctx.state.clock.now();
    let payment = invoice::Command::Pay {
        amount_cents: body.amount_cents,
        reference: reference.clone(),
        now,
    };
    let payloads = current.decide(payment).map_err(|e| match e {
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
    let body = InvoicePayment {
        id: id.into(),
        object: InvoiceObject::Value,
        org_id: current.org_id.into(),
        status: InvoiceStatus::Paid,
        total_cents: current.total_cents,
        paid_cents: body.amount_cents,
        payment_reference: reference,
        paid_at: now.into(),
        version: current.version + 1,
    };
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &format!("/api/v1/billing/invoices/{id}"),
        Some(body),
    ))
}
