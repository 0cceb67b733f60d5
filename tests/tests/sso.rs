//! Single sign-on (issue 13): an Enterprise organization configures its OpenID Connect provider,
//! and its people call the management API with the provider's tokens.
//!
//! Two providers: **Dex**, a real OIDC provider built from the Go module proxy
//! (`ensure_dex` in infra/local/lib.sh, found through `DEX`), logged in to for real — the
//! password grant with a static password, and the authorization-code flow of Dex's
//! `mockCallback` connector, which is the one Dex connector that reports groups without an
//! outside directory (`authors`). And a **local issuer** the tests run, with its own discovery
//! document and key set signing RS256 and ES256 with keys made by openssl here: it gives groups
//! of the test's choosing, rotates keys, and signs the hostile tokens (expired, another audience
//! or issuer, `alg: none`, HS256).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{free_port, Api, Env, Tenant};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

// --- Dex ----------------------------------------------------------------------------------------

/// The password of Dex's static user, and its bcrypt hash (Dex keeps only the hash).
const DEX_PASSWORD: &str = "correct horse battery staple";
const DEX_PASSWORD_HASH: &str = "$2a$10$HS774zRRCB6k1thdfgNy8OvaAt7AZpMdMHtXeJcnGIAFEiOTqvl2.";

struct Dex {
    child: tokio::process::Child,
    issuer: String,
    _dir: TempDir,
}

impl Drop for Dex {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dex_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("DEX") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::env::var("AIHUB_CACHE").unwrap_or_else(|_| format!("{home}/.cache/aihub"));
    let path = std::path::PathBuf::from(format!("{cache}/dex-v2.45.1/dex"));
    assert!(
        path.exists(),
        "Dex is not installed: run `source infra/local/lib.sh; ensure_dex` (test.sh does), or set DEX"
    );
    path
}

/// The static clients: one per organization, since an issuer and client id name one tenant.
const ACME_CLIENT: &str = "aihub-acme";
const TROUT_CLIENT: &str = "aihub-trout";
const CLIENT_SECRET: &str = "dex-client-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

impl Dex {
    async fn start() -> Dex {
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}/dex");
        let dir = std::env::temp_dir().join(format!("aihub-dex-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dex dir");
        let clients: String = [ACME_CLIENT, TROUT_CLIENT]
            .iter()
            .map(|id| {
                format!(
                    "  - id: {id}\n    name: {id}\n    secret: {CLIENT_SECRET}\n    redirectURIs: ['{REDIRECT}']\n"
                )
            })
            .collect();
        let config = format!(
            "issuer: {issuer}\n\
             storage:\n  type: memory\n\
             web:\n  http: 127.0.0.1:{port}\n\
             logger:\n  level: warn\n\
             oauth2:\n  passwordConnector: local\n  skipApprovalScreen: true\n\
             staticClients:\n{clients}\
             enablePasswordDB: true\n\
             staticPasswords:\n  - email: ada@acme.example\n    hash: '{DEX_PASSWORD_HASH}'\n    username: ada\n    userID: 5d3c1d1e-1f0a-4f43-9d55-2b8f7d9b1a11\n\
             connectors:\n  - type: mockCallback\n    id: mock\n    name: Mock\n"
        );
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).expect("dex config");
        let child = tokio::process::Command::new(dex_binary())
            .arg("serve")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("dex.log")).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("dex starts");
        let http = reqwest::Client::new();
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        e2e::wait_for(Duration::from_secs(30), "Dex serves discovery", || {
            let http = http.clone();
            let discovery = discovery.clone();
            async move {
                http.get(&discovery)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        Dex {
            child,
            issuer,
            _dir: TempDir(dir),
        }
    }

    /// A real login with Dex's password grant (its local password database).
    async fn password_login(&self, client: &str, username: &str, password: &str) -> Value {
        let reply = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
                ("scope", "openid email profile groups"),
            ])
            .send()
            .await
            .expect("token request");
        let status = reply.status();
        let body: Value = reply.json().await.expect("token answer");
        assert!(status.is_success(), "password grant: {status} {body}");
        body
    }

    /// A real authorization-code login, driven over HTTP as a browser would: Dex's mock
    /// connector signs the person in without a form, the redirects are followed by hand up to
    /// our redirect URI, and the code is exchanged at the token endpoint.
    async fn browser_login(&self, client: &str) -> Value {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let state = Uuid::new_v4().simple().to_string();
        let mut url = reqwest::Url::parse(&format!("{}/auth/mock", self.issuer)).expect("url");
        url.query_pairs_mut()
            .append_pair("client_id", client)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile groups")
            .append_pair("state", &state);
        let mut next = url.to_string();
        let code = loop {
            let reply = http.get(&next).send().await.expect("auth step");
            assert!(
                reply.status().is_redirection(),
                "expected a redirect from {next}, got {}: {}",
                reply.status(),
                reply.text().await.unwrap_or_default()
            );
            let location = reply.headers()["location"]
                .to_str()
                .expect("location")
                .to_string();
            let location = reqwest::Url::parse(&next)
                .expect("url")
                .join(&location)
                .expect("location url");
            if location.as_str().starts_with(REDIRECT) {
                let pairs: HashMap<String, String> = location.query_pairs().into_owned().collect();
                assert_eq!(pairs.get("state"), Some(&state), "the state comes back");
                break pairs.get("code").expect("a code").clone();
            }
            next = location.to_string();
        };
        let reply = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ])
            .send()
            .await
            .expect("token request");
        let status = reply.status();
        let body: Value = reply.json().await.expect("token answer");
        assert!(status.is_success(), "code exchange: {status} {body}");
        body
    }
}

