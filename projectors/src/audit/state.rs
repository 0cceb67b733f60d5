//! An organization's state at an instant, rebuilt from its events on the topic (issue 12): the
//! tenancy projection's own statements, applied to copies of its tables in a schema of their
//! own, so what is replayed is exactly what the live read model would have held then.
//!
//! `GET /audit/state` does it in a schema created inside a transaction that is rolled back;
//! `aihub replay --org --as-of --schema` commits it, for SQL work.

use std::collections::HashSet;

use anyhow::Context;
use api::audit::{
    AuditKeyStatus, AuditState, AuditStateKey, AuditStateMember, AuditStateObject,
    AuditStateOrganization, AuditStateRole, AuditStateSubscription, AuditStateTeam, AuditStateUser,
};
use api::Timestamp;
use chrono::{DateTime, Utc};
use events::kafka::KafkaConnection;
use events::EventEnvelope;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::projections::tenancy::Tenancy;
use crate::Projection;

/// The tables of the tenancy projection, without their `read.` schema.
pub fn tables() -> Vec<&'static str> {
    Tenancy
        .tables()
        .iter()
        .map(|t| t.strip_prefix("read.").unwrap_or(t))
        .collect()
}

/// A schema name the replay may create: a plain lower-case identifier that is none of the
/// platform's own schemas.
pub fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    plain && !matches!(name, "public" | "read" | "information_schema") && !name.starts_with("pg_")
}

/// A statement of the projection with its `read.` qualifiers pointed at `schema`.
pub fn requalify(text: &str, schema: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = rest.find("read.") {
        let before = rest[..at].chars().next_back();
        let qualifier = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        out.push_str(&rest[..at]);
        out.push_str(if qualifier { schema } else { "read" });
        out.push('.');
        rest = &rest[at + "read.".len()..];
    }
    out.push_str(rest);
    out
}

/// Creates `schema` with an empty copy of every tenancy table (columns, defaults, keys and
/// indexes; no foreign keys or triggers).
pub async fn create_tables(client: &impl GenericClient, schema: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        valid_schema(schema),
        "not a schema name the replay may use: {schema:?}"
    );
    let mut ddl = format!("CREATE SCHEMA {schema};");
    for table in tables() {
        ddl.push_str(&format!(
            "CREATE TABLE {schema}.{table} (LIKE read.{table} INCLUDING ALL);"
        ));
    }
    client
        .batch_execute(&ddl)
        .await
        .with_context(|| format!("creating schema {schema}"))?;
    Ok(())
}

/// What a replay read and applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Messages of the topic read (every organization's).
    pub read: u64,
    /// The organization's events at or before the instant, applied once each.
    pub applied: u64,
    /// The organization's events after the instant.
    pub later: u64,
}

/// Applies the organization's events on the topic that occurred at or before `as_of`, in topic
/// order (one organization is one partition, in chain order), each once, into `schema`'s copies
/// of the tenancy tables. `progress` is called with the running counts every 10,000 messages.
pub async fn replay_into(
    client: &impl GenericClient,
    kafka: &KafkaConnection,
    topic: &str,
    schema: &str,
    org: Uuid,
    as_of: DateTime<Utc>,
    mut progress: impl FnMut(&Replayed),
) -> anyhow::Result<Replayed> {
    anyhow::ensure!(
        valid_schema(schema),
        "not a schema name the replay may use: {schema:?}"
    );
    let chain = events::audit::chain_of(Some(org));
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut counts = Replayed::default();
    let mut messages = super::read_topic(kafka, topic, None).await?;
    while let Some(message) = messages.recv().await {
        let message = message?;
        counts.read += 1;
        if counts.read % 10_000 == 0 {
            progress(&counts);
        }
        if super::chain_of_message(&message) != chain {
            continue;
        }
        // A message that is not an event of this build (or not JSON) changes no read model: the
        // live projector skips it the same way.
        let Some(mut event) = message
            .envelope
            .and_then(|e| serde_json::from_value::<EventEnvelope>(e).ok())
        else {
            continue;
        };
        if event.org_id != Some(org) {
            continue;
        }
        if *event.occurred_at > as_of {
            counts.later += 1;
            continue;
        }
        if !seen.insert(event.event_id) {
            continue;
        }
        // Personal fields as the live projection shows them: opened with the persons' keys, or
        // `[erased]` for a person erased since.
        platform::personal::open(client, std::slice::from_mut(&mut event)).await?;
        for sql in Tenancy.statements(&event) {
            // Cache evictions are for the live platform, not for a copy.
            if sql.text.contains("pg_notify") {
                continue;
            }
            let params: Vec<&(dyn ToSql + Sync)> = sql
                .params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            client
                .execute(&requalify(sql.text, schema), &params)
                .await
                .with_context(|| format!("applying {} {}", event.event_type(), event.event_id))?;
        }
        counts.applied += 1;
    }
    progress(&counts);
    Ok(counts)
}

