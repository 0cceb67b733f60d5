//! Single sign-on: a person of an Enterprise organization calls the management API with an ID
//! or access token of the organization's OpenID Connect provider instead of an API key.
//!
//! The token's `iss` and `aud` name the organization (one configuration per issuer and client
//! id, a unique claim on the write side). It is verified against the issuer's JSON Web Key Set,
//! found through `/.well-known/openid-configuration` and kept in memory: fetched again when a
//! token names a key id the set lacks (the provider rotated its keys), but not more often than
//! `AIHUB_SSO_JWKS_REFETCH_MS`, so tokens with made-up key ids cannot make us hammer the
//! provider. RS256 and ES256 only. The person acts as the user with the token's email,
//! provisioned on first sight, with the organization-wide roles the groups claim maps to
//! (docs/ARCHITECTURE.md, "Single sign-on").

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use uuid::Uuid;

use crate::access::{permissions_of, Role};
use crate::plans::PlanId;
use crate::ApiError;

/// How long a fetched key set is trusted before it is fetched again on use.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The longest token looked at; real ID tokens are a few KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Whether a bearer token has the shape of a JWT (three base64url parts, the first a JSON
/// header): our API keys (`aihub-sk-…`) never do.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // base64url of `{"`.
        && parts[0].starts_with("eyJ")
}

/// Checks an issuer (or a key set's) URL: https, or http to a loopback address when allowed
/// (tests and a provider on the same host); no credentials, query or fragment.
pub fn issuer_url(raw: &str, allow_loopback_http: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}."))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("{raw:?} has no host.")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback && allow_loopback_http => {}
        "http" if loopback => {
            return Err(format!(
                "{raw:?} is plain http: allowed only with AIHUB_SSO_ALLOW_LOOPBACK_HTTP (tests)."
            ))
        }
        _ => return Err(format!("{raw:?} must be an https URL.")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{raw:?} must not carry credentials."));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{raw:?} must have no query or fragment."));
    }
    Ok(url)
}

/// The person behind a principal that signed in with single sign-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoUser {
    pub user_id: Uuid,
    pub email: String,
}

/// What provisioning a person needs: the write side creates the user if the email is new and
/// makes the roles SSO manages equal to `desired`.
#[derive(Debug, Clone)]
pub struct Provision {
    pub org_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    /// The organization-wide roles the person's groups map to now.
    pub desired: BTreeSet<Role>,
    /// Every role the configuration can give: the ones SSO adds and takes away. Others (given
    /// by hand) are left alone.
    pub managed: BTreeSet<Role>,
    pub plan: PlanId,
    pub ip: Option<String>,
    pub request_id: String,
}

/// The user after provisioning.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub user_id: Uuid,
    /// Every organization-wide role the user holds, the owner role included.
    pub roles: BTreeSet<Role>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The write side's part of signing in: implemented by the command API, which records
/// `user.created` and role changes through its normal command path.
pub trait Provisioner: Send + Sync {
    fn provision(&self, request: Provision) -> BoxFuture<'_, Result<Provisioned, ApiError>>;
}

/// Settings of single sign-on (`AIHUB_SSO_*`).
#[derive(Debug, Clone, Copy)]
pub struct SsoSettings {
    /// The shortest time between two fetches of one issuer's keys.
    pub jwks_refetch: Duration,
    /// Accept `http://` issuers on loopback addresses (tests).
    pub allow_loopback_http: bool,
}

impl Default for SsoSettings {
    fn default() -> Self {
        Self {
            jwks_refetch: Duration::from_secs(30),
            allow_loopback_http: false,
        }
    }
}

/// Why a token was refused: a 401 with the reason counted in `auth.failed`, or another answer.
#[derive(Debug)]
pub enum Refusal {
    Unauthorized {
        reason: &'static str,
        org_id: Option<Uuid>,
        message: String,
    },
    Other(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Other(e)
    }
}