// --- The local issuer ----------------------------------------------------------------------------

struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    public: Jwk,
}

fn openssl_key(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl SigningKey {
    fn rsa() -> Self {
        let pem = openssl_key(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        Self::new(
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem).expect("rsa key"),
        )
    }

    fn ec() -> Self {
        let pem = openssl_key(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        Self::new(
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem).expect("ec key"),
        )
    }

    fn new(alg: Algorithm, key: EncodingKey) -> Self {
        let kid = Uuid::new_v4().simple().to_string();
        let mut public = Jwk::from_encoding_key(&key, alg).expect("public jwk");
        public.common.key_id = Some(kid.clone());
        Self {
            kid,
            alg,
            key,
            public,
        }
    }
}

/// An OIDC issuer of the test's own: discovery and a key set, counting key-set fetches.
struct LocalIssuer {
    issuer: String,
    published: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LocalIssuer {
    async fn start(keys: &[&SigningKey]) -> LocalIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}/idp", listener.local_addr().expect("addr"));
        let published = Arc::new(Mutex::new(
            keys.iter().map(|k| k.public.clone()).collect::<Vec<Jwk>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/keys"),
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        });
        let router = axum::Router::new()
            .route(
                "/idp/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let discovery = discovery.clone();
                    async move { axum::Json(discovery) }
                }),
            )
            .route(
                "/idp/keys",
                axum::routing::get({
                    let published = published.clone();
                    let fetches = fetches.clone();
                    move || {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let keys = published.lock().expect("keys").clone();
                        async move { axum::Json(JwkSet { keys }) }
                    }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        LocalIssuer {
            issuer,
            published,
            fetches,
            task,
        }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.published.lock().expect("keys") = keys.iter().map(|k| k.public.clone()).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Claims of a valid ID token for `email` in `groups`, for `audience`.
    fn claims(&self, audience: &str, email: &str, groups: &[&str]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer,
            "sub": format!("sub-{email}"),
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "email": email,
            "email_verified": true,
            "name": "Grace Hopper",
            "groups": groups,
        })
    }
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// --- Set-up ---------------------------------------------------------------------------------------

/// A platform that accepts loopback http issuers (the tests' Dex and local issuer) and fetches
/// an issuer's keys again at most every `refetch`.
async fn platform(refetch: Duration) -> (Env, aihub::Running, Api) {
    let mut env = Env::new().await;
    env.config.sso_allow_loopback_http = true;
    env.config.sso_jwks_refetch = refetch;
    let (running, admin) = env.app().await;
    (env, running, admin)
}

async fn configure(owner: &Api, org_id: &str, body: Value) -> e2e::Reply {
    owner
        .put(&format!("/api/v1/organizations/{org_id}/sso"), &body)
        .await
}

/// The events of the test's journal of `event_type`, oldest first.
async fn events_of(env: &Env, event_type: &str) -> Vec<Value> {
    env.db()
        .await
        .query(
            "SELECT envelope::text FROM journal WHERE envelope->>'event_type' = $1 ORDER BY global_position",
            &[&event_type],
        )
        .await
        .expect("journal")
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).expect("json"))
        .collect()
}