fn time(at: Option<DateTime<Utc>>) -> Option<Timestamp> {
    at.map(Timestamp)
}

/// The organization's state as `schema` holds it after a replay to `as_of`.
pub async fn read_state(
    client: &impl GenericClient,
    schema: &str,
    org: Uuid,
    as_of: DateTime<Utc>,
    replayed: &Replayed,
) -> anyhow::Result<AuditState> {
    anyhow::ensure!(
        valid_schema(schema),
        "not a schema name the replay may use: {schema:?}"
    );
    let organization = client
        .query_opt(
            &format!(
                "SELECT id, name, slug, owner_email, created_at, deleted_at
                 FROM {schema}.organizations WHERE id = $1"
            ),
            &[&org],
        )
        .await?
        .map(|r| AuditStateOrganization {
            id: r.get::<_, Uuid>("id").into(),
            name: r.get("name"),
            slug: r.get("slug"),
            owner_email: r.get("owner_email"),
            created_at: Timestamp(r.get("created_at")),
            deleted_at: time(r.get("deleted_at")),
        });
    let roles = client
        .query(
            &format!(
                "SELECT user_id, role, team_id, assigned_at FROM {schema}.role_assignments
                 WHERE org_id = $1 ORDER BY user_id, team_id, role"
            ),
            &[&org],
        )
        .await?;
    let users = client
        .query(
            &format!(
                "SELECT id, email, name, created_at FROM {schema}.users WHERE org_id = $1 ORDER BY id"
            ),
            &[&org],
        )
        .await?
        .iter()
        .map(|u| {
            let id: Uuid = u.get("id");
            AuditStateUser {
                id,
                email: u.get("email"),
                name: u.get("name"),
                created_at: Timestamp(u.get("created_at")),
                roles: roles
                    .iter()
                    .filter(|r| r.get::<_, Uuid>("user_id") == id)
                    .map(|r| AuditStateRole {
                        role: r.get("role"),
                        team_id: Some(r.get::<_, Uuid>("team_id")).filter(|t| !t.is_nil()),
                        assigned_at: Timestamp(r.get("assigned_at")),
                    })
                    .collect(),
            }
        })
        .collect();
    let members = client
        .query(
            &format!(
                "SELECT team_id, user_id, added_at FROM {schema}.team_members
                 WHERE org_id = $1 ORDER BY team_id, user_id"
            ),
            &[&org],
        )
        .await?;
    let teams = client
        .query(
            &format!(
                "SELECT id, name, description, created_at FROM {schema}.teams
                 WHERE org_id = $1 ORDER BY id"
            ),
            &[&org],
        )
        .await?
        .iter()
        .map(|t| {
            let id: Uuid = t.get("id");
            AuditStateTeam {
                id,
                name: t.get("name"),
                description: t.get("description"),
                created_at: Timestamp(t.get("created_at")),
                members: members
                    .iter()
                    .filter(|m| m.get::<_, Uuid>("team_id") == id)
                    .map(|m| AuditStateMember {
                        user_id: m.get("user_id"),
                        added_at: Timestamp(m.get("added_at")),
                    })
                    .collect(),
            }
        })
        .collect();
    let api_keys = client
        .query(
            &format!(
                "SELECT id, public_id, prefix, name, owner_user_id, team_id, permissions, enabled,
                        expires_at, revoked_at, last_used_at, created_at
                 FROM {schema}.api_keys WHERE org_id = $1 ORDER BY id"
            ),
            &[&org],
        )
        .await?
        .iter()
        .map(|k| {
            let enabled: bool = k.get("enabled");
            let expires_at: Option<DateTime<Utc>> = k.get("expires_at");
            let revoked_at: Option<DateTime<Utc>> = k.get("revoked_at");
            let status = if revoked_at.is_some() {
                AuditKeyStatus::Revoked
            } else if !enabled {
                AuditKeyStatus::Disabled
            } else if expires_at.is_some_and(|e| e <= as_of) {
                AuditKeyStatus::Expired
            } else {
                AuditKeyStatus::Active
            };
            AuditStateKey {
                id: k.get("id"),
                public_id: k.get("public_id"),
                prefix: k.get("prefix"),
                name: k.get("name"),
                owner_user_id: k.get("owner_user_id"),
                team_id: k.get("team_id"),
                permissions: k.get("permissions"),
                status,
                enabled,
                expires_at: time(expires_at),
                revoked_at: time(revoked_at),
                last_used_at: time(k.get("last_used_at")),
                created_at: Timestamp(k.get("created_at")),
            }
        })
        .collect();
    let subscription = client
        .query_opt(
            &format!(
                "SELECT plan, pending_plan, pending_effective_at, started_at
                 FROM {schema}.subscriptions WHERE org_id = $1"
            ),
            &[&org],
        )
        .await?
        .map(|s| {
            let plan: String = s.get("plan");
            let pending_plan: Option<String> = s.get("pending_plan");
            let pending_at: Option<DateTime<Utc>> = s.get("pending_effective_at");
            let in_force = match (&pending_plan, pending_at) {
                (Some(next), Some(at)) if at <= as_of => next.clone(),
                _ => plan,
            };
            AuditStateSubscription {
                plan: in_force,
                pending_plan,
                pending_effective_at: time(pending_at),
                started_at: Timestamp(s.get("started_at")),
            }
        });
    Ok(AuditState {
        object: AuditStateObject::Value,
        org_id: org.into(),
        as_of: Timestamp(as_of),
        events_replayed: replayed.applied,
        organization,
        users,
        teams,
        api_keys,
        subscription,
    })
}