fn refused(reason: &'static str, org_id: Option<Uuid>, message: impl Into<String>) -> Refusal {
    Refusal::Unauthorized {
        reason,
        org_id,
        message: message.into(),
    }
}

/// One issuer's keys as last fetched.
#[derive(Default)]
struct IssuerKeys {
    set: Option<(Arc<JwkSet>, Instant)>,
    /// The last fetch tried, successful or not: the floor counts from it.
    last_try: Option<Instant>,
}

struct Issuer {
    keys: Mutex<IssuerKeys>,
    /// One fetch at a time per issuer; the others wait and use its result.
    fetching: tokio::sync::Mutex<()>,
}

/// Verifies OIDC tokens and turns them into principals. One per process.
pub struct Sso {
    settings: SsoSettings,
    http: reqwest::Client,
    issuers: Mutex<HashMap<String, Arc<Issuer>>>,
    provisioner: Option<Arc<dyn Provisioner>>,
}

/// An organization's configuration and what authentication needs beside it, read in one query.
struct Configured {
    org_id: Uuid,
    issuer: String,
    client_id: String,
    allowed_domains: Vec<String>,
    groups_claim: String,
    mappings: Vec<(String, Role)>,
    default_role: Option<Role>,
    plan: Option<String>,
    pending_plan: Option<String>,
    pending_effective_at: Option<chrono::DateTime<chrono::Utc>>,
    user_id: Option<Uuid>,
    user_roles: BTreeSet<Role>,
    /// The platform admin's override of the organization's rate limits, if any.
    org_limits: crate::ratelimit::Overrides,
}

/// The verified facts of a token.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub email: String,
    pub name: Option<String>,
    pub groups: BTreeSet<String>,
}