async fn user_id_of(api: &Api, email: &str) -> String {
    let users = api.get("/api/v1/users?limit=1000").await;
    assert_eq!(users.status, 200, "{}", users.body);
    users.body["data"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == email)
        .and_then(|u| u["id"].as_str())
        .unwrap_or_else(|| panic!("{email} is a user: {}", users.body))
        .to_string()
}

// --- Tests ----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_dex_password_login_acts_as_a_user_provisioned_on_first_sight() {
    let dex = Dex::start().await;
    let (env, _running, admin) = platform(Duration::from_secs(30)).await;
    let acme = Tenant::create_on(&admin, "acme", "enterprise").await;
    let configured = configure(
        &acme.owner,
        &acme.org_id,
        json!({"issuer": dex.issuer, "client_id": ACME_CLIENT, "allowed_domains": ["ACME.example"],
               "default_role": "developer"}),
    )
    .await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    assert_eq!(configured.body["allowed_domains"], json!(["acme.example"]));
    let shown = acme
        .owner
        .get(&format!("/api/v1/organizations/{}/sso", acme.org_id))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["issuer"], dex.issuer);
    assert_eq!(shown.body["default_role"], "developer");

    // A wrong password gets no token at all: the login is real.
    let refused = reqwest::Client::new()
        .post(format!("{}/token", dex.issuer))
        .basic_auth(ACME_CLIENT, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "ada@acme.example"),
            ("password", "wrong"),
            ("scope", "openid email"),
        ])
        .send()
        .await
        .expect("token request");
    assert!(!refused.status().is_success());

    let tokens = dex
        .password_login(ACME_CLIENT, "ada@acme.example", DEX_PASSWORD)
        .await;
    let id_token = tokens["id_token"].as_str().expect("id token");
    let ada = admin.with_token(id_token);

    // The read API, then the command API, as ada.
    let users = ada.get("/api/v1/users").await;
    assert_eq!(users.status, 200, "{}", users.body);
    let ada_id = user_id_of(&ada, "ada@acme.example").await;
    let created = events_of(&env, "user.created").await;
    // Emails are sealed in the journal (GDPR crypto-shredding): ada's user.created is the one
    // on her user's stream, and her email in it is ciphertext.
    let mine: Vec<&Value> = created
        .iter()
        .filter(|e| e["stream_id"] == format!("user:{ada_id}").as_str())
        .collect();
    assert!(
        !mine.is_empty() && mine[0]["data"]["email"]["alg"] == "xchacha20poly1305",
        "{mine:?}"
    );
    assert_eq!(mine.len(), 1, "provisioned once: {created:?}");
    assert_eq!(mine[0]["actor"]["type"], "user");
    assert_eq!(mine[0]["actor"]["id"], ada_id.as_str());
    assert_eq!(mine[0]["org_id"], acme.org_id.as_str());
    let roles = events_of(&env, "user.role_assigned").await;
    assert!(
        roles
            .iter()
            .any(|e| e["stream_id"] == format!("user:{ada_id}")
                && e["data"]["role"] == "developer"
                && e["actor"]["id"] == ada_id.as_str()),
        "{roles:?}"
    );

    let key = ada
        .post(
            "/api/v1/api-keys",
            &json!({"name": "ada's laptop", "permissions": ["models:read"]}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.body);
    assert_eq!(
        key.body["owner_user_id"],
        ada_id.as_str(),
        "the key is ada's"
    );
    let keys = events_of(&env, "api_key.created").await;
    let made = keys
        .iter()
        .find(|e| e["data"]["name"] == "ada's laptop")
        .expect("the key's event");
    assert_eq!(
        made["actor"],
        json!({"type": "user", "id": ada_id, "ip": "127.0.0.1"})
    );

    // Dex's access token is a JWT for the same client: it works too.
    let access = tokens["access_token"].as_str().expect("an access token");
    let reply = admin.with_token(access).get("/api/v1/users").await;
    assert_eq!(reply.status, 200, "access token: {}", reply.body);

    // Signing in again provisions nobody new; a developer changes no SSO configuration and
    // makes no chat call with the provider's token.
    let users_before = events_of(&env, "user.created").await.len();
    let again = dex
        .password_login(ACME_CLIENT, "ada@acme.example", DEX_PASSWORD)
        .await;
    let ada = admin.with_token(again["id_token"].as_str().expect("id token"));
    assert_eq!(ada.get("/api/v1/users").await.status, 200);
    assert_eq!(
        events_of(&env, "user.created").await.len(),
        users_before,
        "a second sign-in provisions no one"
    );
    configure(&ada, &acme.org_id, json!({"issuer": dex.issuer, "client_id": "x", "allowed_domains": ["evil.example"], "default_role": "admin"}))
        .await
        .assert_client_error(403);
    let chat = ada
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(chat.assert_client_error(403)["code"], "api_key_required");

    // Removing single sign-on refuses its tokens.
    let removed = acme
        .owner
        .delete(&format!("/api/v1/organizations/{}/sso", acme.org_id))
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    ada.get("/api/v1/users").await.assert_client_error(401);
}

