//! `POST /subscriptions`, `PUT /subscriptions/{id}/upgrade`, `PUT /subscriptions/{id}/downgrade`,
//! `DELETE /subscriptions/{id}/downgrade` (cancel a pending downgrade),
//! `POST /billing/invoices/{id}/pay` (the platform admin), `POST /billing/webhooks/payments` (a
//! payment provider, signed).

use api::billing::{
    ChoosePlan, InvoiceObject, InvoicePayment, InvoiceStatus, Payment, PaymentNotice,
    PendingDowngrade, SubscriptionObject,
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
        .routes(routes!(payment_webhook))
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

/// Records a payment of an invoice's whole amount; paying twice is a conflict. For the platform
/// admin only: a tenant does not mark its own invoices paid (a payment provider reports payments
/// through the signed webhook, `POST /billing/webhooks/payments`).
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
    let current = load_invoice(&ctx, id).await?;
    ctx.principal.require_admin()?;
    ctx.check_version(current.version)?;
    record_payment(&ctx, current, body.amount_cents, &body.reference).await
}

/// A payment provider reports that an invoice was paid. Authenticated by its signature, not a
/// bearer token: `x-aihub-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
/// under `AIHUB_PAYMENT_WEBHOOK_SECRET`, at most five minutes old. A notice repeated with the
/// same reference answers 200 again; another payment of a paid invoice is 409.
#[utoipa::path(post, path = "/billing/webhooks/payments", tag = "billing", request_body = PaymentNotice,
    security(()),
    params(("x-aihub-signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">")),
    responses(
        (status = 200, body = InvoicePayment),
        (status = 401, description = "No valid signature (`invalid_signature`), or webhooks are not configured.", body = platform::ErrorResponse),
    ))]
async fn payment_webhook(
    axum::extract::State(state): axum::extract::State<CommandState>,
    platform::http::RequestId(request_id): platform::http::RequestId,
    headers: axum::http::HeaderMap,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let secret = state.payment_webhook_secret.clone().ok_or_else(|| {
        ApiError::unauthorized("Payment webhooks are not configured on this platform.")
            .with_code("invalid_signature")
    })?;
    let signature = headers
        .get("x-aihub-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The wall clock, not the platform's (pinned in tests and demos): the replay window is real time.
    super::webhook::verify(&secret, signature, &raw, chrono::Utc::now())
        .map_err(|why| ApiError::unauthorized(why).with_code("invalid_signature"))?;
    let notice: PaymentNotice = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("The notice is not a valid payment notice: {e}"),
        )
    })?;
    let ctx = Ctx {
        state,
        principal: platform::Principal::PlatformAdmin,
        actor: events::Actor {
            kind: events::ActorType::System,
            id: "payment-webhook".into(),
            ip: None,
        },
        request_id,
        headers,
    };
    let id = Uuid::from(notice.invoice_id);
    let current = load_invoice(&ctx, id).await?;
    // A provider retries a notice it is not sure was received: the same payment again is 200.
    if let Some((cents, reference, at)) = &current.payment {
        if reference == notice.reference.trim() {
            let at = chrono::DateTime::parse_from_rfc3339(at)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_default();
            let mut again = paid(&current, *cents, reference.clone(), at);
            again.version = current.version;
            return Ok(axum::response::IntoResponse::into_response(axum::Json(
                again,
            )));
        }
    }
    record_payment(&ctx, current, notice.amount_cents, &notice.reference).await
}

async fn load_invoice(ctx: &Ctx, id: Uuid) -> Result<Invoice, ApiError> {
    let current = load::<Invoice>(&ctx.state, &invoice::stream_id(id))
        .await?
        .state;
    if !current.exists() || !ctx.principal.sees(current.org_id) {
        return Err(ApiError::not_found(format!("No invoice with id {id}.")));
    }
    Ok(current)
}

async fn record_payment(
    ctx: &Ctx,
    current: Invoice,
    amount_cents: i64,
    reference: &str,
) -> Result<Response, ApiError> {
    let id = current.id;
    if amount_cents < 0 {
        return Err(ApiError::invalid_param(
            "amount_cents",
            "amount_cents must be a whole, non-negative number of cents.",
        ));
    }
    let reference = short_text("reference", reference)?;
    let now = ctx.state.clock.now();
    let payment = invoice::Command::Pay {
        amount_cents,
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
    let body = paid(&current, amount_cents, reference, now);
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &format!("/api/v1/billing/invoices/{id}"),
        Some(body),
    ))
}

fn paid(
    invoice: &Invoice,
    paid_cents: i64,
    reference: String,
    at: chrono::DateTime<chrono::Utc>,
) -> InvoicePayment {
    InvoicePayment {
        id: invoice.id.into(),
        object: InvoiceObject::Value,
        org_id: invoice.org_id.into(),
        status: InvoiceStatus::Paid,
        total_cents: invoice.total_cents,
        paid_cents,
        payment_reference: reference,
        paid_at: at.into(),
        version: invoice.version + 1,
    }
}
