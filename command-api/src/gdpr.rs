//! GDPR data-subject requests (issue 12): `POST /audit/gdpr/access` and
//! `POST /audit/gdpr/erasure`, for one person of the caller's organization, named by email.
//!
//! Erasure is crypto-shredding: the person's keys are destroyed by the journal in the
//! transaction that appends `person.erased` (as a key block is written with its revocation), so
//! every sealed copy of their email and name — journal, topic, audit log, exports — is
//! unreadable from that commit on, and the read models that held them in clear are scrubbed when
//! the event is projected. No event is edited.

use api::gdpr::{
    DataSubjectRequest, Erasure, ErasureObject, PersonApiKey, PersonAuditEvent, PersonMembership,
    PersonRole, PersonUsage, PersonUser, PersonalData, PersonalDataObject,
};
use events::personal::{PersonErased, PersonExported};
use events::{EventEnvelope, EventPayload, StreamId};
use platform::access::Permission;
use platform::http::Json;
use platform::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::command::{Ctx, TENANCY};
use crate::commit::{commit, Stream};
use crate::journal::Claim;
use crate::organizations::aggregate::EmailAddress;
use crate::users::{email_claim, EMAIL_SCOPE};
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(access))
        .routes(routes!(erasure))
}

/// The person asked about: the organization, the email, and what the platform holds to find
/// them (their user, by the email's claim; their keys, by the email's blind index).
struct Subject {
    org_id: Uuid,
    email: EmailAddress,
    user_id: Option<Uuid>,
    key_ids: Vec<Uuid>,
}

async fn subject(ctx: &Ctx, body: &DataSubjectRequest) -> Result<Subject, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id.map(Uuid::from))?;
    ctx.principal.require(Permission::ComplianceWrite)?;
    let email =
        EmailAddress::parse(&body.email).map_err(|m| ApiError::invalid_param("email", m))?;
    let journal = &ctx.state.journal;
    let user_id = journal
        .claim_holder(EMAIL_SCOPE, &email_claim(org_id, &email))
        .await?
        .and_then(|stream| stream.parse::<StreamId>().ok())
        .and_then(|stream| stream.uuid_of(events::StreamKind::User));
    let client = journal.pool().get().await?;
    let key_ids = client
        .query(
            "SELECT key_id FROM person_keys WHERE org_id = $1 AND subject = $2 ORDER BY key_id",
            &[&org_id, &platform::personal::email_index(email.as_str())],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect::<Vec<Uuid>>();
    if user_id.is_none() && key_ids.is_empty() {
        return Err(ApiError::not_found(
            "The organization holds no personal data under this email.",
        ));
    }
    Ok(Subject {
        org_id,
        email,
        user_id,
        key_ids,
    })
}

/// A data-subject request's event, on a stream of its own in the person's organization.
fn request_events(ctx: &Ctx, subject: &Subject, payloads: Vec<EventPayload>) -> Vec<EventEnvelope> {
    Stream {
        id: StreamId::person_request(Uuid::now_v7()),
        org_id: Some(subject.org_id),
        version: 0,
        actor: &ctx.actor,
        correlation_id: &ctx.request_id,
    }
    .envelopes(payloads)
}

/// The projections `gather` reads.
const GATHERED_FROM: [&str; 3] = [TENANCY, "audit", "usage"];

/// Exports everything the organization holds about a person: their user with its roles, team
/// memberships, the keys they own or created, the audit events they acted in or that concern
/// them, and their chat usage. Needs `compliance:write`; the answer is the export (it is not
/// stored anywhere), and the request is recorded as `person.exported`. 404 when the organization
/// holds nothing under the email.
#[utoipa::path(post, path = "/audit/gdpr/access", tag = "audit", request_body = DataSubjectRequest,
    responses((status = 200, body = PersonalData)))]
