//! A principal for work the platform does on an organization's behalf (its synthetic health
//! checks): the organization's plan and rate limits as now in force, and no permission but
//! calling models, so such a call is refused, metered and billed exactly like a key's.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::access::Permission;
use crate::auth::{plan_at, KeyPrincipal};
use crate::ratelimit::{KeyLimits, Limits, Overrides};

/// The organization's chat principal, acting as `key_id` (the check's id, so its calls are told
/// apart in usage and metrics); none when the organization is gone.
pub async fn chat_principal(
    pool: &crate::db::PgPool,
    org_id: Uuid,
    key_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<KeyPrincipal>, crate::ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT s.plan, s.pending_plan, s.pending_effective_at,
                    ol.requests_per_minute AS org_rpm, ol.tokens_per_minute AS org_tpm,
                    ol.concurrent_streams AS org_streams
             FROM read.organizations o
             LEFT JOIN read.subscriptions s ON s.org_id = o.id
             LEFT JOIN read.rate_limits ol ON ol.subject_id = o.id
             WHERE o.id = $1 AND o.deleted_at IS NULL",
            &[&org_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let plan = plan_at(
        org_id,
        row.get::<_, Option<&str>>("plan"),
        row.get::<_, Option<&str>>("pending_plan"),
        row.get("pending_effective_at"),
        now,
    );
    let org_limits = Overrides::from_row(&row, "org").over(Limits::of_plan(plan.plan()));
    Ok(Some(KeyPrincipal {
        key_id,
        org_id,
        owner_user_id: None,
        team_id: None,
        permissions: BTreeSet::from([Permission::ChatWrite]),
        team_permissions: BTreeSet::new(),
        plan,
        limits: KeyLimits::new(org_limits, Overrides::default()),
        sso: None,
    }))
}
