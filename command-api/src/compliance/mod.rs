//! Compliance reports (issue 12): `POST /audit/compliance/generate` records
//! `compliance.report_requested` and starts a job; the job reads the organization's chain from
//! the journal, up to the request, folds it through `evaluate::Evaluator`, and appends
//! `compliance.report_generated` with the report and the SHA-256 of its canonical JSON (or
//! `compliance.report_failed`). The read API serves both from the audit read model.

pub mod evaluate;

use api::compliance::{
    ComplianceFramework, ComplianceReport, ComplianceReportContent, ComplianceReportObject,
    ComplianceReportStatus, GenerateComplianceReport, Period,
};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use events::compliance::{
    ComplianceReportFailed, ComplianceReportGenerated, ComplianceReportRequested,
};
use events::{Actor, EventEnvelope, EventPayload, StreamId};
use futures::StreamExt;
use platform::access::Permission;
use platform::http::Json;
use platform::ApiError;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::billing::aggregate::{self as subscription, Subscription};
use crate::command::{load, Ctx};
use crate::commit::{commit, Stream};
use crate::journal::Journal;
use crate::organizations::routes::live_org;
use crate::CommandState;

/// Reports computed at once, in this process; the others wait their turn.
static JOBS: Semaphore = Semaphore::const_new(2);

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new().routes(routes!(generate))
}

/// The hex SHA-256 of a report's canonical JSON: what `compliance.report_generated` records.
pub fn content_hash(report: &serde_json::Value) -> String {
    hex::encode(&Sha256::digest(events::audit::canonical(report))[..])
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Asks for a compliance report of the organization: `framework`'s controls over `period`,
/// each passed, failed or not applicable as computed from the organization's events, with the
/// event ids that show it. Answers 202 with the report pending and `Location`; `GET
/// /audit/compliance/{id}` has it once computed. HIPAA needs the Enterprise plan.
#[utoipa::path(post, path = "/audit/compliance/generate", tag = "audit",
    request_body = GenerateComplianceReport,
    responses((status = 202, body = ComplianceReport)))]
