//! Who is calling: the bearer token of a request, turned into a principal — the platform admin
//! (the `AIHUB_ADMIN_TOKEN` bearer) or an API key of one organization with its effective
//! permissions. Keys are read from the read model (one indexed query) and kept in an in-process
//! cache that the tenancy projection's `aihub_auth` notifications evict in the same commit that
//! changes a key, its owner's roles, its organization or the subscription, so a revoked or
//! disabled key stops working as soon as its event is projected (docs/ARCHITECTURE.md).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use events::{Actor, ActorType};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::access::{parse_permissions, permissions_of, Permission};
use crate::metrics;
use crate::notify::Heard;
use crate::plans::PlanId;
use crate::ratelimit::{KeyLimits, Limits, Overrides, RateLimiter, RateSlot};
use crate::ApiError;

pub const KEY_PREFIX: &str = "aihub-sk-";

/// A caller holding an API key of one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrincipal {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    /// The key's own permissions limited by its owner's organization-wide roles.
    pub permissions: BTreeSet<Permission>,
    /// What the owner's roles in the key's team add (limited by the key's own permissions):
    /// valid inside that team only, except for the permissions that reach no further than the
    /// caller's own work ([`Permission::team_role_reaches_outside`]).
    pub team_permissions: BTreeSet<Permission>,
    /// The organization's plan in force now.
    pub plan: PlanId,
    /// The rate limits its calls are held to.
    pub limits: crate::ratelimit::KeyLimits,
    /// Set when a person signed in with single sign-on rather than an API key: `key_id` and
    /// `owner_user_id` are then the person's user id, and events name the user as actor.
    pub sso: Option<Box<crate::sso::SsoUser>>,
}

impl KeyPrincipal {
    /// Whether the key holds `permission` inside `team` (org-wide, or by a role in that team).
    pub fn holds_in_team(&self, permission: Permission, team: Uuid) -> bool {
        self.permissions.contains(&permission)
            || (self.team_id == Some(team) && self.team_permissions.contains(&permission))
    }
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
            Principal::ApiKey(KeyPrincipal {
                sso: Some(user), ..
            }) => Actor {
                kind: ActorType::User,
                id: user.user_id.to_string(),
                ip,
            },
            Principal::ApiKey(key) => Actor {
                kind: ActorType::ApiKey,
                id: key.key_id.to_string(),
                ip,
            },
        }
    }

    /// Whether the caller holds `permission` for the organization as a whole. A role held in a
    /// team counts only for the permissions that reach no further than the caller's own work.
    pub fn has(&self, permission: Permission) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::ApiKey(key) => {
                key.permissions.contains(&permission)
                    || (permission.team_role_reaches_outside()
                        && key.team_permissions.contains(&permission))
            }
        }
    }

    /// Whether the caller holds `permission` inside `team`: organization-wide, or by a role in
    /// that team.
    pub fn has_in_team(&self, permission: Permission, team: Uuid) -> bool {
        match self {
            Principal::PlatformAdmin => true,
            Principal::ApiKey(key) => key.holds_in_team(permission, team),
        }
    }

    /// 403 unless the caller holds `permission` inside `team`.
    pub fn require_in_team(&self, permission: Permission, team: Uuid) -> Result<(), ApiError> {
        if self.has_in_team(permission, team) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "missing_permission",
            format!("This API key lacks the permission {permission} in this team."),
        )
        .with_param(permission.as_str()))
    }

    /// Every permission the caller holds where `team` says (the organization as a whole when
    /// `None`): what it may hand on in a role.
    pub fn permissions_in(&self, team: Option<Uuid>) -> BTreeSet<Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(|p| match team {
                Some(team) => self.has_in_team(*p, team),
                None => self.has(*p),
            })
            .collect()
    }

    /// 403 naming the missing permission.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.has(permission) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "missing_permission",
            format!("This API key lacks the permission {permission}."),
        )
        .with_param(permission.as_str()))
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
    /// The platform-admin tokens by name, as SHA-256 digests: compared digest to digest, in
    /// constant time, so neither a token's bytes nor its length show in the timing.
    admins: Arc<[(Arc<str>, [u8; 32])]>,
    pool: Option<Pool>,
    failures: Option<mpsc::Sender<AuthFailure>>,
    clock: crate::clock::Clock,
    cache: Option<Arc<AuthCache>>,
    /// Counts every call of an API key against its requests-per-minute limits.
    rate: Option<Arc<RateLimiter>>,
    /// Public ids no key has, remembered for a minute: a client repeating a garbage key (well
    /// formed, or it would not get this far) does not send each try to Postgres. Public ids are
    /// 64 random bits, so a key created meanwhile under a remembered id is not a real case; the
    /// minute bounds even that.
    unknown: moka::sync::Cache<String, ()>,
    /// Verifies identity-provider tokens (single sign-on), when the process offers it.
    sso: Option<Arc<crate::sso::Sso>>,
}