async fn access(
    ctx: Ctx,
    Json(body): Json<DataSubjectRequest>,
) -> Result<axum::Json<PersonalData>, ApiError> {
    let subject = subject(&ctx, &body).await?;
    let events = request_events(
        &ctx,
        &subject,
        vec![EventPayload::PersonExported(PersonExported {
            user_ids: subject.user_id.into_iter().collect(),
        })],
    );
    // The request is recorded first, and the answer waits until the read models it is gathered
    // from have applied it: every event of the organization sits before it in the same
    // partition, so nothing written before the request is missing from the answer.
    let ids = [events[0].event_id];
    let pending: Vec<_> = GATHERED_FROM
        .iter()
        .map(|projection| ctx.state.consistency.register(projection, &ids))
        .collect();
    ctx.state.journal.append(&events, &[]).await?;
    for wait in pending {
        if !ctx
            .state
            .consistency
            .wait(wait, ctx.state.consistency_timeout)
            .await
        {
            return Err(ApiError::unavailable(
                "The read models are behind; the request was recorded, try again shortly.",
            ));
        }
    }
    let data = gather(&ctx.state, &subject).await?;
    Ok(axum::Json(data))
}

/// Erases a person: destroys their keys, so every email and name of theirs sealed in events
/// reads `[erased]` everywhere (journal, topic, audit log, exports, replays), releases their
/// email, and scrubs the read models. Their user stays (its id, roles and keys), shown as
/// `[erased]`. Recorded as `person.erased`, which names no personal data. Needs
/// `compliance:write` and `users:write` (an auditor alone cannot erase). 404 when the
/// organization holds nothing under the email.
#[utoipa::path(post, path = "/audit/gdpr/erasure", tag = "audit", request_body = DataSubjectRequest,
    responses((status = 200, body = Erasure)))]
async fn erasure(
    ctx: Ctx,
    Json(body): Json<DataSubjectRequest>,
) -> Result<axum::Json<Erasure>, ApiError> {
    ctx.principal.require(Permission::UsersWrite)?;
    let subject = subject(&ctx, &body).await?;
    let events = request_events(
        &ctx,
        &subject,
        vec![EventPayload::PersonErased(PersonErased {
            key_ids: subject.key_ids.clone(),
            user_ids: subject.user_id.into_iter().collect(),
        })],
    );
    let claims: Vec<(Claim, String)> = subject
        .user_id
        .map(|id| {
            (
                Claim::Release {
                    scope: EMAIL_SCOPE,
                    value: email_claim(subject.org_id, &subject.email),
                },
                crate::users::aggregate::stream_id(id).to_string(),
            )
        })
        .into_iter()
        .collect();
    commit(&ctx.state, &ctx.headers, &events, &claims, TENANCY).await?;
    // The destroyed key's old row version stays in the table's pages until a vacuum; remove it
    // now rather than at autovacuum's leisure (WAL and backups keep it: docs/ARCHITECTURE.md).
    if let Ok(client) = ctx.state.journal.pool().get().await {
        if let Err(e) = client.batch_execute("VACUUM person_keys").await {
            tracing::warn!(error = %e, "vacuuming person_keys after an erasure failed");
        }
    }
    Ok(axum::Json(Erasure {
        object: ErasureObject::Value,
        org_id: subject.org_id.into(),
        event_id: events[0].event_id,
        user_ids: subject.user_id.into_iter().map(Into::into).collect(),
        key_ids: subject.key_ids,
        erased_at: events[0].occurred_at,
    }))
}

