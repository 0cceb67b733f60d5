//! Who is calling: the bearer token of a request, turned into a principal — the platform admin
//! (the `AIHUB_ADMIN_TOKEN` bearer) or an API key of one organization with its effective
//! permissions. Keys are looked up in the read model on every request (one indexed query), so a
//! revoked or disabled key stops working as soon as its event is projected, on every instance.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use events::{Actor, ActorType};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::access::role_permissions;
use crate::metrics;
use crate::ApiError;

pub const KEY_PREFIX: &str = "aihub-sk-";

/// A caller holding an API key of one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrincipal {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    /// The key's own permissions limited by its owner's roles.
    pub permissions: BTreeSet<String>,
    /// The organization's plan in force now.
    pub plan: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    PlatformAdmin,
    ApiKey(KeyPrincipal),
}

impl Principal {
    pub fn actor(&self, ip: Option<String>) -> Actor {
        match self {
            Principal::PlatformAdmin => Actor {
                kind: ActorType::PlatformAdmin,
                id: "platform-admin".into(),
                ip,
            },
            Principal::ApiKey(key) => Actor {
                kind: ActorType::ApiKey,
                id: key.key_id.to_string(),
                ip,
            },
        }
    }

    pub fn has(&self, permission: &str) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::ApiKey(key) => key.permissions.contains(permission),
        }
    }

    /// 403 naming the missing permission.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.has(permission) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "missing_permission",
            format!("This API key lacks the permission {permission}."),
        )
        .with_param(permission))
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::PlatformAdmin => Ok(()),
            Principal::ApiKey(_) => Err(ApiError::forbidden(
                "platform_admin_required",
                "Only the platform admin may do this.",
            )),
        }
    }

    /// The organization a request acts in: a key's own, or — for the platform admin — the
    /// `org_id` it names. A key naming another organization sees 404, as for any of its resources.
    pub fn org_scope(&self, requested: Option<Uuid>) -> Result<Uuid, ApiError> {
        match (self, requested) {
            (Principal::ApiKey(key), Some(org)) if org != key.org_id => Err(ApiError::not_found(
                format!("No organization with id {org}."),
            )),
            (Principal::ApiKey(key), _) => Ok(key.org_id),
            (Principal::PlatformAdmin, Some(org)) => Ok(org),
            (Principal::PlatformAdmin, None) => Err(ApiError::bad_request(
                "org_id_required",
                "The platform admin acts inside an organization by naming it: pass org_id.",
            )
            .with_param("org_id")),
        }
    }

    /// Whether the caller may see anything of `org_id`.
    pub fn sees(&self, org_id: Uuid) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::ApiKey(key) => key.org_id == org_id,
        }
    }

    pub fn key(&self) -> Option<&KeyPrincipal> {
        match self {
            Principal::ApiKey(key) => Some(key),
            Principal::PlatformAdmin => None,
        }
    }
}

/// One refused authentication, reported to the process that turns them into `auth.failed` events.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub reason: &'static str,
    pub public_id: Option<String>,
    pub org_id: Option<Uuid>,
    pub ip: Option<String>,
    pub at: DateTime<Utc>,
}

/// Checks bearer tokens. Shared by every route through a request extension.
#[derive(Clone)]
pub struct Authenticator {
    admin_token: Option<Arc<str>>,
    pool: Option<Pool>,
    failures: Option<mpsc::Sender<AuthFailure>>,
    clock: crate::clock::Clock,
}

/// The parts of `aihub-sk-<public id>-<secret>`.
pub fn parse_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (public_id, secret) = rest.split_once('-')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(public_id, 16) && hex(secret, 64)).then_some((public_id, secret))
}