fn digests(named: &[(String, String)]) -> Arc<[(Arc<str>, [u8; 32])]> {
    named
        .iter()
        .map(|(name, token)| {
            (
                Arc::from(name.as_str()),
                Sha256::digest(token.as_bytes()).into(),
            )
        })
        .collect()
}

/// The name of the platform-admin token a request was made with (a request extension).
#[derive(Debug, Clone)]
pub struct AdminName(pub Arc<str>);

/// Unknown public ids remembered at most (a few MiB).
const UNKNOWN_IDS: u64 = 100_000;

/// The parts of `aihub-sk-<public id>-<secret>`.
pub fn parse_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (public_id, secret) = rest.split_once('-')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(public_id, 16) && hex(secret, 64)).then_some((public_id, secret))
}

pub fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Authenticator {
    pub fn new(
        admin_token: Option<String>,
        pool: Option<Pool>,
        failures: Option<mpsc::Sender<AuthFailure>>,
        clock: crate::clock::Clock,
    ) -> Self {
        let admins: Vec<(String, String)> = admin_token
            .map(|token| ("admin".to_string(), token))
            .into_iter()
            .collect();
        Self {
            admins: digests(&admins),
            pool,
            failures,
            clock,
            cache: None,
            rate: None,
            unknown: moka::sync::Cache::builder()
                .max_capacity(UNKNOWN_IDS)
                .time_to_live(std::time::Duration::from_secs(60))
                .build(),
            sso: None,
        }
    }

    /// Accepts identity-provider tokens of the organizations that configured single sign-on.
    pub fn with_sso(mut self, sso: Arc<crate::sso::Sso>) -> Self {
        self.sso = Some(sso);
        self
    }

    /// Adds named platform-admin tokens (`AIHUB_ADMIN_TOKENS`): events then name who acted,
    /// `platform-admin:<name>`.
    pub fn with_named_admins(mut self, named: &[(String, String)]) -> Self {
        let mut all: Vec<(Arc<str>, [u8; 32])> = self.admins.to_vec();
        all.extend(digests(named).iter().cloned());
        self.admins = all.into();
        self
    }

    /// The name of the platform-admin token `token` is, if it is one. Every token is compared,
    /// each in constant time over fixed-length digests.
    fn admin_named(&self, token: &str) -> Option<Arc<str>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, expected) in self.admins.iter() {
            if constant_time_eq(expected, &digest) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Keeps resolved keys in `cache`; whoever feeds it the `aihub_auth` notifications
    /// (see `AuthCache::heard`) makes it usable.
    pub fn with_rate_limits(mut self, rate: Arc<RateLimiter>) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Counts one request of `key` against its limits (429 `rate_limit_exceeded` past them),
    /// noting where it stands in `slot` for the response's headers.
    pub async fn admit(&self, key: &KeyPrincipal, slot: Option<&RateSlot>) -> Result<(), ApiError> {
        match &self.rate {
            Some(rate) => rate
                .admit(&key.limits, key.org_id, key.key_id, 1, 0, slot)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    pub fn with_cache(mut self, cache: Arc<AuthCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        ip: Option<String>,
    ) -> Result<Principal, ApiError> {
        self.authenticate_named(authorization, ip)
            .await
            .map(|(principal, _)| principal)
    }

    /// [`Self::authenticate`], with the name of the platform-admin token used, if one was.
    pub async fn authenticate_named(
        &self,
        authorization: Option<&str>,
        ip: Option<String>,
    ) -> Result<(Principal, Option<Arc<str>>), ApiError> {
        self.authenticate_request(authorization, ip, None).await
    }

    /// [`Self::authenticate_named`] for one request: its id becomes the correlation id of the
    /// events a first single sign-on records.
    pub async fn authenticate_request(
        &self,
        authorization: Option<&str>,
        ip: Option<String>,
        request_id: Option<String>,
    ) -> Result<(Principal, Option<Arc<str>>), ApiError> {
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
        if let Some(name) = self.admin_named(token) {
            return Ok((Principal::PlatformAdmin, Some(name)));
        }
        if let (Some(sso), Some(pool)) = (&self.sso, &self.pool) {
            if crate::sso::looks_like_jwt(token) {
                let request_id = request_id.unwrap_or_else(|| Uuid::now_v7().to_string());
                return match sso
                    .authenticate(pool, token, self.clock.now(), ip.clone(), request_id)
                    .await
                {
                    Ok(key) => Ok((Principal::ApiKey(key), None)),
                    Err(crate::sso::Refusal::Unauthorized {
                        reason,
                        org_id,
                        message,
                    }) => Err(self.refuse(reason, None, org_id, ip, &message)),
                    Err(crate::sso::Refusal::Other(e)) => Err(e),
                };
            }
        }
        let Some((public_id, secret)) = parse_key(token) else {
            return Err(self.refuse("unknown", None, None, ip, "Incorrect API key provided."));
        };
        let Some(pool) = &self.pool else {
            return Err(self.refuse("unknown", None, None, ip, "Incorrect API key provided."));
        };
        let record = match self.cache.as_ref().and_then(|c| c.get(public_id)) {
            Some(record) => {
                metrics::AUTH_CACHE.with_label_values(&["hit"]).inc();
                record
            }
            None if self.unknown.contains_key(public_id) => {
                metrics::AUTH_CACHE
                    .with_label_values(&["unknown_hit"])
                    .inc();
                return Err(self.refuse(
                    "unknown",
                    Some(public_id.to_string()),
                    None,
                    ip,
                    "Incorrect API key provided.",
                ));
            }
            None => {
                let ticket = self.cache.as_ref().and_then(|c| c.ticket());
                let found = KeyRecord::load(pool, public_id).await?;
                let Some(record) = found else {
                    self.unknown.insert(public_id.to_string(), ());
                    return Err(self.refuse(
                        "unknown",
                        Some(public_id.to_string()),
                        None,
                        ip,
                        "Incorrect API key provided.",
                    ));
                };
                let record = Arc::new(record);
                match (&self.cache, ticket) {
                    (Some(cache), Some(ticket)) => {
                        metrics::AUTH_CACHE.with_label_values(&["miss"]).inc();
                        cache.insert(ticket, public_id, record.clone());
                    }
                    _ => metrics::AUTH_CACHE.with_label_values(&["bypass"]).inc(),
                }
                record
            }
        };
        record
            .principal(secret, Utc::now(), self.clock.now())
            .map(|key| (Principal::ApiKey(key), None))
            .map_err(|(reason, message)| {
                self.refuse(
                    reason,
                    Some(public_id.to_string()),
                    Some(record.org_id),
                    ip,
                    message,
                )
            })
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

/// What the read model says about one key, before anything that depends on the time: expiry
/// and a scheduled downgrade are decided when the record is used, not when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyRecord {
    key_id: Uuid,
    org_id: Uuid,
    secret_sha256: String,
    owner_user_id: Option<Uuid>,
    team_id: Option<Uuid>,
    /// The key's own permissions limited by its owner's organization-wide roles.
    permissions: BTreeSet<Permission>,
    /// What the owner's roles in the key's team add.
    team_permissions: BTreeSet<Permission>,
    enabled: bool,
    revoked: bool,
    org_live: bool,
    expires_at: Option<DateTime<Utc>>,
    plan: Option<String>,
    pending_plan: Option<String>,
    pending_effective_at: Option<DateTime<Utc>>,
    /// The platform admin's override of the plan's limits for the organization.
    org_limits: Overrides,
    /// An admin's limits for this key.
    key_limits: Overrides,
}

impl KeyRecord {
    /// One indexed query joining the key, its organization, subscription and owner's roles.
    async fn load(pool: &Pool, public_id: &str) -> Result<Option<Self>, ApiError> {
        let client = pool.get().await?;
        let row = client
            .query_opt(
                "SELECT k.id, k.org_id, k.secret_sha256, k.owner_user_id, k.team_id, k.permissions, k.enabled,
                        k.expires_at, k.revoked_at IS NOT NULL AS revoked,
                        o.deleted_at IS NULL AND o.id IS NOT NULL AS org_live,
                        s.plan, s.pending_plan, s.pending_effective_at,
                        (SELECT b.reason FROM api_key_blocks b WHERE b.key_id = k.id) AS blocked,
                        ARRAY(SELECT r.role FROM read.role_assignments r
                              WHERE r.user_id = k.owner_user_id
                                AND r.team_id = '00000000-0000-0000-0000-000000000000') AS org_roles,
                        ARRAY(SELECT r.role FROM read.role_assignments r
                              WHERE r.user_id = k.owner_user_id AND r.team_id = k.team_id) AS team_roles,
                        ol.requests_per_minute AS org_rpm, ol.tokens_per_minute AS org_tpm,
                        ol.concurrent_streams AS org_streams,
                        kl.requests_per_minute AS key_rpm, kl.tokens_per_minute AS key_tpm,
                        kl.concurrent_streams AS key_streams
                 FROM read.api_keys k LEFT JOIN read.organizations o ON o.id = k.org_id
                 LEFT JOIN read.subscriptions s ON s.org_id = k.org_id
                 LEFT JOIN read.rate_limits ol ON ol.subject_id = k.org_id
                 LEFT JOIN read.rate_limits kl ON kl.subject_id = k.id
                 WHERE k.public_id = $1",
                &[&public_id],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let own: Vec<&str> = row.get("permissions");
        let owner_user_id: Option<Uuid> = row.get("owner_user_id");
        let own = parse_permissions(own);
        let (permissions, team_permissions) = match owner_user_id {
            Some(_) => {
                let org_wide = permissions_of(row.get::<_, Vec<&str>>("org_roles"));
                let in_team = permissions_of(row.get::<_, Vec<&str>>("team_roles"));
                let permissions: BTreeSet<Permission> =
                    own.intersection(&org_wide).copied().collect();
                let team_permissions = own
                    .intersection(&in_team)
                    .filter(|p| !permissions.contains(p))
                    .copied()
                    .collect();
                (permissions, team_permissions)
            }
            None => (own, BTreeSet::new()),
        };
        Ok(Some(Self {
            key_id: row.get("id"),
            org_id: row.get("org_id"),
            secret_sha256: row.get("secret_sha256"),
            owner_user_id,
            team_id: row.get("team_id"),
            permissions,
            team_permissions,
            // The write side's block counts at once; read.api_keys follows when projected.
            enabled: row.get::<_, bool>("enabled")
                && row.get::<_, Option<String>>("blocked").as_deref() != Some("disabled"),
            revoked: row.get::<_, bool>("revoked")
                || row.get::<_, Option<String>>("blocked").as_deref() == Some("revoked"),
            org_live: row.get("org_live"),
            expires_at: row.get("expires_at"),
            plan: row.get("plan"),
            pending_plan: row.get("pending_plan"),
            pending_effective_at: row.get("pending_effective_at"),
            org_limits: crate::ratelimit::Overrides::from_row(&row, "org"),
            key_limits: crate::ratelimit::Overrides::from_row(&row, "key"),
        }))
    }

    /// The principal for `secret` at this moment, or the refusal's reason and message.
    /// `now` decides expiry (wall clock), `plan_now` the plan in force (the platform clock).
    fn principal(
        &self,
        secret: &str,
        now: DateTime<Utc>,
        plan_now: DateTime<Utc>,
    ) -> Result<KeyPrincipal, (&'static str, &'static str)> {
        if !constant_time_eq(
            self.secret_sha256.as_bytes(),
            secret_sha256(secret).as_bytes(),
        ) || !self.org_live
        {
            return Err(("unknown", "Incorrect API key provided."));
        }
        if self.revoked {
            return Err(("revoked", "This API key has been revoked."));
        }
        if !self.enabled {
            return Err(("disabled", "This API key is disabled."));
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(("expired", "This API key has expired."));
        }
        let plan = plan_at(
            self.org_id,
            self.plan.as_deref(),
            self.pending_plan.as_deref(),
            self.pending_effective_at,
            plan_now,
        );
        let org_limits = self.org_limits.over(Limits::of_plan(plan.plan()));
        Ok(KeyPrincipal {
            plan,
            limits: KeyLimits::new(org_limits, self.key_limits),
            key_id: self.key_id,
            org_id: self.org_id,
            owner_user_id: self.owner_user_id,
            team_id: self.team_id,
            permissions: self.permissions.clone(),
            team_permissions: self.team_permissions.clone(),
            sso: None,
        })
    }
}

/// The plan in force at `now` from a subscription's row: a scheduled downgrade counts from its
/// date.
pub fn plan_at(
    org_id: Uuid,
    plan: Option<&str>,
    pending_plan: Option<&str>,
    pending_effective_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> PlanId {
    let plan = match pending_effective_at {
        Some(at) if at <= now => pending_plan,
        _ => plan,
    };
    // An organization without a subscription row yet is on the default plan. A stored name
    // that is no plan is a bug in the write side; it is logged and served as the default.
    match plan.map(str::parse::<PlanId>) {
        None => crate::plans::DEFAULT_PLAN,
        Some(Ok(plan)) => plan,
        Some(Err(e)) => {
            tracing::error!(org_id = %org_id, error = %e, "subscription names an unknown plan");
            crate::plans::DEFAULT_PLAN
        }
    }
}

/// The channel on which the tenancy projection names, in the transaction that changes them, the
/// organizations whose keys, roles, members, subscription or existence changed.
pub const AUTH_CHANNEL: &str = "aihub_auth";

/// Resolved keys of this process, by public id: a bounded cache (moka: the least useful entries
/// go first when it is full, never all at once) whose entries live `ttl` at most. An entry is
/// dropped when its organization is named on `aihub_auth`. The cache serves only while the
/// process is listening on that channel; a lookup that overlapped an eviction does not store
/// what it read.
pub struct AuthCache {
    entries: moka::sync::Cache<String, Arc<KeyRecord>>,
    state: RwLock<CacheState>,
}

#[derive(Default)]
struct CacheState {
    listening: bool,
    /// Bumped by every eviction; a lookup stores its result only if none happened meanwhile.
    generation: u64,
}

/// The generation a lookup started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl AuthCache {
    pub fn new(ttl: Duration, capacity: usize) -> Arc<Self> {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity as u64)
            .time_to_live(ttl.max(Duration::from_nanos(1)))
            .build();
        Arc::new(Self {
            entries,
            state: RwLock::new(CacheState::default()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, public_id: &str) -> Option<Arc<KeyRecord>> {
        let state = self.read();
        if !state.listening {
            return None;
        }
        self.entries.get(public_id)
    }

    /// Taken before reading the read model; `None` while the cache may not be used.
    pub fn ticket(&self) -> Option<Ticket> {
        let state = self.read();
        state.listening.then_some(Ticket(state.generation))
    }

    fn insert(&self, ticket: Ticket, public_id: &str, record: Arc<KeyRecord>) {
        // Under the lock evictions take, so none can slip between the check and the insert.
        let state = self.write();
        if !state.listening || state.generation != ticket.0 {
            return;
        }
        self.entries.insert(public_id.to_string(), record);
    }

    /// Forgets every key of `org_id`.
    pub fn evict_org(&self, org_id: Uuid) {
        let mut state = self.write();
        state.generation += 1;
        let gone: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(_, record)| record.org_id == org_id)
            .map(|(key, _)| key)
            .collect();
        for key in gone {
            self.entries.invalidate(key.as_str());
        }
    }

    fn reset(&self, listening: bool) {
        let mut state = self.write();
        state.generation += 1;
        self.entries.invalidate_all();
        state.listening = listening;
    }

    /// Feeds the cache what the process's notification listener heard. Entries from before
    /// a (re)connection are dropped: notifications may have been missed while not listening.
    pub fn heard(&self, heard: Heard<'_>) {
        match heard {
            Heard::Listening => self.reset(true),
            Heard::Lost => self.reset(false),
            Heard::Notification { channel, payload } if channel == AUTH_CHANNEL => {
                match payload.parse::<Uuid>() {
                    Ok(org_id) => self.evict_org(org_id),
                    Err(_) => self.reset(true),
                }
            }
            Heard::Notification { .. } => {}
        }
    }

    pub fn len(&self) -> usize {
        self.entries.run_pending_tasks();
        self.entries.entry_count() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compares secrets in time independent of where they differ (`subtle`); only their lengths,
/// which are public, may end it early.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let authenticator = parts
            .extensions
            .get::<Arc<Authenticator>>()
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
        let request_id = parts
            .extensions
            .get::<crate::http::RequestId>()
            .map(|id| id.0.clone());
        let (principal, admin) = authenticator
            .authenticate_request(header, ip, request_id)
            .await?;
        match &principal {
            Principal::PlatformAdmin => {
                let name = admin.clone().unwrap_or_else(|| "admin".into());
                crate::http::record_caller(None, &format!("platform-admin:{name}"));
                parts.extensions.insert(AdminName(name));
            }
            Principal::ApiKey(KeyPrincipal {
                org_id,
                sso: Some(user),
                ..
            }) => crate::http::record_caller(Some(*org_id), &format!("user:{}", user.user_id)),
            Principal::ApiKey(key) => {
                crate::http::record_caller(Some(key.org_id), &format!("api_key:{}", key.key_id));
                authenticator
                    .admit(key, parts.extensions.get::<RateSlot>())
                    .await?;
            }
        }
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
    async fn named_admin_tokens_say_who_acted() {
        let auth = Authenticator::new(Some("legacy-token".into()), None, None, Default::default())
            .with_named_admins(&[
                ("alice".into(), "alice-token".into()),
                ("bob".into(), "a-much-longer-token-of-bob".into()),
            ]);
        for (token, name) in [
            ("legacy-token", "admin"),
            ("alice-token", "alice"),
            ("a-much-longer-token-of-bob", "bob"),
        ] {
            let (principal, named) = auth
                .authenticate_named(Some(&format!("Bearer {token}")), None)
                .await
                .expect("admin");
            assert_eq!(principal, Principal::PlatformAdmin);
            assert_eq!(named.as_deref(), Some(name));
        }
        for token in ["alice-toke", "alice-token2", ""] {
            assert!(auth
                .authenticate(Some(&format!("Bearer {token}")), None)
                .await
                .is_err());
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
            permissions: [Permission::TeamsRead].into(),
            team_permissions: Default::default(),
            plan: PlanId::Free,
            limits: KeyLimits::of_plan(PlanId::Free),
            sso: None,
        });
        assert_eq!(key.org_scope(None).ok(), Some(org));
        assert_eq!(
            key.org_scope(Some(Uuid::now_v7()))
                .map_err(|e| e.status.as_u16()),
            Err(404)
        );
        assert_eq!(
            key.require(Permission::TeamsWrite)
                .map_err(|e| e.status.as_u16()),
            Err(403)
        );
        assert!(key.require(Permission::TeamsRead).is_ok());
        assert_eq!(
            Principal::PlatformAdmin
                .org_scope(None)
                .map_err(|e| e.status.as_u16()),
            Err(400)
        );
    }

    fn record(org_id: Uuid) -> Arc<KeyRecord> {
        Arc::new(KeyRecord {
            key_id: Uuid::now_v7(),
            org_id,
            secret_sha256: secret_sha256("secret"),
            owner_user_id: None,
            team_id: None,
            permissions: [Permission::ChatWrite].into(),
            team_permissions: Default::default(),
            enabled: true,
            revoked: false,
            org_live: true,
            expires_at: None,
            plan: Some("pro".into()),
            pending_plan: None,
            pending_effective_at: None,
            org_limits: Overrides::default(),
            key_limits: Overrides::default(),
        })
    }

    fn listening_cache(ttl: Duration) -> Arc<AuthCache> {
        let cache = AuthCache::new(ttl, 100);
        cache.heard(Heard::Listening);
        cache
    }

    #[test]
    fn the_cache_is_bypassed_until_listening_and_after_the_connection_is_lost() {
        let cache = AuthCache::new(Duration::from_secs(60), 100);
        assert_eq!(cache.ticket(), None, "not listening yet");
        cache.heard(Heard::Listening);
        let ticket = cache.ticket().expect("listening");
        cache.insert(ticket, "a", record(Uuid::now_v7()));
        assert!(cache.get("a").is_some());

        cache.heard(Heard::Lost);
        assert!(cache.get("a").is_none());
        assert_eq!(cache.ticket(), None);
        cache.insert(ticket, "a", record(Uuid::now_v7()));
        assert!(cache.is_empty(), "nothing is stored while not listening");

        // Notifications may have been missed meanwhile: nothing from before survives.
        cache.heard(Heard::Listening);
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn a_lookup_that_overlapped_an_eviction_stores_nothing() {
        let cache = listening_cache(Duration::from_secs(60));
        let org = Uuid::now_v7();
        let before = cache.ticket().expect("listening");
        // The read model changed while the lookup was reading it.
        cache.heard(Heard::Notification {
            channel: AUTH_CHANNEL,
            payload: &org.to_string(),
        });
        cache.insert(before, "a", record(org));
        assert!(cache.get("a").is_none(), "stale read must not be cached");

        let after = cache.ticket().expect("listening");
        assert_ne!(before, after);
        cache.insert(after, "a", record(org));
        assert!(cache.get("a").is_some());
    }

    #[test]
    fn an_organization_notice_evicts_only_that_organizations_keys() {
        let cache = listening_cache(Duration::from_secs(60));
        let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
        let ticket = cache.ticket().expect("listening");
        cache.insert(ticket, "mine", record(mine));
        cache.insert(ticket, "other", record(other));
        cache.heard(Heard::Notification {
            channel: "aihub_projected",
            payload: &mine.to_string(),
        });
        assert_eq!(cache.len(), 2, "other channels are not about keys");
        cache.heard(Heard::Notification {
            channel: AUTH_CHANNEL,
            payload: &mine.to_string(),
        });
        assert!(cache.get("mine").is_none());
        assert!(cache.get("other").is_some());
        cache.heard(Heard::Notification {
            channel: AUTH_CHANNEL,
            payload: "not a uuid",
        });
        assert!(cache.is_empty(), "an unreadable notice drops everything");
    }

    #[test]
    fn a_full_cache_drops_some_entries_not_all() {
        let cache = listening_cache(Duration::from_secs(60));
        let ticket = cache.ticket().expect("listening");
        // One more than it holds: clearing everything would leave one entry.
        for n in 0..101 {
            cache.insert(ticket, &format!("key-{n}"), record(Uuid::now_v7()));
        }
        let kept = cache.len();
        assert!(
            (50..=100).contains(&kept),
            "a full cache of 100 keeps most of its entries, kept {kept}"
        );
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = listening_cache(Duration::ZERO);
        let ticket = cache.ticket().expect("listening");
        cache.insert(ticket, "a", record(Uuid::now_v7()));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn expiry_and_scheduled_downgrades_are_decided_at_use_time() {
        let now = Utc::now();
        let mut key = (*record(Uuid::now_v7())).clone();
        key.expires_at = Some(now + chrono::Duration::seconds(5));
        key.pending_plan = Some("free".into());
        key.pending_effective_at = Some(now + chrono::Duration::days(3));
        let principal = key.principal("secret", now, now).expect("valid now");
        assert_eq!(principal.plan, PlanId::Pro);
        let later = key
            .principal("secret", now, now + chrono::Duration::days(3))
            .expect("valid");
        assert_eq!(
            later.plan,
            PlanId::Free,
            "the downgrade applies from its date"
        );
        assert_eq!(
            key.principal("secret", now + chrono::Duration::seconds(5), now)
                .map(|_| ()),
            Err(("expired", "This API key has expired."))
        );
        assert_eq!(
            key.principal("wrong", now, now)
                .map(|_| ())
                .map_err(|e| e.0),
            Err("unknown")
        );
    }

    #[test]
    fn a_role_held_in_a_team_grants_administration_only_inside_that_team() {
        let team = Uuid::now_v7();
        let key = Principal::ApiKey(KeyPrincipal {
            key_id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            owner_user_id: Some(Uuid::now_v7()),
            team_id: Some(team),
            permissions: [Permission::TeamsRead].into(),
            team_permissions: [
                Permission::RolesAssign,
                Permission::MembersWrite,
                Permission::ChatWrite,
            ]
            .into(),
            plan: PlanId::Pro,
            limits: KeyLimits::of_plan(PlanId::Pro),
            sso: None,
        });
        assert!(!key.has(Permission::RolesAssign), "not organization-wide");
        assert!(!key.has(Permission::MembersWrite));
        assert!(
            key.has(Permission::ChatWrite),
            "calling models is the caller's own work"
        );
        assert!(key.has_in_team(Permission::RolesAssign, team));
        assert!(
            !key.has_in_team(Permission::RolesAssign, Uuid::now_v7()),
            "another team"
        );
        assert!(key
            .require_in_team(Permission::MembersWrite, Uuid::now_v7())
            .is_err());
        assert!(key.permissions_in(None).contains(&Permission::TeamsRead));
        assert!(!key.permissions_in(None).contains(&Permission::RolesAssign));
        assert!(key
            .permissions_in(Some(team))
            .contains(&Permission::RolesAssign));
    }
}
