//! The published contract holds: schemathesis (PyPI) reads `/openapi.json` and fuzzes every
//! operation, once with an organization's API key and once as the platform admin, and finds no
//! server error and no response that differs from what the document declares (status, content
//! type, body schema; a stream's events too). Real ids and a servable chat model steer part of
//! the cases past 404 into the handlers; everything else is generated.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::upstream::Upstream;
use e2e::{admin_key, all_permissions, unique_slug, Api, Env, Tenant};
use platform::config::ProviderConfig;
use serde_json::json;
use uuid::Uuid;

/// What every response is checked against.
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance";
/// Test cases per operation and phase, and the bound on one run, so the test takes minutes.
/// `AIHUB_CONTRACT_SECONDS` and `AIHUB_CONTRACT_SEED` set a longer hunt or other cases.
const MAX_EXAMPLES: &str = "25";
const MAX_SECONDS: u64 = 60;
const SEED: &str = "20261127";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The `st` command of schemathesis: `SCHEMATHESIS`, which test.sh sets (`ensure_schemathesis`
/// in infra/local/lib.sh installs it in a cached virtualenv), or `st` on the PATH.
fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("st"))
}

struct Run {
    who: &'static str,
    success: bool,
    took: Duration,
    report: String,
}

/// Real resources for the operations that take an id: with random ids every call is a 404, and
/// the answers worth checking (the resource, a validation error on it) are never seen. Deletion
/// gets an organization of its own, so the runs keep a tenant to work in.
struct Fixture {
    org: String,
    doomed_org: String,
    member: String,
    team: String,
    spare_key: String,
}

impl Fixture {
    async fn create(admin: &Api, tenant: &Tenant) -> Fixture {
        let (member, _) = tenant.member_with_role(admin, "developer").await;
        let team = tenant
            .owner
            .post("/api/v1/teams", &json!({"name": "Fuzzed"}))
            .await;
        assert_eq!(team.status, 201, "{}", team.body);
        let team = team.body["id"].as_str().expect("team id").to_string();
        let joined = tenant
            .owner
            .post(
                &format!("/api/v1/teams/{team}/members"),
                &json!({"user_id": member}),
            )
            .await;
        assert!(joined.status < 300, "{}", joined.body);
        let key = admin
            .post(
                "/api/v1/api-keys",
                &json!({"org_id": tenant.org_id, "name": "spare", "permissions": ["teams:read"]}),
            )
            .await;
        assert_eq!(key.status, 201, "{}", key.body);
        let doomed_org = admin.create_org(&unique_slug("doomed")).await.to_string();
        Fixture {
            org: tenant.org_id.clone(),
            doomed_org,
            member,
            team,
            spare_key: key.body["id"].as_str().expect("key id").to_string(),
        }
    }

    /// schemathesis.toml: which operations get which ids.
    fn config(&self) -> String {
        let Fixture {
            org,
            doomed_org,
            member,
            team,
            spare_key,
        } = self;
        format!(
            r#"# Chat calls the gateway can serve, so answers from the (stand-in) provider are checked
# too: a model of the catalog and a role OpenAI knows; every other field is fuzzed.
[[operations]]
include-path = ["/api/v1/chat/completions", "/api/v1/chat/stream"]
parameters = {{ "body.model" = "gpt-4o-mini", "body.messages[*].role" = "user" }}

[[operations]]
include-path = "/api/v1/organizations/{{id}}"
include-method = ["GET", "PUT"]
parameters = {{ id = "{org}" }}

[[operations]]
include-path = "/api/v1/organizations/{{id}}"
include-method = "DELETE"
parameters = {{ id = "{doomed_org}" }}

[[operations]]
include-path = ["/api/v1/subscriptions/{{id}}", "/api/v1/subscriptions/{{id}}/upgrade", "/api/v1/subscriptions/{{id}}/downgrade"]
parameters = {{ id = "{org}" }}

[[operations]]
include-path = ["/api/v1/users/{{id}}", "/api/v1/users/{{id}}/roles", "/api/v1/users/{{id}}/roles/{{role}}"]
parameters = {{ id = "{member}" }}

[[operations]]
include-path = ["/api/v1/teams/{{id}}", "/api/v1/teams/{{id}}/members", "/api/v1/teams/{{id}}/members/{{user_id}}"]
parameters = {{ id = "{team}", user_id = "{member}" }}

[[operations]]
include-path = ["/api/v1/api-keys/{{id}}", "/api/v1/api-keys/{{id}}/permissions"]
parameters = {{ id = "{spare_key}" }}
"#
        )
    }
}