#[tokio::test]
async fn dex_groups_become_roles_and_a_token_of_one_organization_acts_in_no_other() {
    let dex = Dex::start().await;
    let (_env, _running, admin) = platform(Duration::from_secs(30)).await;
    let acme = Tenant::create_on(&admin, "acme", "enterprise").await;
    let trout = Tenant::create_on(&admin, "trout", "enterprise").await;
    let acme_config = configure(&acme.owner, &acme.org_id,
        json!({"issuer": dex.issuer, "client_id": ACME_CLIENT, "allowed_domains": ["acme.example"], "default_role": "viewer"})).await;
    assert_eq!(acme_config.status, 200, "{}", acme_config.body);
    let trout_config = configure(&trout.owner, &trout.org_id,
        json!({"issuer": dex.issuer, "client_id": TROUT_CLIENT, "allowed_domains": ["kilgore.trout"],
               "role_mappings": [{"group": "authors", "role": "admin"}]})).await;
    assert_eq!(trout_config.status, 200, "{}", trout_config.body);

    // Dex's mock connector signs Kilgore Trout in, member of `authors`.
    let tokens = dex.browser_login(TROUT_CLIENT).await;
    let kilgore = admin.with_token(tokens["id_token"].as_str().expect("id token"));
    let me = user_id_of(&kilgore, "kilgore@kilgore.trout").await;
    let user = kilgore.get(&format!("/api/v1/users/{me}")).await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert!(
        user.body["roles"].to_string().contains("admin"),
        "authors are admins: {}",
        user.body
    );
    // An admin's work: adding a user.
    let added = kilgore
        .post("/api/v1/users", &json!({"email": "vonnegut@kilgore.trout"}))
        .await;
    assert_eq!(added.status, 201, "{}", added.body);

    // Nothing of acme is reachable with trout's token, by path, query or body.
    kilgore
        .get(&format!("/api/v1/users?org_id={}", acme.org_id))
        .await
        .assert_client_error(404);
    kilgore
        .get(&format!("/api/v1/organizations/{}/sso", acme.org_id))
        .await
        .assert_client_error(404);
    kilgore
        .post(
            "/api/v1/users",
            &json!({"org_id": acme.org_id, "email": "mole@acme.example"}),
        )
        .await
        .assert_client_error(404);
    // The same person through acme's client is refused: kilgore.trout is not acme's domain.
    let acme_tokens = dex.browser_login(ACME_CLIENT).await;
    admin
        .with_token(acme_tokens["id_token"].as_str().expect("id token"))
        .get("/api/v1/users")
        .await
        .assert_client_error(401);
}

