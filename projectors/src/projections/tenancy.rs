//! Tenancy read model: organizations (teams, users and keys join it later).

use std::collections::BTreeMap;

use futures::future::{BoxFuture, FutureExt};

use events::personal::{Personal, ERASED};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::{Fold, Projection, Sql};

pub struct Tenancy;

impl Projection for Tenancy {
    fn name(&self) -> &'static str {
        "tenancy"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "read.organizations",
            "read.users",
            "read.role_assignments",
            "read.teams",
            "read.team_members",
            "read.api_keys",
            "read.subscriptions",
            "read.subscription_charges",
            "read.invoices",
            "read.rate_limits",
            "read.sso_configs",
        ]
    }

    fn statements(&self, event: &EventEnvelope) -> Vec<Sql> {
        let Some(org_id) = event.org_id else {
            return vec![];
        };
        let mut sql = self.changes(event, org_id);
        if !sql.is_empty() && changes_authentication(event) {
            // Delivered at commit, before the batch's `aihub_projected`: every process drops
            // the organization's cached keys before a command waiting on this event answers.
            sql.push(Sql::new(
                "SELECT pg_notify('aihub_auth', $1)",
                vec![Box::new(org_id.to_string())],
            ));
        }
        sql
    }

    fn fold(&self) -> Option<&dyn Fold> {
        Some(&LastUsed)
    }

    /// A chat call only moves its key's `last_used_at` forward to the call's time (`GREATEST`):
    /// a second copy changes nothing, and no command waits for it.
    fn marks(&self, event_type: &str) -> bool {
        !events::chat::is_call(event_type)
    }
}

/// A key's last use falls out of the calls it made: one update per key per batch, to its
/// latest call's time, rather than one per call (at the gateway's rate, thousands of versions of
/// one row per second).
struct LastUsed;

impl Fold for LastUsed {
    fn apply<'a>(
        &'a self,
        tx: &'a platform::db::Transaction<'a>,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let (ids, ats): (Vec<Uuid>, Vec<chrono::DateTime<chrono::Utc>>) =
                last_uses(events).into_iter().unzip();
            if ids.is_empty() {
                return Ok(());
            }
            let update = tx
                .prepare_cached(
                    "UPDATE read.api_keys k SET last_used_at = GREATEST(COALESCE(k.last_used_at, u.at), u.at)
                     FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id",
                )
                .await?;
            tx.execute(&update, &[&ids, &ats]).await?;
            Ok(())
        }
        .boxed()
    }
}

/// Each key's latest call among `events`, in key order.
fn last_uses(events: &[&EventEnvelope]) -> BTreeMap<Uuid, chrono::DateTime<chrono::Utc>> {
    let mut latest = BTreeMap::new();
    for event in events {
        let key = match &event.payload {
            EventPayload::ChatCompletionSucceeded(e) => e.call.api_key_id,
            EventPayload::ChatCompletionFailed(e) => e.call.api_key_id,
            _ => None,
        };
        if let Some(key) = key {
            let at = *event.occurred_at;
            latest
                .entry(key)
                .and_modify(|t: &mut chrono::DateTime<chrono::Utc>| *t = (*t).max(at))
                .or_insert(at);
        }
    }
    latest
}

/// Whether an event can change what a key of its organization may do: everything the tenancy
/// projection applies except the chat calls, which only touch `last_used_at`.
fn changes_authentication(event: &EventEnvelope) -> bool {
    !matches!(
        event.payload,
        EventPayload::ChatCompletionSucceeded(_) | EventPayload::ChatCompletionFailed(_)
    )
}

