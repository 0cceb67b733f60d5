use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, InvoiceId, ModelTier, OrgId, PlanId, Timestamp};

object_name!(PlanObject = "plan");
object_name!(SubscriptionObject = "subscription");
object_name!(InvoiceObject = "invoice");

/// A plan's terms. Prices are cents per month; null is custom (Enterprise) or unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    pub id: PlanId,
    pub object: PlanObject,
    pub name: String,
    pub price_cents: Option<i64>,
    /// Always `usd`.
    pub currency: String,
    pub tokens_per_month: Option<u64>,
    pub model_tier: ModelTier,
    pub features: Vec<String>,
}

impl From<&platform::plans::Plan> for Plan {
    fn from(p: &platform::plans::Plan) -> Self {
        Self {
            id: p.id,
            object: PlanObject::Value,
            name: p.name.into(),
            price_cents: p.price_cents,
            currency: "usd".into(),
            tokens_per_month: p.tokens_per_month,
            model_tier: p.model_tier,
            features: p.features.iter().map(|f| f.to_string()).collect(),
        }
    }
}

/// An organization's subscription; its id is the organization's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub id: OrgId,
    pub object: SubscriptionObject,
    pub org_id: OrgId,
    /// The plan in force now.
    pub plan: PlanId,
    pub pending_downgrade: Option<PendingDowngrade>,
    pub started_at: Option<Timestamp>,
    pub version: i64,
}

/// A downgrade that takes effect on the first of next month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingDowngrade {
    pub plan: PlanId,
    pub effective_at: Timestamp,
}

/// `POST /subscriptions`, `PUT /subscriptions/{id}/upgrade`, `PUT /subscriptions/{id}/downgrade`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChoosePlan {
    pub plan: PlanId,
    /// Platform admin only.
    #[serde(default)]
    pub org_id: Option<OrgId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Paid,
}

/// A month's invoice: the plan's price, prorated upgrades, and the tokens used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    pub id: InvoiceId,
    pub object: InvoiceObject,
    pub org_id: OrgId,
    /// `YYYY-MM`.
    pub period: String,
    pub plan: PlanId,
    pub currency: String,
    pub status: InvoiceStatus,
    pub total_cents: i64,
    /// One line per charge: `{description, amount_cents, …}`.
    #[schema(value_type = Vec<Object>)]
    pub lines: serde_json::Value,
    /// Tokens and cost of the period.
    #[schema(value_type = Object)]
    pub usage: serde_json::Value,
    pub issued_at: Option<Timestamp>,
    pub paid_at: Option<Timestamp>,
    pub paid_cents: Option<i64>,
    pub payment_reference: Option<String>,
    pub version: i64,
}

/// What `POST /billing/invoices/{id}/pay` answers: the invoice's payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvoicePayment {
    pub id: InvoiceId,
    pub object: InvoiceObject,
    pub org_id: OrgId,
    pub status: InvoiceStatus,
    pub total_cents: i64,
    pub paid_cents: i64,
    pub payment_reference: String,
    pub paid_at: Timestamp,
    pub version: i64,
}

/// `POST /billing/webhooks/payments`: a payment provider's notice that an invoice was paid,
/// signed with the shared secret (`x-aihub-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentNotice {
    pub invoice_id: InvoiceId,
    pub amount_cents: i64,
    /// The provider's reference of the payment; a notice repeated with the same reference is
    /// answered as the first one was.
    pub reference: String,
}

/// `POST /billing/invoices/{id}/pay`: the whole amount due, and the payment's reference.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub amount_cents: i64,
    pub reference: String,
}