pub fn secret_sha256(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Authenticator {
    pub fn new(
        admin_token: Option<String>,
        pool: Option<Pool>,
        failures: Option<mpsc::Sender<AuthFailure>>,
        clock: crate::clock::Clock,
    ) -> Self {
        Self {
            admin_token: admin_token.map(Into::into),
            pool,
            failures,
            clock,
        }
    }

    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        ip: Option<String>,
    ) -> Result<Principal, ApiError> {
        let Some(header) = authorization else {
            return Err(self.refuse(
                "missing",
                None,
                None,
                ip,
                "Missing bearer token: send `Authorization: Bearer <API key>`.",
            ));
        };
        let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        else {
            return Err(self.refuse(
                "malformed",
                None,
                None,
                ip,
                "Malformed Authorization header: expected `Bearer <API key>`.",
            ));
        };
        let token = token.trim();
        if let Some(admin) = &self.admin_token {
            if constant_time_eq(admin.as_bytes(), token.as_bytes()) {
                return Ok(Principal::PlatformAdmin);
            }
        }
        let Some((public_id, secret)) = parse_key(token) else {
            return Err(self.refuse("unknown", None, None, ip, "Incorrect API key provided."));
        };
        let Some(pool) = &self.pool else {
            return Err(self.refuse("unknown", None, None, ip, "Incorrect API key provided."));
        };
        let client = pool.get().await?;
        let row = client
            .query_opt(
                "SELECT k.id, k.org_id, k.secret_sha256, k.owner_user_id, k.team_id, k.permissions, k.enabled,
                        k.expires_at, k.revoked_at, o.deleted_at IS NULL AND o.id IS NOT NULL AS org_live,
                        s.plan, s.pending_plan, s.pending_effective_at,
                        ARRAY(SELECT r.role FROM read.role_assignments r
                              WHERE r.user_id = k.owner_user_id
                                AND (r.team_id = '00000000-0000-0000-0000-000000000000' OR r.team_id = k.team_id)) AS roles
                 FROM read.api_keys k LEFT JOIN read.organizations o ON o.id = k.org_id
                 LEFT JOIN read.subscriptions s ON s.org_id = k.org_id
                 WHERE k.public_id = $1",
                &[&public_id],
            )
            .await?;
        let public = Some(public_id.to_string());
        let Some(row) = row else {
            return Err(self.refuse("unknown", public, None, ip, "Incorrect API key provided."));
        };
        let org_id: Uuid = row.get("org_id");
        let stored: String = row.get("secret_sha256");
        if !constant_time_eq(stored.as_bytes(), secret_sha256(secret).as_bytes())
            || !row.get::<_, bool>("org_live")
        {
            return Err(self.refuse(
                "unknown",
                public,
                Some(org_id),
                ip,
                "Incorrect API key provided.",
            ));
        }
        if row.get::<_, Option<DateTime<Utc>>>("revoked_at").is_some() {
            return Err(self.refuse(
                "revoked",
                public,
                Some(org_id),
                ip,
                "This API key has been revoked.",
            ));
        }
        if !row.get::<_, bool>("enabled") {
            return Err(self.refuse(
                "disabled",
                public,
                Some(org_id),
                ip,
                "This API key is disabled.",
            ));
        }
        if row
            .get::<_, Option<DateTime<Utc>>>("expires_at")
            .is_some_and(|at| at <= Utc::now())
        {
            return Err(self.refuse(
                "expired",
                public,
                Some(org_id),
                ip,
                "This API key has expired.",
            ));
        }
        let own: Vec<String> = row.get("permissions");
        let owner_user_id: Option<Uuid> = row.get("owner_user_id");
        let permissions = match owner_user_id {
            Some(_) => {
                let roles: Vec<String> = row.get("roles");
                let allowed: BTreeSet<&str> =
                    roles.iter().flat_map(|r| role_permissions(r)).collect();
                own.into_iter()
                    .filter(|p| allowed.contains(p.as_str()))
                    .collect()
            }
            None => own.into_iter().collect(),
        };
        let pending_at: Option<DateTime<Utc>> = row.get("pending_effective_at");
        let plan: Option<String> = match pending_at {
            Some(at) if at <= self.clock.now() => row.get("pending_plan"),
            _ => row.get("plan"),
        };
        Ok(Principal::ApiKey(KeyPrincipal {
            plan: plan.unwrap_or_else(|| crate::plans::DEFAULT_PLAN.to_string()),
            key_id: row.get("id"),
            org_id,
            owner_user_id,
            team_id: row.get("team_id"),
            permissions,
        }))
    }

    fn refuse(
        &self,
        reason: &'static str,
        public_id: Option<String>,
        org_id: Option<Uuid>,
        ip: Option<String>,
        message: &str,
    ) -> ApiError {
        metrics::AUTH_FAILURES.with_label_values(&[reason]).inc();
        if let Some(failures) = &self.failures {
            // A full channel means a flood: the counter above still sees every attempt.
            let _ = failures.try_send(AuthFailure {
                reason,
                public_id,
                org_id,
                ip,
                at: Utc::now(),
            });
        }
        ApiError::unauthorized(message)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let authenticator = parts
            .extensions
            .get::<Authenticator>()
            .cloned()
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("Authenticator extension missing"))
            })?;
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        let principal = authenticator.authenticate(header, ip).await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_exact_admin_token_is_admin() {
        let auth = Authenticator::new(Some("s3cret".into()), None, None, Default::default());
        assert_eq!(
            auth.authenticate(Some("Bearer s3cret"), None).await.ok(),
            Some(Principal::PlatformAdmin)
        );
        for header in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
        ] {
            let err = auth.authenticate(header, None).await.expect_err("refused");
            assert_eq!(err.status, axum::http::StatusCode::UNAUTHORIZED);
        }
    }

    #[tokio::test]
    async fn without_an_admin_token_nobody_is_admin() {
        let auth = Authenticator::new(None, None, None, Default::default());
        assert!(auth.authenticate(Some("Bearer "), None).await.is_err());
    }

    #[test]
    fn keys_parse_only_in_their_exact_shape() {
        let good = format!("aihub-sk-{}-{}", "a".repeat(16), "b".repeat(64));
        assert_eq!(
            parse_key(&good),
            Some(("aaaaaaaaaaaaaaaa", "b".repeat(64).as_str()))
        );
        for bad in [
            "aihub-sk-",
            "sk-abc",
            &format!("aihub-sk-{}-{}", "a".repeat(15), "b".repeat(64)),
            &format!("aihub-sk-{}-{}x", "a".repeat(16), "b".repeat(64)),
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_api_key_acts_only_in_its_own_organization() {
        let org = Uuid::now_v7();
        let key = Principal::ApiKey(KeyPrincipal {
            key_id: Uuid::now_v7(),
            org_id: org,
            owner_user_id: None,
            team_id: None,
            permissions: ["teams:read".to_string()].into(),
            plan: "free".into(),
        });
        assert_eq!(key.org_scope(None).ok(), Some(org));
        assert_eq!(
            key.org_scope(Some(Uuid::now_v7()))
                .map_err(|e| e.status.as_u16()),
            Err(404)
        );
        assert_eq!(
            key.require("teams:write").map_err(|e| e.status.as_u16()),
            Err(403)
        );
        assert!(key.require("teams:read").is_ok());
        assert_eq!(
            Principal::PlatformAdmin
                .org_scope(None)
                .map_err(|e| e.status.as_u16()),
            Err(400)
        );
    }
}