/// The organization's state at `as_of`, replayed inside a transaction that is rolled back: a
/// scratch schema of its own, nothing left behind.
pub async fn state_at(
    pool: &platform::db::PgPool,
    kafka: &KafkaConnection,
    topic: &str,
    org: Uuid,
    as_of: DateTime<Utc>,
) -> anyhow::Result<AuditState> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let schema = format!("aihub_asof_{}", Uuid::now_v7().simple());
    create_tables(&*tx, &schema).await?;
    let replayed = replay_into(&*tx, kafka, topic, &schema, org, as_of, |_| {}).await?;
    let state = read_state(&*tx, &schema, org, as_of, &replayed).await?;
    tx.rollback().await?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_read_qualifier_is_rewritten() {
        assert_eq!(
            requalify(
                "UPDATE read.rate_limits SET x = 1 WHERE read.rate_limits.version < 2 AND already.read = 1",
                "snap"
            ),
            "UPDATE snap.rate_limits SET x = 1 WHERE snap.rate_limits.version < 2 AND already.read = 1"
        );
        assert_eq!(requalify("SELECT thread.x", "snap"), "SELECT thread.x");
    }

    #[test]
    fn platform_schemas_and_odd_names_are_refused() {
        for bad in [
            "",
            "public",
            "read",
            "pg_temp",
            "information_schema",
            "A",
            "x;drop",
            "1a",
            "a-b",
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
        for good in ["audit_snapshot", "_x1"] {
            assert!(valid_schema(good), "{good}");
        }
    }
}