#[tokio::test]
async fn groups_map_to_roles_and_later_sign_ins_follow_the_groups() {
    let (rsa, ec) = (SigningKey::rsa(), SigningKey::ec());
    let idp = LocalIssuer::start(&[&rsa, &ec]).await;
    let (env, _running, admin) = platform(Duration::from_secs(30)).await;
    let org = Tenant::create_on(&admin, "grp", "enterprise").await;
    let reply = configure(
        &org.owner,
        &org.org_id,
        json!({
        "issuer": idp.issuer, "client_id": "grp-app", "allowed_domains": ["grp.example"],
        "role_mappings": [{"group": "eng", "role": "developer"}, {"group": "ops", "role": "admin"},
                          {"group": "readers", "role": "viewer"}]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // ES256: a reader is a viewer, and a viewer writes nothing.
    let viewer = admin.with_token(&sign(
        &ec,
        &idp.claims("grp-app", "grace@grp.example", &["readers"]),
    ));
    assert_eq!(viewer.get("/api/v1/users").await.status, 200);
    let grace = user_id_of(&viewer, "grace@grp.example").await;
    viewer
        .post("/api/v1/users", &json!({"email": "x@grp.example"}))
        .await
        .assert_client_error(403);
    viewer
        .post(
            "/api/v1/api-keys",
            &json!({"name": "k", "permissions": ["models:read"]}),
        )
        .await
        .assert_client_error(403);
    configure(
        &viewer,
        &org.org_id,
        json!({"issuer": idp.issuer, "client_id": "grp-app",
        "allowed_domains": ["grp.example"], "default_role": "admin"}),
    )
    .await
    .assert_client_error(403);

    // A role given by hand, outside what SSO manages, survives the re-sync below.
    let by_hand = admin
        .post(
            &format!("/api/v1/users/{grace}/roles"),
            &json!({"role": "billing_manager"}),
        )
        .await;
    assert_eq!(by_hand.status, 200, "{}", by_hand.body);

    // RS256: moved from readers to eng and ops in the provider, she is developer and admin now.
    let moved = admin.with_token(&sign(
        &rsa,
        &idp.claims("grp-app", "Grace@GRP.example", &["eng", "ops", "unmapped"]),
    ));
    let added = moved
        .post("/api/v1/users", &json!({"email": "new@grp.example"}))
        .await;
    assert_eq!(added.status, 201, "an admin now: {}", added.body);
    let user = admin.get(&format!("/api/v1/users/{grace}")).await;
    let roles: Vec<String> = user.body["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter(|r| r["team_id"].is_null())
        .map(|r| r["role"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        roles,
        vec!["admin", "billing_manager", "developer"],
        "{}",
        user.body
    );
    let removed = events_of(&env, "user.role_removed").await;
    assert!(
        removed.iter().any(|e| e["data"]["role"] == "viewer"
            && e["stream_id"] == format!("user:{grace}")
            && e["actor"]["id"] == grace.as_str()),
        "the re-sync is recorded as the person's own change: {removed:?}"
    );

    // Groups that map to nothing, and no default role: no access.
    let nobody = admin.with_token(&sign(
        &rsa,
        &idp.claims("grp-app", "nobody@grp.example", &["interns"]),
    ));
    assert_eq!(
        nobody.get("/api/v1/users").await.assert_client_error(403)["code"],
        "sso_no_role"
    );
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_401() {
    let (rsa, ec) = (SigningKey::rsa(), SigningKey::ec());
    let stranger = SigningKey::rsa();
    let idp = LocalIssuer::start(&[&rsa, &ec]).await;
    let other_idp = LocalIssuer::start(&[&stranger]).await;
    let (_env, _running, admin) = platform(Duration::from_secs(30)).await;
    let org = Tenant::create_on(&admin, "bad", "enterprise").await;
    let reply = configure(
        &org.owner,
        &org.org_id,
        json!({"issuer": idp.issuer, "client_id": "bad-app",
        "allowed_domains": ["bad.example"], "default_role": "viewer"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let good = idp.claims("bad-app", "ok@bad.example", &[]);
    assert_eq!(
        admin
            .with_token(&sign(&rsa, &good))
            .get("/api/v1/users")
            .await
            .status,
        200
    );

    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        claims
    };
    let now = chrono::Utc::now().timestamp();
    let (header, payload) = {
        let token = sign(&rsa, &good);
        let mut parts = token.split('.');
        (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                &rsa,
                &with(&|c| {
                    c["exp"] = json!(now - 600);
                    c["iat"] = json!(now - 900);
                }),
            ),
        ),
        (
            "not yet valid",
            sign(&ec, &with(&|c| c["nbf"] = json!(now + 600))),
        ),
        (
            "another audience",
            sign(&rsa, &with(&|c| c["aud"] = json!("someone-else"))),
        ),
        (
            "another issuer",
            sign(
                &stranger,
                &other_idp.claims("bad-app", "ok@bad.example", &[]),
            ),
        ),
        ("our issuer's name, another's key", sign(&stranger, &good)),
        (
            "unverified email",
            sign(&rsa, &with(&|c| c["email_verified"] = json!(false))),
        ),
        (
            "a domain not allowed",
            sign(&rsa, &with(&|c| c["email"] = json!("ok@evil.example"))),
        ),
        (
            "no email",
            sign(
                &rsa,
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("email"));
                }),
            ),
        ),
        (
            "no exp",
            sign(
                &rsa,
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("exp"));
                }),
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(good.to_string().as_bytes())
            ),
        ),
        (
            "HS256",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &good,
                &EncodingKey::from_secret(b"guessable"),
            )
            .expect("hs256"),
        ),
        (
            "tampered payload",
            format!(
                "{header}.{}.{}",
                b64(with(&|c| c["email"] = json!("boss@bad.example"))
                    .to_string()
                    .as_bytes()),
                sign(&rsa, &good).rsplit('.').next().unwrap_or_default()
            ),
        ),
        ("a signature of nothing", format!("{header}.{payload}.")),
    ];
    for (what, token) in cases {
        let reply = admin.with_token(&token).get("/api/v1/users").await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        reply.assert_client_error(401);
    }
    assert_eq!(
        idp.fetches(),
        1,
        "one key set fetch served every token of a known key"
    );
}