impl Sso {
    pub fn new(settings: SsoSettings, provisioner: Option<Arc<dyn Provisioner>>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            issuers: Mutex::new(HashMap::new()),
            provisioner,
        }
    }

    /// The principal a token stands for: the organization's user with its email, provisioned
    /// when new, with the roles its groups map to.
    pub async fn authenticate(
        &self,
        pool: &Pool,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
        ip: Option<String>,
        request_id: String,
    ) -> Result<crate::auth::KeyPrincipal, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused("sso_malformed", None, "The token is too long."));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            refused(
                "sso_malformed",
                None,
                "The bearer token is not a valid JWT.",
            )
        })?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(refused(
                "sso_algorithm",
                None,
                "Identity tokens must be signed with RS256 or ES256.",
            ));
        }
        // Only to find the organization; nothing is trusted before the signature is checked.
        let unverified: Value =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| {
                refused(
                    "sso_malformed",
                    None,
                    "The bearer token is not a valid JWT.",
                )
            })?;
        let issuer = unverified["iss"].as_str().unwrap_or_default().to_string();
        let audiences = audiences(&unverified["aud"]);
        let email = unverified["email"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let config = self
            .configured(pool, &issuer, &audiences, &email)
            .await?
            .ok_or_else(|| {
                refused(
                    "sso_unknown_issuer",
                    None,
                    "No organization signs in with this token's issuer and audience.",
                )
            })?;
        let org = Some(config.org_id);
        issuer_url(&config.issuer, self.settings.allow_loopback_http)
            .map_err(|m| refused("sso_issuer", org, m))?;
        let key = self
            .key(&config.issuer, header.kid.as_deref(), header.alg)
            .await
            .map_err(|m| refused("sso_key", org, m))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| refused("sso_invalid", org, invalid_message(&e)))?
            .claims;
        let identity =
            identity(&claims, &config.groups_claim).map_err(|m| refused("sso_claims", org, m))?;
        let domain = identity.email.rsplit('@').next().unwrap_or_default();
        if !config.allowed_domains.iter().any(|d| d == domain) {
            return Err(refused(
                "sso_domain",
                org,
                format!("People of {domain} do not sign in to this organization."),
            ));
        }
        let plan = crate::auth::plan_at(
            config.org_id,
            config.plan.as_deref(),
            config.pending_plan.as_deref(),
            config.pending_effective_at,
            now,
        );
        if !plan.plan().features.contains(&"sso") {
            return Err(Refusal::Other(ApiError::forbidden(
                "plan_feature_required",
                format!(
                    "Single sign-on needs the sso feature, which the {} plan does not include; upgrade the subscription to Enterprise to use it.",
                    plan.plan().name
                ),
            )));
        }
        let managed: BTreeSet<Role> = config
            .mappings
            .iter()
            .map(|(_, role)| *role)
            .chain(config.default_role)
            .collect();
        let mut desired: BTreeSet<Role> = config
            .mappings
            .iter()
            .filter(|(group, _)| identity.groups.contains(group))
            .map(|(_, role)| *role)
            .collect();
        if desired.is_empty() {
            desired.extend(config.default_role);
        }
        if desired.is_empty() {
            return Err(Refusal::Other(ApiError::forbidden(
                "sso_no_role",
                "None of your groups is given a role in this organization, and it has no default role.",
            )));
        }
        let held_managed: BTreeSet<Role> =
            config.user_roles.intersection(&managed).copied().collect();
        let (user_id, roles) = match config.user_id {
            Some(user_id) if held_managed == desired => (user_id, config.user_roles.clone()),
            _ => {
                let provisioner = self.provisioner.as_ref().ok_or_else(|| {
                    ApiError::unavailable(
                        "This process cannot record sign-ins; try again through the command API.",
                    )
                })?;
                let done = provisioner
                    .provision(Provision {
                        org_id: config.org_id,
                        email: identity.email.clone(),
                        name: identity.name.clone(),
                        desired,
                        managed,
                        plan,
                        ip,
                        request_id,
                    })
                    .await?;
                (done.user_id, done.roles)
            }
        };
        Ok(crate::auth::KeyPrincipal {
            // The session's own id for what counts per caller: the person's user id.
            key_id: user_id,
            org_id: config.org_id,
            owner_user_id: Some(user_id),
            team_id: None,
            permissions: permissions_of(roles.iter().map(|r| r.as_str())),
            team_permissions: BTreeSet::new(),
            plan,
            // The organization's limits; a person has no key of its own to override them.
            limits: crate::ratelimit::KeyLimits::new(
                config
                    .org_limits
                    .over(crate::ratelimit::Limits::of_plan(plan.plan())),
                crate::ratelimit::Overrides::default(),
            ),
            sso: Some(Box::new(SsoUser {
                user_id,
                email: identity.email,
            })),
        })
    }

    /// The configuration for `issuer` and one of `audiences`, with the organization's plan and
    /// the user of `email` with its organization-wide roles. Two organizations cannot hold the
    /// same issuer and client id; a token naming several audiences that match several is refused.
    async fn configured(
        &self,
        pool: &Pool,
        issuer: &str,
        audiences: &[String],
        email: &str,
    ) -> Result<Option<Configured>, Refusal> {
        if issuer.is_empty() || audiences.is_empty() {
            return Ok(None);
        }
        let client = pool.get().await.map_err(ApiError::from)?;
        let rows = client
            .query(
                "SELECT c.org_id, c.issuer, c.client_id, c.allowed_domains, c.groups_claim, c.role_mappings,
                        c.default_role, s.plan, s.pending_plan, s.pending_effective_at, u.id AS user_id,
                        ARRAY(SELECT r.role FROM read.role_assignments r
                              WHERE r.user_id = u.id
                                AND r.team_id = '00000000-0000-0000-0000-000000000000') AS user_roles,
                        ol.requests_per_minute AS org_rpm, ol.tokens_per_minute AS org_tpm,
                        ol.concurrent_streams AS org_streams
                 FROM read.sso_configs c
                 JOIN read.organizations o ON o.id = c.org_id AND o.deleted_at IS NULL
                 LEFT JOIN read.subscriptions s ON s.org_id = c.org_id
                 LEFT JOIN read.users u ON u.org_id = c.org_id AND u.email = $3
                 LEFT JOIN read.rate_limits ol ON ol.subject_id = c.org_id
                 WHERE c.issuer = $1 AND c.client_id = ANY($2) AND NOT c.removed",
                &[&issuer, &audiences, &email],
            )
            .await
            .map_err(ApiError::from)?;
        if rows.len() > 1 {
            return Err(refused(
                "sso_ambiguous",
                None,
                "The token's audiences name more than one organization.",
            ));
        }
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let mappings: Vec<events::sso::SsoRoleMapping> =
            serde_json::from_value(row.get("role_mappings")).unwrap_or_default();
        Ok(Some(Configured {
            org_id: row.get("org_id"),
            issuer: row.get("issuer"),
            client_id: row.get("client_id"),
            allowed_domains: row.get("allowed_domains"),
            groups_claim: row.get("groups_claim"),
            mappings: mappings
                .into_iter()
                .filter_map(|m| m.role.parse().ok().map(|role| (m.group, role)))
                .collect(),
            default_role: row
                .get::<_, Option<&str>>("default_role")
                .and_then(|r| r.parse().ok()),
            plan: row.get("plan"),
            pending_plan: row.get("pending_plan"),
            pending_effective_at: row.get("pending_effective_at"),
            user_id: row.get("user_id"),
            user_roles: row
                .get::<_, Vec<&str>>("user_roles")
                .into_iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            org_limits: crate::ratelimit::Overrides::from_row(row, "org"),
        }))
    }

    fn issuer(&self, issuer: &str) -> Arc<Issuer> {
        let mut issuers = self.issuers.lock().unwrap_or_else(|p| p.into_inner());
        issuers
            .entry(issuer.to_string())
            .or_insert_with(|| {
                Arc::new(Issuer {
                    keys: Mutex::new(IssuerKeys::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// The issuer's key for `kid` and `alg`: from the cached set when it has it, else fetched
    /// again — unless the last fetch was within the floor.
    async fn key(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, String> {
        let state = self.issuer(issuer);
        let cached = |state: &Issuer| {
            let keys = state.keys.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = keys
                .set
                .as_ref()
                .filter(|(_, at)| at.elapsed() < KEYS_MAX_AGE)
                .map(|(set, _)| set.clone());
            let may_fetch = keys
                .last_try
                .is_none_or(|at| at.elapsed() >= self.settings.jwks_refetch);
            (fresh, may_fetch, keys.last_try)
        };
        let (fresh, may_fetch, _) = cached(&state);
        if let Some(found) = fresh.as_deref().and_then(|set| pick(set, kid, alg)) {
            return decoding_key(found, alg);
        }
        if !may_fetch {
            return Err("The token's signing key is not one of the issuer's keys.".into());
        }
        let before = cached(&state).2;
        let _fetching = state.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let (fresh, may_fetch, last_try) = cached(&state);
        if last_try != before {
            if let Some(found) = fresh.as_deref().and_then(|set| pick(set, kid, alg)) {
                return decoding_key(found, alg);
            }
        }
        if !may_fetch {
            return Err("The token's signing key is not one of the issuer's keys.".into());
        }
        state
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_try = Some(Instant::now());
        let set = match self.fetch_keys(issuer).await {
            Ok(set) => {
                crate::metrics::SSO_KEY_FETCHES
                    .with_label_values(&["ok"])
                    .inc();
                Arc::new(set)
            }
            Err(e) => {
                crate::metrics::SSO_KEY_FETCHES
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(issuer, error = %e, "could not fetch the identity provider's keys");
                return Err("The identity provider's keys could not be fetched.".into());
            }
        };
        state.keys.lock().unwrap_or_else(|p| p.into_inner()).set =
            Some((set.clone(), Instant::now()));
        match pick(&set, kid, alg) {
            Some(found) => decoding_key(found, alg),
            None => Err("The token's signing key is not one of the issuer's keys.".into()),
        }
    }

    /// Discovery, then the key set it names.
    async fn fetch_keys(&self, issuer: &str) -> Result<JwkSet, String> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Value = self.get_json(&discovery_url).await?;
        if discovery["issuer"].as_str() != Some(issuer) {
            return Err(format!(
                "the discovery document names issuer {:?}, not {issuer:?}",
                discovery["issuer"]
            ));
        }
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or("the discovery document has no jwks_uri")?;
        issuer_url(jwks_uri, self.settings.allow_loopback_http)?;
        let set: Value = self.get_json(jwks_uri).await?;
        // Keys of kinds this crate does not read are skipped rather than failing the whole set.
        let keys = set["keys"]
            .as_array()
            .ok_or("the key set has no keys")?
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .collect();
        Ok(JwkSet { keys })
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }
}

/// `aud` is a string or an array of strings.
fn audiences(aud: &Value) -> Vec<String> {
    match aud {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// The key of the set that signs with `alg`: the one named `kid`, or, for a token naming none,
/// the set's only key of the right kind.
fn pick<'a>(set: &'a JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<&'a Jwk> {
    let fits = |jwk: &&Jwk| {
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => alg == Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) => {
                alg == Algorithm::ES256 && ec.curve == EllipticCurve::P256
            }
            _ => false,
        };
        // A key declaring its algorithm is used for that one only.
        let declared = jwk.common.key_algorithm.is_none_or(|a| {
            use jsonwebtoken::jwk::KeyAlgorithm as K;
            matches!(
                (a, alg),
                (K::RS256, Algorithm::RS256) | (K::ES256, Algorithm::ES256)
            )
        });
        let signs = !matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        );
        kind && declared && signs
    };
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(fits)
            .find(|k| k.common.key_id.as_deref() == Some(kid)),
        None => {
            let mut candidates = set.keys.iter().filter(fits);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }
}

fn decoding_key(jwk: &Jwk, _alg: Algorithm) -> Result<DecodingKey, String> {
    DecodingKey::from_jwk(jwk).map_err(|_| "The issuer's key cannot be read.".to_string())
}

fn invalid_message(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "The token has expired.".into(),
        K::ImmatureSignature => "The token is not valid yet.".into(),
        K::InvalidAudience => "The token is not meant for this organization's client.".into(),
        K::InvalidIssuer => "The token was not issued by this organization's provider.".into(),
        K::InvalidSignature => "The token's signature does not verify.".into(),
        K::MissingRequiredClaim(claim) => format!("The token has no {claim} claim."),
        _ => "The token does not verify.".into(),
    }
}

/// The person a verified token names: a verified email, a name, the groups.
pub fn identity(claims: &Value, groups_claim: &str) -> Result<Identity, String> {
    let email = claims["email"]
        .as_str()
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| {
            let mut parts = e.splitn(2, '@');
            matches!((parts.next(), parts.next()), (Some(local), Some(domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
                && e.len() <= 254
                && !e.chars().any(|c| c.is_control() || c.is_whitespace())
        })
        .ok_or("The token has no usable email claim (ask for the email scope).")?;
    let verified = match &claims["email_verified"] {
        Value::Null => true,
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    };
    if !verified {
        return Err("The token's email is not verified.".into());
    }
    let name = claims["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 200 && !n.chars().any(char::is_control))
        .map(str::to_string);
    let groups = match &claims[groups_claim] {
        Value::Array(values) => values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Value::String(one) => [one.clone()].into(),
        _ => BTreeSet::new(),
    };
    Ok(Identity {
        email,
        name,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwts_and_api_keys_are_told_apart_by_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt(&format!(
            "aihub-sk-{}-{}",
            "a".repeat(16),
            "b".repeat(64)
        )));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9..c2ln"));
        assert!(!looks_like_jwt("eyJ.a.b.c"));
        assert!(!looks_like_jwt("abc.def.ghi"));
        assert!(!looks_like_jwt("eyJa+b.c.d"));
    }

    #[test]
    fn issuers_are_https_or_loopback_http_when_allowed() {
        assert!(issuer_url("https://login.example.com/tenant", false).is_ok());
        assert!(issuer_url("http://login.example.com", true).is_err());
        assert!(issuer_url("http://127.0.0.1:5556/dex", false).is_err());
        assert!(issuer_url("http://127.0.0.1:5556/dex", true).is_ok());
        assert!(issuer_url("http://localhost:5556", true).is_ok());
        assert!(issuer_url("http://[::1]:5556", true).is_ok());
        assert!(issuer_url("ftp://login.example.com", true).is_err());
        assert!(issuer_url("https://user:pw@login.example.com", false).is_err());
        assert!(issuer_url("https://login.example.com/?a=b", false).is_err());
        assert!(issuer_url("not a url", false).is_err());
    }

    #[test]
    fn an_identity_needs_a_verified_email() {
        let id = identity(
            &json!({"email": "Ada@Example.COM", "email_verified": true, "groups": ["eng", 3, "ops"], "name": " Ada "}),
            "groups",
        )
        .expect("valid");
        assert_eq!(id.email, "ada@example.com");
        assert_eq!(id.name.as_deref(), Some("Ada"));
        assert_eq!(id.groups, ["eng".to_string(), "ops".to_string()].into());
        assert!(identity(
            &json!({"email": "a@b.c", "email_verified": false}),
            "groups"
        )
        .is_err());
        assert!(identity(&json!({"email": "a@b.c", "email_verified": "no"}), "groups").is_err());
        assert!(identity(&json!({"email": "nobody"}), "groups").is_err());
        assert!(identity(&json!({"email": "a@b@c"}), "groups").is_err());
        assert!(identity(&json!({"sub": "x"}), "groups").is_err());
        let single = identity(&json!({"email": "a@b.c", "roles": "admins"}), "roles").expect("ok");
        assert_eq!(single.groups, ["admins".to_string()].into());
    }

    fn rsa(kid: &str) -> Jwk {
        serde_json::from_value(
            json!({"kty": "RSA", "kid": kid, "n": "AQAB", "e": "AQAB", "use": "sig"}),
        )
        .expect("jwk")
    }

    #[test]
    fn keys_are_picked_by_id_and_kind() {
        let ec: Jwk = serde_json::from_value(
            json!({"kty": "EC", "kid": "e1", "crv": "P-256", "x": "AQAB", "y": "AQAB"}),
        )
        .expect("jwk");
        let hmac: Jwk =
            serde_json::from_value(json!({"kty": "oct", "kid": "h1", "k": "AQAB"})).expect("jwk");
        let set = JwkSet {
            keys: vec![rsa("r1"), rsa("r2"), ec, hmac],
        };
        assert!(pick(&set, Some("r2"), Algorithm::RS256).is_some());
        assert!(
            pick(&set, Some("r2"), Algorithm::ES256).is_none(),
            "an RSA key never verifies ES256"
        );
        assert!(pick(&set, Some("e1"), Algorithm::ES256).is_some());
        assert!(
            pick(&set, Some("h1"), Algorithm::RS256).is_none(),
            "no HMAC key is ever used"
        );
        assert!(pick(&set, Some("r3"), Algorithm::RS256).is_none());
        assert!(
            pick(&set, None, Algorithm::RS256).is_none(),
            "two RSA keys: ambiguous"
        );
        assert!(
            pick(&set, None, Algorithm::ES256).is_some(),
            "the only EC key"
        );
    }
}