impl Tenancy {
    fn changes(&self, event: &EventEnvelope, org_id: Uuid) -> Vec<Sql> {
        if let Some(sql) = access_statements(event, org_id) {
            return sql;
        }
        if let Some(sql) = super::invoices::statements(event, org_id) {
            return sql;
        }
        let at = *event.occurred_at;
        let version = event.stream_version;
        match &event.payload {
            EventPayload::OrganizationCreated(e) => vec![Sql::new(
                "INSERT INTO read.organizations (id, name, slug, owner_email, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
                vec![
                    Box::new(org_id),
                    Box::new(e.name.clone()),
                    Box::new(e.slug.clone()),
                    Box::new(shown(e.owner_email.as_ref())),
                    Box::new(version),
                    Box::new(at),
                ],
            )],
            EventPayload::OrganizationUpdated(e) => vec![Sql::new(
                "UPDATE read.organizations
                 SET name = COALESCE($2, name), slug = COALESCE($3, slug),
                     owner_email = COALESCE($4, owner_email), version = $5, updated_at = $6
                 WHERE id = $1 AND version < $5",
                vec![
                    Box::new(org_id),
                    Box::new(e.name.clone()),
                    Box::new(e.slug.clone()),
                    Box::new(shown(e.owner_email.as_ref())),
                    Box::new(version),
                    Box::new(at),
                ],
            )],
            // The person's keys are gone; what the rows hold in clear goes too. A rebuild opens
            // the same events to `[erased]` and comes to the same rows. The owner's email first,
            // found through the users' rows before they are scrubbed.
            EventPayload::PersonErased(e) => vec![
                Sql::new(
                    "UPDATE read.organizations SET owner_email = $3
                     WHERE id = $1 AND owner_email IN (SELECT email FROM read.users WHERE id = ANY($2))",
                    vec![Box::new(org_id), Box::new(e.user_ids.clone()), Box::new(ERASED)],
                ),
                Sql::new(
                    "UPDATE read.users SET email = $3, name = CASE WHEN name IS NULL THEN NULL ELSE $3 END
                     WHERE org_id = $1 AND id = ANY($2)",
                    vec![Box::new(org_id), Box::new(e.user_ids.clone()), Box::new(ERASED)],
                ),
            ],
            EventPayload::SsoConfigured(e) => vec![Sql::new(
                "INSERT INTO read.sso_configs (org_id, issuer, client_id, allowed_domains, groups_claim,
                     role_mappings, default_role, version, updated_at, removed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false)
                 ON CONFLICT (org_id) DO UPDATE SET issuer = $2, client_id = $3, allowed_domains = $4,
                     groups_claim = $5, role_mappings = $6, default_role = $7, version = $8,
                     updated_at = $9, removed = false
                 WHERE read.sso_configs.version < $8",
                vec![
                    Box::new(org_id),
                    Box::new(e.issuer.clone()),
                    Box::new(e.client_id.clone()),
                    Box::new(e.allowed_domains.clone()),
                    Box::new(e.groups_claim.clone()),
                    Box::new(serde_json::to_value(&e.role_mappings).unwrap_or_default()),
                    Box::new(e.default_role.clone()),
                    Box::new(version),
                    Box::new(at),
                ],
            )],
            EventPayload::SsoRemoved(_) => vec![Sql::new(
                "UPDATE read.sso_configs SET removed = true, version = $2, updated_at = $3
                 WHERE org_id = $1 AND version < $2",
                vec![Box::new(org_id), Box::new(version), Box::new(at)],
            )],
            EventPayload::OrganizationDeleted(_) => vec![Sql::new(
                "UPDATE read.organizations SET deleted_at = $2, updated_at = $2, version = $3
                 WHERE id = $1 AND version < $3",
                vec![Box::new(org_id), Box::new(at), Box::new(version)],
            )],
            _ => vec![],
        }
    }
}

/// The nil UUID stands for "the whole organization" in `read.role_assignments.team_id`.
const WHOLE_ORG: Uuid = Uuid::nil();

/// The id of the stream's entity (`user:<uuid>` → the user's id). Every stream these events are
/// written to is keyed by a UUID; one that is not becomes the nil id, which matches no row.
fn stream_uuid(event: &EventEnvelope) -> Uuid {
    event
        .stream_id
        .kind()
        .and_then(|kind| event.stream_id.uuid_of(kind))
        .unwrap_or_default()
}

fn bump(table: &'static str, id: Uuid, event: &EventEnvelope) -> Sql {
    let text = match table {
        "organizations" => "UPDATE read.organizations SET version = $2, updated_at = $3 WHERE id = $1 AND version < $2",
        "users" => "UPDATE read.users SET version = $2, updated_at = $3 WHERE id = $1 AND version < $2",
        "api_keys" => "UPDATE read.api_keys SET version = $2, updated_at = $3 WHERE id = $1 AND version < $2",
        _ => "UPDATE read.teams SET version = $2, updated_at = $3 WHERE id = $1 AND version < $2",
    };
    Sql::new(
        text,
        vec![
            Box::new(id),
            Box::new(event.stream_version),
            Box::new(*event.occurred_at),
        ],
    )
}