#[tokio::test]
async fn rotated_keys_are_fetched_and_made_up_key_ids_do_not_hammer_the_provider() {
    let floor = Duration::from_millis(1500);
    let (old, new) = (SigningKey::rsa(), SigningKey::ec());
    let idp = LocalIssuer::start(&[&old]).await;
    let (_env, _running, admin) = platform(floor).await;
    let org = Tenant::create_on(&admin, "rot", "enterprise").await;
    let reply = configure(
        &org.owner,
        &org.org_id,
        json!({"issuer": idp.issuer, "client_id": "rot-app",
        "allowed_domains": ["rot.example"], "default_role": "viewer"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let claims = idp.claims("rot-app", "r@rot.example", &[]);
    assert_eq!(
        admin
            .with_token(&sign(&old, &claims))
            .get("/api/v1/users")
            .await
            .status,
        200
    );
    assert_eq!(idp.fetches(), 1);

    // The provider rotates: the new key replaces the old one in its set.
    idp.publish(&[&new]);
    tokio::time::sleep(floor + Duration::from_millis(200)).await;
    let rotated = admin
        .with_token(&sign(&new, &claims))
        .get("/api/v1/users")
        .await;
    assert_eq!(
        rotated.status, 200,
        "a token of the rotated-in key: {}",
        rotated.body
    );
    assert_eq!(idp.fetches(), 2, "fetched again for the unknown key id");
    // The old key is gone from the set that was fetched.
    assert_eq!(
        admin
            .with_token(&sign(&old, &claims))
            .get("/api/v1/users")
            .await
            .status,
        401
    );

    // Made-up key ids: refused, and the provider is asked at most once per floor.
    let before = idp.fetches();
    let started = Instant::now();
    for _ in 0..40 {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(Uuid::new_v4().to_string());
        let token = jsonwebtoken::encode(&header, &claims, &new.key).expect("sign");
        admin
            .with_token(&token)
            .get("/api/v1/users")
            .await
            .assert_client_error(401);
    }
    let floors = (started.elapsed().as_secs_f64() / floor.as_secs_f64()).ceil() as usize;
    let asked = idp.fetches() - before;
    assert!(
        asked <= floors + 1,
        "{asked} fetches for 40 made-up key ids in {:?} (floor {floor:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn only_an_enterprise_admin_configures_single_sign_on() {
    let key = SigningKey::rsa();
    let idp = LocalIssuer::start(&[&key]).await;
    let (_env, _running, admin) = platform(Duration::from_secs(30)).await;
    let body = |client: &str| {
        json!({"issuer": idp.issuer, "client_id": client,
        "allowed_domains": ["corp.example"], "role_mappings": [{"group": "g", "role": "developer"}]})
    };

    // Other plans: 403 plan_feature_required, for the owner and the platform admin alike.
    let pro = Tenant::create_on(&admin, "pro", "pro").await;
    let refused = configure(&pro.owner, &pro.org_id, body("pro-app")).await;
    assert_eq!(
        refused.assert_client_error(403)["code"],
        "plan_feature_required"
    );
    let refused = configure(&admin, &pro.org_id, body("pro-app")).await;
    assert_eq!(
        refused.assert_client_error(403)["code"],
        "plan_feature_required"
    );

    let ent = Tenant::create_on(&admin, "ent", "enterprise").await;
    // A developer's key (every permission asked for, the role's only) cannot.
    let (_, developer) = ent.member_with_role(&admin, "developer").await;
    let refused = configure(&admin.with_token(&developer), &ent.org_id, body("ent-app")).await;
    assert_eq!(refused.assert_client_error(403)["param"], "sso:write");
    admin
        .with_token(&developer)
        .get(&format!("/api/v1/organizations/{}/sso", ent.org_id))
        .await
        .assert_client_error(403);
    // An admin can, but maps no group to owner, and no role above its own.
    let (_, admin_key) = ent.member_with_role(&admin, "admin").await;
    let ent_admin = admin.with_token(&admin_key);
    let owner_mapping = configure(
        &ent_admin,
        &ent.org_id,
        json!({"issuer": idp.issuer, "client_id": "ent-app",
        "allowed_domains": ["corp.example"], "role_mappings": [{"group": "g", "role": "owner"}]}),
    )
    .await;
    assert_eq!(
        owner_mapping.assert_client_error(400)["param"],
        "role_mappings"
    );
    let configured = configure(&ent_admin, &ent.org_id, body("ent-app")).await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    // Another organization's key sees nothing of it.
    pro.owner
        .get(&format!("/api/v1/organizations/{}/sso", ent.org_id))
        .await
        .assert_client_error(404);
    configure(&pro.owner, &ent.org_id, body("x"))
        .await
        .assert_client_error(404);
    // One organization per issuer and client id.
    let other = Tenant::create_on(&admin, "ent2", "enterprise").await;
    let taken = configure(&other.owner, &other.org_id, body("ent-app")).await;
    assert_eq!(taken.assert_client_error(409)["code"], "sso_client_taken");

    // Bad input: 400 naming the field.
    for (bad, param) in [
        (
            json!({"issuer": "http://idp.example.com", "client_id": "c", "allowed_domains": ["corp.example"], "default_role": "viewer"}),
            "issuer",
        ),
        (
            json!({"issuer": "not a url", "client_id": "c", "allowed_domains": ["corp.example"], "default_role": "viewer"}),
            "issuer",
        ),
        (
            json!({"issuer": idp.issuer, "client_id": "", "allowed_domains": ["corp.example"], "default_role": "viewer"}),
            "client_id",
        ),
        (
            json!({"issuer": idp.issuer, "client_id": "c", "allowed_domains": [], "default_role": "viewer"}),
            "allowed_domains",
        ),
        (
            json!({"issuer": idp.issuer, "client_id": "c", "allowed_domains": ["@corp"], "default_role": "viewer"}),
            "allowed_domains",
        ),
        (
            json!({"issuer": idp.issuer, "client_id": "c", "allowed_domains": ["corp.example"]}),
            "role_mappings",
        ),
        (
            json!({"issuer": idp.issuer, "client_id": "c", "allowed_domains": ["corp.example"], "default_role": "root"}),
            "default_role",
        ),
    ] {
        let reply = configure(&other.owner, &other.org_id, bad.clone()).await;
        assert_eq!(reply.assert_client_error(400)["param"], param, "{bad}");
    }
}

#[tokio::test]
async fn a_token_for_one_organization_cannot_act_in_another() {
    let key = SigningKey::ec();
    let idp = LocalIssuer::start(&[&key]).await;
    let (_env, _running, admin) = platform(Duration::from_secs(30)).await;
    let a = Tenant::create_on(&admin, "orga", "enterprise").await;
    let b = Tenant::create_on(&admin, "orgb", "enterprise").await;
    for (org, client) in [(&a, "app-a"), (&b, "app-b")] {
        let reply = configure(
            &org.owner,
            &org.org_id,
            json!({"issuer": idp.issuer, "client_id": client,
            "allowed_domains": ["shared.example"], "default_role": "admin"}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let in_a = admin.with_token(&sign(&key, &idp.claims("app-a", "eve@shared.example", &[])));
    assert_eq!(in_a.get("/api/v1/users").await.status, 200);
    let eve = user_id_of(&in_a, "eve@shared.example").await;
    in_a.get(&format!("/api/v1/users?org_id={}", b.org_id))
        .await
        .assert_client_error(404);
    in_a.get(&format!("/api/v1/organizations/{}", b.org_id))
        .await
        .assert_client_error(404);
    in_a.post(
        "/api/v1/users",
        &json!({"org_id": b.org_id, "email": "mole@shared.example"}),
    )
    .await
    .assert_client_error(404);
    // Eve exists in A only; B's users do not include her.
    let b_users = b.owner.get("/api/v1/users?limit=1000").await;
    assert!(
        !b_users.body.to_string().contains("eve@shared.example"),
        "{}",
        b_users.body
    );
    assert!(!b_users.body.to_string().contains(&eve));
    // A token naming both clients is not a way to choose: it names two organizations.
    let mut claims = idp.claims("app-a", "eve@shared.example", &[]);
    claims["aud"] = json!(["app-a", "app-b"]);
    admin
        .with_token(&sign(&key, &claims))
        .get("/api/v1/users")
        .await
        .assert_client_error(401);
}