/// Runs schemathesis against the server at `base` with `token`, with the configuration in
/// `work/schemathesis.toml`, from `work` (so nothing it writes lands in the repository).
async fn fuzz(who: &'static str, base: &str, token: &str, work: &Path) -> Run {
    let started = Instant::now();
    let seconds: u64 = setting("AIHUB_CONTRACT_SECONDS", &MAX_SECONDS.to_string())
        .parse()
        .expect("AIHUB_CONTRACT_SECONDS is a number of seconds");
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .arg("--config-file")
        .arg(work.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--max-time", &seconds.to_string()])
        // Reproducible: the same cases on every run of one document.
        .args(["--seed", &setting("AIHUB_CONTRACT_SEED", SEED)])
        .args(["--generation-database", "none"])
        // One worker: schemathesis's threads share CPython 3.11's AST builder, whose recursion
        // count two threads can corrupt (CPython gh-106905, fixed in 3.11.8 and 3.12); it failed
        // runs with "AST constructor recursion depth mismatch".
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--no-color")
        .current_dir(work)
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(seconds + 120), command.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ({who}) did not finish in time"))
        .unwrap_or_else(|e| {
            panic!(
                "schemathesis does not run ({e}): test.sh installs it (ensure_schemathesis in \
                 infra/local/lib.sh), or set SCHEMATHESIS to its `st`"
            )
        });
    Run {
        who,
        success: output.status.success(),
        took: started.elapsed(),
        report: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_documented_and_never_with_a_server_error() {
    // Chat calls reach a local stand-in provider, so a valid call answers 200, not 502.
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    env.config.gateway.providers = ["openrouter", "gemini", "openai"]
        .into_iter()
        .map(|name| ProviderConfig {
            name: name.into(),
            base_url: if name == "gemini" {
                upstream.gemini_base_url()
            } else {
                upstream.openai_base_url()
            },
            api_key: format!("{name}-test"),
        })
        .collect();
    let (app, admin) = env.app().await;
    // On Pro, so the organization's key reaches the team endpoints too.
    let tenant = Tenant::create_on(&admin, "contract", "pro").await;
    // The fuzzer's hundreds of calls a minute would meet Pro's rate limit (tested in limits.rs),
    // and a 429 tells nothing about the operation: the platform admin lifts it.
    let lifted = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 1_000_000, "tokens_per_minute": 100_000_000}),
        )
        .await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    let fixture = Fixture::create(&admin, &tenant).await;

    let document = admin.get("/openapi.json").await;
    assert_eq!(document.status, 200, "{}", document.body);
    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
    let operations: usize = document.body["paths"]
        .as_object()
        .expect("paths")
        .values()
        .filter_map(|item| item.as_object())
        .map(|item| {
            item.keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .count()
        })
        .sum();
    assert!(operations > 20, "only {operations} operations documented");

    let work = std::env::temp_dir().join(format!("aihub-contract-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::write(work.join("schemathesis.toml"), fixture.config()).expect("config");
    // The organization's key holds every permission but the two that would let the fuzzer end
    // its own session midway (deleting its organization, revoking or disabling itself); it runs
    // first, and the admin run, which nothing can lock out, covers those two.
    let permissions: Vec<String> = all_permissions()
        .into_iter()
        .filter(|p| p != "organizations:write" && p != "api_keys:write")
        .collect();
    let key = admin_key(&admin, &tenant.org_id, Some(&tenant.owner_id), &permissions).await;
    // The stand-in serves the model the configuration steers chat calls to.
    let hello = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
    let answer = admin
        .with_token(&key)
        .post("/api/v1/chat/completions", &hello)
        .await;
    assert_eq!(answer.status, 200, "the key cannot chat: {}", answer.body);
    let before = upstream.requests().len();
    let runs = [
        fuzz("an organization's key", &admin.base, &key, &work).await,
        fuzz("the platform admin", &admin.base, &admin.token, &work).await,
    ];
    let _ = std::fs::remove_dir_all(&work);
    app.stop().await;

    for run in &runs {
        println!(
            "schemathesis as {} over {operations} operations: {} in {:?}",
            run.who,
            if run.success { "passed" } else { "FAILED" },
            run.took
        );
        // What it could not reach (warnings) and how much it ran, also when it passed.
        let tail = run
            .report
            .find("=== WARNINGS")
            .or_else(|| run.report.find("=== SUMMARY"));
        if let (true, Some(at)) = (run.success, tail) {
            println!("{}", &run.report[at..]);
        }
    }
    let failed: Vec<&Run> = runs.iter().filter(|run| !run.success).collect();
    assert!(
        failed.is_empty(),
        "{}",
        failed
            .iter()
            .map(|run| format!("schemathesis as {}:\n{}", run.who, run.report))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    // Valid chat calls got through to the provider, so their answers were checked too.
    assert!(
        upstream.requests().len() > before,
        "no chat call of schemathesis reached the stand-in provider"
    );
}
