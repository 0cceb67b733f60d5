//! Signed checkpoints of the audit chains (issue 12): every so often, the head of each chain that
//! moved since its last checkpoint is signed with the configured Ed25519 key and appended as an
//! `audit.checkpoint` event of that chain (stream `audit:<chain>`). An edit of the history behind a
//! checkpoint cannot be hidden by recomputing the hashes after it: the signed hash would differ.

use std::time::Duration;

use events::audit::CheckpointSigner;
use events::{Actor, EventEnvelope, EventPayload, StreamId};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::journal::{Journal, JournalError};

/// Signs every chain whose head moved since its last checkpoint; returns how many were signed.
pub async fn checkpoint_chains(
    journal: &Journal,
    signer: &CheckpointSigner,
) -> Result<usize, JournalError> {
    let rows = {
        let client = journal.pool().get().await?;
        client
            .query(
                "SELECT h.chain, h.seq, h.hash, COALESCE(cp.stream_version, 0)
                 FROM audit_chain_heads h
                 LEFT JOIN LATERAL (
                     SELECT j.stream_version, j.chain_seq FROM journal j
                     WHERE j.stream_id = 'audit:' || h.chain ORDER BY j.stream_version DESC LIMIT 1
                 ) cp ON true
                 WHERE h.seq > COALESCE(cp.chain_seq, 0)",
                &[],
            )
            .await?
    };
    let mut signed = 0;
    for row in rows {
        let chain: String = row.get(0);
        let seq: i64 = row.get(1);
        let hash: Vec<u8> = row.get(2);
        let version: i64 = row.get(3);
        let checkpoint = signer.sign(&chain, seq, &hex::encode(hash));
        let event = EventEnvelope::new(
            EventPayload::AuditCheckpoint(checkpoint),
            chain.parse::<Uuid>().ok(),
            StreamId::audit_chain(&chain),
            version + 1,
            Actor::system(),
            format!("audit-checkpoint-{}", Uuid::now_v7()),
        );
        match journal.append(&[event], &[]).await {
            Ok(()) => signed += 1,
            // Another process signed this chain meanwhile: its checkpoint serves.
            Err(JournalError::VersionConflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(signed)
}

/// Checkpoints every `every` until shutdown.
pub async fn checkpoint_periodically(
    journal: Journal,
    signer: CheckpointSigner,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match checkpoint_chains(&journal, &signer).await {
            Ok(0) => {}
            Ok(signed) => tracing::debug!(signed, "audit chains checkpointed"),
            Err(e) => {
                tracing::warn!(error = %e, "signing audit checkpoints failed; retrying later")
            }
        }
    }
}

/// `POST /audit/logs/export`.
pub mod routes {
    use std::collections::BTreeMap;

    use api::audit::{
        AuditExport, AuditExportObject, AuditExportRequest, AuditFilters, ExportStatus,
    };
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use events::audit::AuditExported;
    use events::{EventPayload, StreamId};
    use platform::access::Permission;
    use platform::http::Json;
    use platform::ApiError;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    use uuid::Uuid;

    use crate::command::Ctx;
    use crate::commit::{commit, Stream};
    use crate::CommandState;

    pub fn router() -> OpenApiRouter<CommandState> {
        OpenApiRouter::new().routes(routes!(export))
    }

    /// The filters given, by name, as the `audit.exported` event records them.
    pub fn recorded(filters: &AuditFilters) -> BTreeMap<String, String> {
        [
            ("actor_type", &filters.actor_type),
            ("actor_id", &filters.actor_id),
            ("event_type", &filters.event_type),
            ("resource", &filters.resource),
            ("correlation_id", &filters.correlation_id),
            ("from", &filters.from),
            ("to", &filters.to),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            value
                .as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| (name.to_string(), v.clone()))
        })
        .collect()
    }

    /// Asks for an export of the audit log. The export is the `audit.exported` event itself (the
    /// auditors are audited too): it fixes the filters and the instant, and
    /// `GET /audit/exports/{id}/download` streams the events before it that match, the same file
    /// every time. Answers 202 with `Location` of the export.
    #[utoipa::path(post, path = "/audit/logs/export", tag = "audit", request_body = AuditExportRequest,
        responses((status = 202, body = AuditExport)))]
    async fn export(ctx: Ctx, Json(body): Json<AuditExportRequest>) -> Result<Response, ApiError> {
        let org_id = ctx.principal.org_scope(body.org_id.map(|o| o.uuid()))?;
        ctx.principal.require(Permission::AuditRead)?;
        body.filters.check()?;
        let id = Uuid::now_v7();
        let format = body.format.unwrap_or_default();
        let stream = Stream {
            id: StreamId::audit_export(id),
            org_id: Some(org_id),
            version: 0,
            actor: &ctx.actor,
            correlation_id: &ctx.request_id,
        };
        let events = stream.envelopes(vec![EventPayload::AuditExported(AuditExported {
            export_id: id,
            format: format.as_str().to_string(),
            filters: recorded(&body.filters),
        })]);
        let projected = commit(&ctx.state, &ctx.headers, &events, &[], "audit").await?;
        let location = format!("/api/v1/audit/exports/{id}");
        let export = AuditExport {
            id,
            object: AuditExportObject::Value,
            org_id: org_id.into(),
            status: if projected {
                ExportStatus::Ready
            } else {
                ExportStatus::Pending
            },
            format,
            filters: body.filters,
            created_at: events[0].occurred_at,
            download_url: format!("{location}/download"),
        };
        let mut response = (StatusCode::ACCEPTED, axum::Json(export)).into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Ok(response)
    }
}
