//! Monthly token quotas, exact across any number of gateway processes. Before a call the gateway
//! reserves an upper bound of its tokens (the prompt's bytes plus the completion budget, which is
//! passed upstream as `max_tokens`, so the call cannot use more); after it, the reservation is
//! settled with the real usage. A row lock per organization and month serializes reservations.

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
}

pub fn period(now: DateTime<Utc>) -> String {
    now.format("%Y-%m").to_string()
}

/// An upper bound of the prompt's tokens: no tokenizer yields more tokens than bytes, plus a
/// little per message for the chat format.
pub fn prompt_upper_bound(body: &serde_json::Value) -> i64 {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    messages
        .iter()
        .map(|m| m["content"].to_string().len() as i64 + 4)
        .sum::<i64>()
        + 3
}

/// Reserves tokens for one call, or answers 429 `insufficient_quota`. `wanted` is the completion
/// budget the client asked for (`max_tokens`); without one, the budget shrinks to what is left.
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
        let budget = wanted.unwrap_or(DEFAULT_COMPLETION_BUDGET);
        return Ok(Reservation {
            id,
            org_id,
            period,
            tokens: 0,
            completion_budget: budget,
            remaining: None,
        });
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
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
    let (used, reserved): (i64, i64) = (row.get(0), row.get(1));
    let available = limit - used - reserved - prompt;
    let budget = match wanted {
        Some(wanted) if wanted <= available => wanted,
        None if available >= 1 => available.min(DEFAULT_COMPLETION_BUDGET),
        _ => {
            drop(tx);
            let reset = next_month_start(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let mut error = ApiError::bad_request(
                "insufficient_quota",
                format!(
                    "You exceeded your monthly token quota: {used} of {limit} tokens used ({reserved} held by calls in flight) on the {} plan; it resets at {reset}. Upgrade the subscription for more.",
                    plan.name
                ),
            );
            error.status = axum::http::StatusCode::TOO_MANY_REQUESTS;
            error.kind = "insufficient_quota";
            return Err(error);
        }
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
    })
}

/// Replaces the reservation by the tokens the call really used.
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

/// Releases reservations whose process never settled them.
pub async fn release_expired(pool: &PgPool) -> Result<u64, ApiError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "DELETE FROM quota_reservations WHERE expires_at < now() RETURNING org_id, period, tokens",
            &[],
        )
        .await?;
    for row in &rows {
        let (org, period, tokens): (Uuid, String, i64) = (row.get(0), row.get(1), row.get(2));
        tx.execute(
            "UPDATE quota_usage SET reserved = reserved - $3 WHERE org_id = $1 AND period = $2",
            &[&org, &period, &tokens],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}