/// What the read models hold about the person. The write side reads read models here, as it
/// does to authenticate: an access request is an answer about the organization's data, and the
/// read models are where that data is kept in clear.
async fn gather(state: &CommandState, subject: &Subject) -> Result<PersonalData, ApiError> {
    let client = state.journal.pool().get().await?;
    let org = subject.org_id;
    let users: Vec<Uuid> = subject.user_id.into_iter().collect();
    let mut people = Vec::new();
    for row in client
        .query(
            "SELECT id, email, name, created_at FROM read.users
             WHERE org_id = $1 AND id = ANY($2) ORDER BY id",
            &[&org, &users],
        )
        .await?
    {
        let id: Uuid = row.get(0);
        let roles = client
            .query(
                "SELECT role, team_id FROM read.role_assignments
                 WHERE org_id = $1 AND user_id = $2 ORDER BY role, team_id",
                &[&org, &id],
            )
            .await?
            .iter()
            .map(|r| {
                let team: Uuid = r.get(1);
                PersonRole {
                    role: r.get(0),
                    team_id: (!team.is_nil()).then_some(team),
                }
            })
            .collect();
        people.push(PersonUser {
            id: id.into(),
            email: row.get(1),
            name: row.get(2),
            roles,
            created_at: row.get::<_, chrono::DateTime<chrono::Utc>>(3).into(),
        });
    }
    let team_memberships = client
        .query(
            "SELECT m.team_id, t.name, m.user_id, m.added_at FROM read.team_members m
             JOIN read.teams t ON t.id = m.team_id
             WHERE m.org_id = $1 AND m.user_id = ANY($2) ORDER BY m.team_id",
            &[&org, &users],
        )
        .await?
        .iter()
        .map(|r| PersonMembership {
            team_id: r.get(0),
            team_name: r.get(1),
            user_id: r.get::<_, Uuid>(2).into(),
            added_at: r.get::<_, chrono::DateTime<chrono::Utc>>(3).into(),
        })
        .collect();
    // The person acts as their user (single sign-on) or through the keys they own.
    let owned: Vec<Uuid> = client
        .query(
            "SELECT id FROM read.api_keys WHERE org_id = $1 AND owner_user_id = ANY($2)",
            &[&org, &users],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let actors: Vec<String> = users.iter().chain(&owned).map(Uuid::to_string).collect();
    let streams: Vec<String> = users
        .iter()
        .map(|id| crate::users::aggregate::stream_id(*id).to_string())
        .collect();
    let api_keys = client
        .query(
            "SELECT k.id, k.name, k.prefix, k.owner_user_id, k.team_id, k.created_at, k.revoked_at,
                    k.last_used_at
             FROM read.api_keys k
             WHERE k.org_id = $1 AND (k.id = ANY($2) OR EXISTS (
                 SELECT 1 FROM read.audit_log a
                 WHERE a.org_id = $1 AND a.event_type = 'api_key.created'
                   AND a.stream_id = 'api_key:' || k.id AND a.actor_id = ANY($3)))
             ORDER BY k.id",
            &[&org, &owned, &actors],
        )
        .await?
        .iter()
        .map(|r| PersonApiKey {
            id: r.get(0),
            name: r.get(1),
            prefix: r.get(2),
            owner_user_id: r.get(3),
            team_id: r.get(4),
            created_at: r.get::<_, chrono::DateTime<chrono::Utc>>(5).into(),
            revoked_at: r
                .get::<_, Option<chrono::DateTime<chrono::Utc>>>(6)
                .map(Into::into),
            last_used_at: r
                .get::<_, Option<chrono::DateTime<chrono::Utc>>>(7)
                .map(Into::into),
        })
        .collect();
    let audit_events = client
        .query(
            "SELECT event_id, event_type, occurred_at, stream_id, actor_type, actor_id, correlation_id
             FROM read.audit_log
             WHERE org_id = $1 AND (actor_id = ANY($2) OR stream_id = ANY($3))
             ORDER BY occurred_at, event_id",
            &[&org, &actors, &streams],
        )
        .await?
        .iter()
        .map(|r| PersonAuditEvent {
            event_id: r.get(0),
            event_type: r.get(1),
            occurred_at: r.get::<_, chrono::DateTime<chrono::Utc>>(2).into(),
            stream_id: r.get(3),
            actor_type: r.get(4),
            actor_id: r.get(5),
            correlation_id: r.get(6),
        })
        .collect();
    let usage = client
        .query(
            "SELECT model, count(*), COALESCE(sum(total_tokens), 0)::bigint,
                    COALESCE(sum(cost_micros), 0)::bigint
             FROM read.chat_calls
             WHERE org_id = $1 AND (user_id = ANY($2) OR api_key_id = ANY($3))
             GROUP BY model ORDER BY model",
            &[&org, &users, &owned],
        )
        .await?
        .iter()
        .map(|r| PersonUsage {
            model: r.get(0),
            calls: r.get(1),
            total_tokens: r.get(2),
            cost_micros: r.get(3),
        })
        .collect();
    Ok(PersonalData {
        object: PersonalDataObject::Value,
        org_id: org.into(),
        email: subject.email.as_str().to_string(),
        users: people,
        team_memberships,
        api_keys,
        audit_events,
        usage,
    })
}
