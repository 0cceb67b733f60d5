//! Monthly token quotas, exact across any number of gateway processes. Before a call the gateway
//! reserves an upper bound of its tokens (the prompt's bytes plus the completion budget, which is
//! passed upstream as `max_tokens`, so the call cannot use more); after it, the reservation is
//! settled with the real usage. The ledger (`quota_usage`, a row per organization and month,
//! locked by every writer) keeps `used + reserved ≤ limit`. Calls are normally served from a
//! process-local lease (`leases`); this module keeps the per-call ledger path (`reserve`,
//! `settle`), used when leases are switched off and as the benchmarks' baseline.

pub mod lease;
pub mod leases;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use platform::db::PgPool;
use platform::plans::{next_month_start, Plan};
use platform::ApiError;
use uuid::Uuid;

/// The completion budget when the request names none.
pub const DEFAULT_COMPLETION_BUDGET: i64 = 1024;

#[derive(Debug, Clone)]
pub struct Reservation {
    pub id: Uuid,
    pub org_id: Uuid,
    pub period: String,
    pub tokens: i64,
    /// Tokens the completion may use (sent upstream as `max_tokens`).
    pub completion_budget: i64,
    /// Allowance left after this reservation; `None` for an unlimited plan.
    pub remaining: Option<i64>,
    /// The process-local lease it was taken from; `None` when it is a ledger row of its own.
    pub lease: Option<Arc<leases::Lease>>,
}

/// The completion budgets a call can live with: `(min, want)` tokens in all, prompt included.
/// A client's `max_tokens` is all or nothing; without one, the default budget shrinks to what is
/// left.
pub fn wanted_tokens(prompt: i64, wanted: Option<i64>) -> (i64, i64) {
    match wanted {
        Some(wanted) => (prompt + wanted, prompt + wanted),
        None => (prompt + 1, prompt + DEFAULT_COMPLETION_BUDGET),
    }
}