/// A personal field as a read model keeps it: in clear once the runner opened it, `[erased]`
/// when its key is gone.
fn shown(field: Option<&Personal>) -> Option<String> {
    field.map(|f| f.shown().to_string())
}

pub(super) fn parse_time(raw: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Users, roles, teams and API keys.
fn access_statements(event: &EventEnvelope, org_id: Uuid) -> Option<Vec<Sql>> {
    let at = *event.occurred_at;
    let version = event.stream_version;
    let id = stream_uuid(event);
    let sql = match &event.payload {
        EventPayload::OwnerAdded(e) => vec![
            bump("organizations", org_id, event),
            Sql::new(
                "INSERT INTO read.role_assignments (org_id, user_id, role, team_id, assigned_at)
                 VALUES ($1, $2, 'owner', $3, $4) ON CONFLICT DO NOTHING",
                vec![Box::new(org_id), Box::new(e.user_id), Box::new(WHOLE_ORG), Box::new(at)],
            ),
        ],
        EventPayload::OwnerRemoved(e) => vec![
            bump("organizations", org_id, event),
            Sql::new(
                "DELETE FROM read.role_assignments WHERE user_id = $1 AND role = 'owner' AND team_id = $2",
                vec![Box::new(e.user_id), Box::new(WHOLE_ORG)],
            ),
        ],
        EventPayload::UserCreated(e) => vec![Sql::new(
            "INSERT INTO read.users (id, org_id, email, name, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
            vec![Box::new(id), Box::new(org_id), Box::new(e.email.shown().to_string()), Box::new(shown(e.name.as_ref())), Box::new(version), Box::new(at)],
        )],
        EventPayload::RoleAssigned(e) => vec![
            bump("users", id, event),
            Sql::new(
                "INSERT INTO read.role_assignments (org_id, user_id, role, team_id, assigned_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                vec![Box::new(org_id), Box::new(id), Box::new(e.role.clone()), Box::new(e.team_id.unwrap_or(WHOLE_ORG)), Box::new(at)],
            ),
        ],
        EventPayload::RoleRemoved(e) => vec![
            bump("users", id, event),
            Sql::new(
                "DELETE FROM read.role_assignments WHERE user_id = $1 AND role = $2 AND team_id = $3",
                vec![Box::new(id), Box::new(e.role.clone()), Box::new(e.team_id.unwrap_or(WHOLE_ORG))],
            ),
        ],
        EventPayload::TeamCreated(e) => vec![Sql::new(
            "INSERT INTO read.teams (id, org_id, name, description, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
            vec![Box::new(id), Box::new(org_id), Box::new(e.name.clone()), Box::new(e.description.clone()), Box::new(version), Box::new(at)],
        )],
        EventPayload::TeamUpdated(e) => vec![Sql::new(
            "UPDATE read.teams SET name = COALESCE($2, name), description = COALESCE($3, description),
                 version = $4, updated_at = $5
             WHERE id = $1 AND version < $4",
            vec![Box::new(id), Box::new(e.name.clone()), Box::new(e.description.clone()), Box::new(version), Box::new(at)],
        )],
        EventPayload::TeamMemberAdded(e) => vec![
            bump("teams", id, event),
            Sql::new(
                "INSERT INTO read.team_members (team_id, user_id, org_id, added_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                vec![Box::new(id), Box::new(e.user_id), Box::new(org_id), Box::new(at)],
            ),
        ],
        EventPayload::TeamMemberRemoved(e) => vec![
            bump("teams", id, event),
            Sql::new(
                "DELETE FROM read.team_members WHERE team_id = $1 AND user_id = $2",
                vec![Box::new(id), Box::new(e.user_id)],
            ),
        ],
        EventPayload::ApiKeyCreated(e) => vec![Sql::new(
            "INSERT INTO read.api_keys (id, org_id, public_id, prefix, secret_sha256, name, owner_user_id, team_id,
                 permissions, enabled, expires_at, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10, $11, $12, $12) ON CONFLICT (id) DO NOTHING",
            vec![
                Box::new(id),
                Box::new(org_id),
                Box::new(e.public_id.clone()),
                Box::new(e.prefix.clone()),
                Box::new(e.secret_sha256.clone()),
                Box::new(e.name.clone()),
                Box::new(e.owner_user_id),
                Box::new(e.team_id),
                Box::new(e.permissions.clone()),
                Box::new(e.expires_at.as_deref().and_then(parse_time)),
                Box::new(version),
                Box::new(at),
            ],
        )],
        EventPayload::ApiKeyUpdated(e) => vec![Sql::new(
            // $3: whether expires_at changed; $4: the new value (NULL = never expires).
            "UPDATE read.api_keys SET name = COALESCE($2, name),
                 expires_at = CASE WHEN $3 THEN $4 ELSE expires_at END,
                 enabled = COALESCE($5, enabled), version = $6, updated_at = $7
             WHERE id = $1 AND version < $6",
            vec![
                Box::new(id),
                Box::new(e.name.clone()),
                Box::new(e.expires_at.is_some()),
                Box::new(e.expires_at.as_deref().and_then(parse_time)),
                Box::new(e.enabled),
                Box::new(version),
                Box::new(at),
            ],
        )],
        EventPayload::ApiKeyPermissionsChanged(e) => vec![Sql::new(
            "UPDATE read.api_keys SET permissions = $2, version = $3, updated_at = $4 WHERE id = $1 AND version < $3",
            vec![Box::new(id), Box::new(e.permissions.clone()), Box::new(version), Box::new(at)],
        )],
        EventPayload::SubscriptionStarted(e) => vec![Sql::new(
            "INSERT INTO read.subscriptions (id, org_id, plan, started_at, version, updated_at)
             VALUES ($1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            vec![
                Box::new(org_id),
                Box::new(e.plan.clone()),
                Box::new(parse_time(&e.started_at).unwrap_or(at)),
                Box::new(version),
                Box::new(at),
            ],
        )],
        EventPayload::SubscriptionUpgraded(e) => {
            let effective = parse_time(&e.effective_at).unwrap_or(at);
            vec![
                Sql::new(
                    "UPDATE read.subscriptions SET plan = $2, pending_plan = NULL, pending_effective_at = NULL,
                         version = $3, updated_at = $4
                     WHERE id = $1 AND version < $3",
                    vec![Box::new(org_id), Box::new(e.to_plan.clone()), Box::new(version), Box::new(at)],
                ),
                Sql::new(
                    "INSERT INTO read.subscription_charges (event_id, org_id, kind, description, amount_cents, period, occurred_at)
                     VALUES ($1, $2, 'proration', $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
                    vec![
                        Box::new(event.event_id),
                        Box::new(org_id),
                        Box::new(format!(
                            "Upgrade {} → {}: {}/{} of the monthly price difference",
                            e.from_plan, e.to_plan, e.days_left, e.days_in_month
                        )),
                        Box::new(e.proration_cents),
                        Box::new(effective.format("%Y-%m").to_string()),
                        Box::new(effective),
                    ],
                ),
            ]
        }
        EventPayload::DowngradeScheduled(e) => vec![Sql::new(
            // A downgrade already in force becomes the plan before the new one is recorded.
            "UPDATE read.subscriptions
             SET plan = CASE WHEN pending_effective_at IS NOT NULL AND pending_effective_at < $4 THEN pending_plan ELSE plan END,
                 pending_plan = $2, pending_effective_at = $4, version = $3, updated_at = $5
             WHERE id = $1 AND version < $3",
            vec![
                Box::new(org_id),
                Box::new(e.to_plan.clone()),
                Box::new(version),
                Box::new(parse_time(&e.effective_at).unwrap_or(at)),
                Box::new(at),
            ],
        )],
        EventPayload::DowngradeCancelled(_) => vec![Sql::new(
            "UPDATE read.subscriptions SET pending_plan = NULL, pending_effective_at = NULL, version = $2, updated_at = $3
             WHERE id = $1 AND version < $2",
            vec![Box::new(org_id), Box::new(version), Box::new(at)],
        )],
        // A key's last use falls out of the calls it made: folded per batch (`LastUsed`).
        EventPayload::ChatCompletionSucceeded(_) | EventPayload::ChatCompletionFailed(_) => vec![],
        EventPayload::ApiKeyRevoked(_) => vec![Sql::new(
            "UPDATE read.api_keys SET revoked_at = $2, version = $3, updated_at = $2 WHERE id = $1 AND version < $3",
            vec![Box::new(id), Box::new(at), Box::new(version)],
        )],
        EventPayload::OrganizationLimitsSet(e) => vec![
            bump("organizations", org_id, event),
            limits_set("organization", org_id, org_id, e, version, at),
        ],
        EventPayload::ApiKeyLimitsSet(e) => vec![
            bump("api_keys", id, event),
            limits_set("api_key", id, org_id, e, version, at),
        ],
        _ => return None,
    };
    Some(sql)
}

/// The overrides of an organization or a key, replaced whole.
fn limits_set(
    subject: &'static str,
    subject_id: Uuid,
    org_id: Uuid,
    limits: &events::limits::LimitsSet,
    version: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Sql {
    let big = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    Sql::new(
        "INSERT INTO read.rate_limits (subject_id, subject, org_id, requests_per_minute,
                                       tokens_per_minute, concurrent_streams, version, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (subject_id) DO UPDATE SET
             requests_per_minute = EXCLUDED.requests_per_minute,
             tokens_per_minute = EXCLUDED.tokens_per_minute,
             concurrent_streams = EXCLUDED.concurrent_streams,
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
         WHERE read.rate_limits.version < EXCLUDED.version",
        vec![
            Box::new(subject_id),
            Box::new(subject),
            Box::new(org_id),
            Box::new(big(limits.requests_per_minute)),
            Box::new(big(limits.tokens_per_minute)),
            Box::new(
                limits
                    .concurrent_streams
                    .map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
            ),
            Box::new(version),
            Box::new(at),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::organization::*;
    use events::Actor;
    use uuid::Uuid;

    fn event(payload: EventPayload, version: i64) -> EventEnvelope {
        let id = Uuid::now_v7();
        EventEnvelope::new(
            payload,
            Some(id),
            events::StreamId::organization(id.into()),
            version,
            Actor::system(),
            "t".into(),
        )
    }

    #[test]
    fn every_organization_event_maps_to_one_guarded_statement_and_an_auth_notice() {
        let created = event(
            EventPayload::OrganizationCreated(OrganizationCreated {
                name: "A".into(),
                slug: "a-1".into(),
                owner_email: None,
            }),
            1,
        );
        let sql = Tenancy.statements(&created);
        assert_eq!(sql.len(), 2);
        assert!(sql[0].text.contains("ON CONFLICT (id) DO NOTHING"));
        assert!(sql[1].text.contains("pg_notify('aihub_auth'"));

        for payload in [
            EventPayload::OrganizationUpdated(OrganizationUpdated::default()),
            EventPayload::OrganizationDeleted(OrganizationDeleted::default()),
        ] {
            let sql = Tenancy.statements(&event(payload, 2));
            assert_eq!(sql.len(), 2);
            assert!(
                sql[0].text.contains("version < $"),
                "older events must not overwrite newer state"
            );
            assert!(sql[1].text.contains("pg_notify('aihub_auth'"));
        }
    }

    #[test]
    fn chat_calls_do_not_evict_cached_keys() {
        let call = events::chat::ChatCompletionFailed {
            call: events::chat::ChatCall {
                request_id: "r".into(),
                api_key_id: Some(Uuid::now_v7()),
                team_id: None,
                user_id: None,
                model: "m".into(),
                streamed: false,
                attempts: vec![],
                latency_ms: 1,
            },
            status: 502,
            error_code: "upstream_error".into(),
        };
        let key = call.call.api_key_id.expect("key");
        let failed = event(EventPayload::ChatCompletionFailed(call), 1);
        assert!(
            Tenancy.statements(&failed).is_empty(),
            "only last_used_at, folded per batch"
        );
        let mut later = failed.clone();
        later.occurred_at = events::Timestamp(*failed.occurred_at + chrono::Duration::seconds(5));
        let uses = last_uses(&[&later, &failed]);
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[&key], *later.occurred_at, "the latest call of the key");
    }
}
