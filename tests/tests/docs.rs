//! The API portal renders in a real browser from this build alone: Debian's Chromium, headless,
//! with every host name but 127.0.0.1 unresolvable, opens `/docs` and finds the chat endpoint.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::Env;
use serde_json::Value;
use uuid::Uuid;

/// Debian's `chromium` (test.sh installs it: `ensure_chromium` in infra/local/lib.sh).
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Loads `url` headless and returns the DOM once the page has settled (virtual time), with
/// the browser's network log written to `net_log`.
async fn render(url: &str, profile: &Path, net_log: &Path) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(chromium())
            .args([
                "--headless",
                // We are root on the test machines; Chromium's sandbox refuses to run as root.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                // The browser's own lookups about a page (form-field predictions) are not the
                // page's requests; off, so every request in the log below is the page's.
                "--disable-features=AutofillServerCommunication,OptimizationHints,Translate",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--virtual-time-budget=20000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--log-net-log={}", net_log.display()))
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes within two minutes")
    .expect("chromium runs (test.sh installs it; or set CHROMIUM)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The URLs the page asked for, from the browser's NetLog: requests it initiated and requests
/// made for its site (the navigation). Chromium's own background requests (update checks and
/// the like) belong to no page and are left out.
fn page_requests(net_log: &Path, origin: &str) -> Vec<String> {
    let text = std::fs::read_to_string(net_log).expect("net log written");
    // Chromium may leave the log without its closing brackets when it exits.
    let log: Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .expect("net log is JSON");
    let start_job = &log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    assert!(
        start_job.is_number(),
        "no URL_REQUEST_START_JOB in the net log"
    );
    let site = format!(
        "{} ",
        origin.rsplit_once(':').map_or(origin, |(site, _)| site)
    );
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| &e["type"] == start_job)
        .map(|e| &e["params"])
        .filter(|p| {
            p["initiator"] == origin
                || p["network_isolation_key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with(&site))
        })
        .filter_map(|p| p["url"].as_str())
        .map(str::to_owned)
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// The operation block Swagger UI renders for `method` and `path`, if any.
fn operation_rendered(dom: &str, method: &str, path: &str) -> bool {
    let path_attr = format!("data-path=\"{path}\"");
    dom.split("class=\"opblock opblock-").skip(1).any(|block| {
        block.starts_with(&method.to_lowercase())
            && block.contains(&path_attr)
            && block.contains(&format!(">{method}<"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_render_the_chat_endpoint_in_headless_chromium_with_no_network() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let work = std::env::temp_dir().join(format!("aihub-docs-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).expect("work dir");
    let net_log = work.join("net-log.json");

    let started = Instant::now();
    let dom = render(&api.url("/docs"), &work.join("profile"), &net_log).await;
    println!("chromium rendered /docs in {:?}", started.elapsed());

    assert!(
        operation_rendered(&dom, "POST", "/api/v1/chat/completions"),
        "POST /api/v1/chat/completions is not rendered; the DOM was:\n{dom}"
    );
    assert!(
        dom.contains("Authorize"),
        "no bearer authorization button in:\n{dom}"
    );
    let requested = page_requests(&net_log, &api.base);
    println!("the page requested {requested:?}");
    assert!(
        requested.contains(&api.url("/openapi.json")),
        "the page never loaded /openapi.json: {requested:?}"
    );
    let elsewhere: Vec<&String> = requested
        .iter()
        .filter(|url| !url.starts_with(&format!("{}/", api.base)))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the portal asked for URLs off this server: {elsewhere:?}"
    );

    let _ = std::fs::remove_dir_all(&work);
    app.stop().await;
}
