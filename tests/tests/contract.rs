//! The published contract holds: schemathesis (PyPI) reads `/openapi.json` and fuzzes every
//! operation, once as the platform admin and once with an organization's API key, and finds no
//! server error and no response that differs from what the document declares.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::upstream::Upstream;
use e2e::{Env, Tenant};
use platform::config::ProviderConfig;
use uuid::Uuid;

/// What every response is checked against.
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance";
/// Test cases per operation and phase, and the bound on one run, so the test takes minutes.
const MAX_EXAMPLES: &str = "25";
const MAX_SECONDS: u64 = 60;

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

/// Runs schemathesis against the server at `base` with `token`, in `work` (so nothing it
/// writes lands in the repository).
async fn fuzz(who: &'static str, base: &str, token: &str, work: &Path) -> Run {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--max-time", &MAX_SECONDS.to_string()])
        // Reproducible: the same cases on every run of one document.
        .args(["--seed", "20261127"])
        .args(["--generation-database", "none"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--no-color")
        .current_dir(work)
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(MAX_SECONDS + 120), command.output())
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
    let tenant = Tenant::create(&admin, "contract").await;

    let document = admin.get("/openapi.json").await;
    assert_eq!(document.status, 200, "{}", document.body);
    let operations: usize = document.body["paths"]
        .as_object()
        .expect("paths")
        .values()
        .filter_map(|item| item.as_object())
        .map(|item| item.keys().filter(|k| k.as_str() != "parameters").count())
        .sum();
    assert!(operations > 20, "only {operations} operations documented");

    let work = std::env::temp_dir().join(format!("aihub-contract-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).expect("work dir");
    let runs = [
        fuzz("the platform admin", &admin.base, &admin.token, &work).await,
        fuzz(
            "an organization's key",
            &admin.base,
            &tenant.owner_key,
            &work,
        )
        .await,
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
}