/// 429 `insufficient_quota`, naming the usage, the allowance and the reset time.
pub fn insufficient_quota(
    plan: &Plan,
    limit: i64,
    used: i64,
    reserved: i64,
    now: DateTime<Utc>,
) -> ApiError {
    let reset = next_month_start(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut error = ApiError::bad_request(
        "insufficient_quota",
        format!(
            "You exceeded your monthly token quota: {used} of {limit} tokens used ({reserved} held by calls in flight and gateway leases) on the {} plan; it resets at {reset}. Upgrade the subscription for more.",
            plan.name
        ),
    );
    error.status = axum::http::StatusCode::TOO_MANY_REQUESTS;
    error.kind = "insufficient_quota";
    error
}

/// The reservation of an unlimited plan: nothing is held.
fn unlimited(org_id: Uuid, period: String, wanted: Option<i64>) -> Reservation {
    Reservation {
        id: Uuid::now_v7(),
        org_id,
        period,
        tokens: 0,
        completion_budget: wanted.unwrap_or(DEFAULT_COMPLETION_BUDGET),
        remaining: None,
        lease: None,
    }
}

pub fn period(now: DateTime<Utc>) -> String {
    now.format("%Y-%m").to_string()
}

/// An upper bound of the prompt's tokens: no tokenizer yields more tokens than bytes, plus a
/// little per message for the chat format. Everything the model reads counts: the messages, and
/// the tool and function definitions, the tool choice and the response format (a JSON schema can
/// be long), which a provider bills as prompt tokens too.
pub fn prompt_upper_bound(body: &serde_json::Value) -> i64 {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let read = [
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "response_format",
    ]
    .iter()
    .filter(|field| !body[**field].is_null())
    .map(|field| body[*field].to_string().len() as i64)
    .sum::<i64>();
    // A message's text, and the calls an assistant message made (their arguments are read too).
    let message = |m: &serde_json::Value| {
        ["content", "tool_calls", "function_call"]
            .iter()
            .filter(|field| *field == &"content" || !m[**field].is_null())
            .map(|field| m[*field].to_string().len() as i64)
            .sum::<i64>()
            + 4
    };
    messages.iter().map(message).sum::<i64>() + read + 3
}

/// Reserves tokens for one call in the ledger (one transaction), or answers 429
/// `insufficient_quota`. `wanted` is the completion budget the client asked for (`max_tokens`);
/// without one, the budget shrinks to what is left.
pub async fn reserve(
    pool: &PgPool,
    org_id: Uuid,
    plan: &Plan,
    prompt: i64,
    wanted: Option<i64>,
    now: DateTime<Utc>,
    hold: std::time::Duration,
) -> Result<Reservation, ApiError> {
    let period = period(now);
    let id = Uuid::now_v7();
    let Some(limit) = plan.tokens_per_month.map(|t| t as i64) else {
        return Ok(unlimited(org_id, period, wanted));
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (used, reserved) = lock_ledger(&tx, org_id, &period).await?;
    let available = limit - used - reserved - prompt;
    let budget = match wanted {
        Some(wanted) if wanted <= available => wanted,
        None if available >= 1 => available.min(DEFAULT_COMPLETION_BUDGET),
        _ => return Err(insufficient_quota(plan, limit, used, reserved, now)),
    };
    let tokens = prompt + budget;
    tx.execute(
        "UPDATE quota_usage SET reserved = reserved + $3 WHERE org_id = $1 AND period = $2",
        &[&org_id, &period, &tokens],
    )
    .await?;
    let expires_at = now.max(Utc::now()) + chrono::Duration::from_std(hold).unwrap_or_default();
    tx.execute(
        "INSERT INTO quota_reservations (id, org_id, period, tokens, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &org_id, &period, &tokens, &expires_at],
    )
    .await?;
    tx.commit().await?;
    Ok(Reservation {
        id,
        org_id,
        period,
        tokens,
        completion_budget: budget,
        remaining: Some(limit - used - reserved - tokens),
        lease: None,
    })
}

/// Replaces a per-call reservation by the tokens the call really used. Like every ledger writer
/// it locks the ledger row first, so writers never wait on each other in opposite orders.
pub async fn settle(
    pool: &PgPool,
    reservation: &Reservation,
    used_tokens: i64,
) -> Result<(), ApiError> {
    if reservation.remaining.is_none() {
        return Ok(());
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_ledger(&tx, reservation.org_id, &reservation.period).await?;
    let held = tx
        .query_opt(
            "DELETE FROM quota_reservations WHERE id = $1 RETURNING tokens",
            &[&reservation.id],
        )
        .await?
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0);
    tx.execute(
        "UPDATE quota_usage SET reserved = reserved - $3, used = used + $4 WHERE org_id = $1 AND period = $2",
        &[&reservation.org_id, &reservation.period, &held, &used_tokens],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates the ledger row if needed and locks it: `(used, reserved)`.
pub(crate) async fn lock_ledger(
    tx: &tokio_postgres::Transaction<'_>,
    org_id: Uuid,
    period: &str,
) -> Result<(i64, i64), ApiError> {
    tx.execute(
        "INSERT INTO quota_usage (org_id, period) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&org_id, &period],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT used, reserved FROM quota_usage WHERE org_id = $1 AND period = $2 FOR UPDATE",
            &[&org_id, &period],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Releases reservations and leases whose process never settled or renewed them, one ledger
/// row at a time (locked first, as every ledger writer does).
pub async fn release_expired(pool: &PgPool) -> Result<u64, ApiError> {
    let client = pool.get().await?;
    let expired = client
        .query(
            "SELECT DISTINCT org_id, period FROM quota_reservations WHERE expires_at < now()",
            &[],
        )
        .await?;
    drop(client);
    let mut released = 0;
    for row in &expired {
        let (org, period): (Uuid, String) = (row.get(0), row.get(1));
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        lock_ledger(&tx, org, &period).await?;
        let rows = tx
            .query(
                "DELETE FROM quota_reservations WHERE org_id = $1 AND period = $2 AND expires_at < now() RETURNING tokens",
                &[&org, &period],
            )
            .await?;
        let tokens: i64 = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
        tx.execute(
            "UPDATE quota_usage SET reserved = reserved - $3 WHERE org_id = $1 AND period = $2",
            &[&org, &period, &tokens],
        )
        .await?;
        tx.commit().await?;
        released += rows.len() as u64;
    }
    Ok(released)
}