async fn generate(
    ctx: Ctx,
    Json(body): Json<GenerateComplianceReport>,
) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id.map(|o| o.uuid()))?;
    live_org(&ctx, org_id).await?;
    ctx.principal.require(Permission::ComplianceWrite)?;
    let now = ctx.state.clock.now();
    let period = Period::parse(&body.period, now)?;
    if body.framework == ComplianceFramework::Hipaa {
        let plan = load::<Subscription>(&ctx.state, &subscription::stream_id(org_id))
            .await?
            .state;
        let name = plan.effective_plan(now).to_string();
        let current = platform::plans::plan(&name).unwrap_or(platform::plans::DEFAULT_PLAN.plan());
        if current.id != platform::plans::PlanId::Enterprise {
            return Err(ApiError::forbidden(
                "plan_feature_required",
                format!(
                    "HIPAA reports need the Enterprise plan; the organization is on {}. SOC 2, GDPR and ISO 27001 reports are on every plan.",
                    current.name
                ),
            ));
        }
    }
    let id = Uuid::now_v7();
    let label = body.period.trim().to_string();
    let stream = Stream {
        id: StreamId::compliance_report(id),
        org_id: Some(org_id),
        version: 0,
        actor: &ctx.actor,
        correlation_id: &ctx.request_id,
    };
    let events = stream.envelopes(vec![EventPayload::ComplianceReportRequested(
        ComplianceReportRequested {
            report_id: id,
            framework: body.framework.as_str().to_string(),
            period: label.clone(),
            from: rfc3339(period.from),
            to: rfc3339(period.to),
        },
    )]);
    commit(&ctx.state, &ctx.headers, &events, &[], "audit").await?;
    let requested = &events[0];
    let job = Job {
        report_id: id,
        org_id,
        framework: body.framework,
        period,
        label: label.clone(),
        requested_event: requested.event_id,
        as_of: requested.occurred_at.at(),
        actor: ctx.actor.clone(),
        correlation_id: ctx.request_id.clone(),
        public_key: ctx.state.audit_public_key.clone(),
    };
    tokio::spawn(run(ctx.state.journal.clone(), job));
    let location = format!("/api/v1/audit/compliance/{id}");
    let report = ComplianceReport {
        id,
        object: ComplianceReportObject::Value,
        org_id: org_id.into(),
        framework: body.framework,
        period: label,
        status: ComplianceReportStatus::Pending,
        requested_at: requested.occurred_at,
        completed_at: None,
        content_hash: None,
        event_id: None,
        summary: None,
        report: None,
        error: None,
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(report)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// One report to compute.
pub struct Job {
    pub report_id: Uuid,
    pub org_id: Uuid,
    pub framework: ComplianceFramework,
    pub period: Period,
    pub label: String,
    /// The `compliance.report_requested` event: the chain is read up to it.
    pub requested_event: Uuid,
    pub as_of: DateTime<Utc>,
    pub actor: Actor,
    pub correlation_id: String,
    /// Hex Ed25519 public key checkpoints are verified with.
    pub public_key: Option<String>,
}

/// Computes the report and appends its outcome.
pub async fn run(journal: Journal, job: Job) {
    let _turn = JOBS.acquire().await;
    let payload = match compute(&journal, &job).await {
        Ok(report) => match serde_json::to_value(&report) {
            Ok(report) => EventPayload::ComplianceReportGenerated(ComplianceReportGenerated {
                report_id: job.report_id,
                content_hash: content_hash(&report),
                report,
            }),
            Err(e) => failed(&job, &e.to_string()),
        },
        Err(e) => {
            tracing::warn!(report_id = %job.report_id, error = %e, "compliance report failed");
            failed(&job, &e.to_string())
        }
    };
    let event = EventEnvelope::new(
        payload,
        Some(job.org_id),
        StreamId::compliance_report(job.report_id),
        2,
        job.actor.clone(),
        job.correlation_id.clone(),
    );
    if let Err(e) = journal.append(&[event], &[]).await {
        tracing::error!(report_id = %job.report_id, error = %e, "recording a compliance report failed");
    }
}

fn failed(job: &Job, reason: &str) -> EventPayload {
    EventPayload::ComplianceReportFailed(ComplianceReportFailed {
        report_id: job.report_id,
        reason: reason.to_string(),
    })
}

/// Streams the organization's chain before the request from the journal through the evaluator.
pub async fn compute(journal: &Journal, job: &Job) -> anyhow::Result<ComplianceReportContent> {
    let client = journal.pool().get().await?;
    let seq: Option<i64> = client
        .query_opt(
            "SELECT chain_seq FROM journal WHERE event_id = $1",
            &[&job.requested_event],
        )
        .await?
        .and_then(|row| row.get(0));
    let before = seq.unwrap_or(i64::MAX);
    let chain = events::audit::chain_of(Some(job.org_id));
    let mut evaluator = evaluate::Evaluator::new(
        job.framework,
        job.period,
        job.as_of,
        &chain,
        job.public_key.as_deref(),
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&chain, &before];
    let rows = client
        .query_raw(
            "SELECT envelope FROM journal
             WHERE COALESCE(org_id::text, 'platform') = $1 AND (chain_seq IS NULL OR chain_seq < $2)
             ORDER BY global_position",
            params,
        )
        .await?;
    futures::pin_mut!(rows);
    let mut through = 0;
    while let Some(row) = rows.next().await {
        let envelope: serde_json::Value = row?.get(0);
        if let Some(seq) = envelope
            .get("chain")
            .and_then(|c| c.get("seq"))
            .and_then(serde_json::Value::as_i64)
        {
            through = seq;
        }
        evaluator.push(&envelope);
    }
    Ok(evaluator.finish(job.report_id, job.org_id, &job.label, job.as_of, through))
}
