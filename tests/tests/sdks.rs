//! The SDKs of PRODUCT.md, `sdks/python` (`ai_hub`) and `sdks/javascript` (`@ai-hub/javascript`),
//! against a real `aihub serve` with the real broker and PostgreSQL; only the model provider is
//! the local fake. Each SDK's own suite runs (pytest, `node --test`, the latter also driving the
//! official `openai` npm package), the packages are built and installed as a user would
//! (`pip install` into a clean virtualenv, `python -m build`, `npm pack` then `npm install` of
//! the tarball), PRODUCT.md's two snippets run from the installed packages, and the generated
//! models must match `docs/openapi.json`.
//!
//! The tools come from `infra/local/lib.sh` (`ensure_sdk_python`, `ensure_sdk_node`, cached under
//! `~/.cache/aihub`): `test.sh` runs them and exports `AIHUB_SDK_PYTHON`,
//! `AIHUB_SDK_WHEELHOUSE` and `AIHUB_SDK_NODE_MODULES`; run alone, this test runs them itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use e2e::upstream::Upstream;
use e2e::{admin_key, free_port, Api, Env, Tenant};
use serde_json::json;
use uuid::Uuid;

const GREETING: &str = "Hello from openai openai/gpt-4o!";
/// The longest one tool may run (a suite, an install, a build).
const STEP_LIMIT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// A fresh directory under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aihub-sdk-{name}-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// The values of `vars`, taken from the environment, or else from running `ensure` of
/// infra/local/lib.sh (which installs what is missing, once, into the cache).
fn tools(ensure: &str, vars: &[&str]) -> Vec<String> {
    if let Ok(values) = vars
        .iter()
        .map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()).ok_or(()))
        .collect::<Result<Vec<_>, _>>()
    {
        return values;
    }
    let print: Vec<String> = vars.iter().map(|v| format!("\"${v}\"")).collect();
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source infra/local/lib.sh && {ensure} >&2 && printf '%s\\n' {}",
            print.join(" ")
        ))
        .current_dir(repo())
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{ensure} failed: {}",
        tail(&String::from_utf8_lossy(&output.stderr))
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn python_tools() -> (String, String) {
    let found = tools(
        "ensure_sdk_python",
        &["AIHUB_SDK_PYTHON", "AIHUB_SDK_WHEELHOUSE"],
    );
    (found[0].clone(), found[1].clone())
}

fn node_modules() -> String {
    tools("ensure_sdk_node", &["AIHUB_SDK_NODE_MODULES"]).remove(0)
}

/// The last lines of a long output, so a failure shows what matters without flooding.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(80);
    lines[start..].join("\n")
}

/// Runs `command` to its end (within [`STEP_LIMIT`]) and returns what it printed, stdout then
/// stderr; panics with the output's tail when it fails.
async fn run(what: &str, command: &mut tokio::process::Command) -> String {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(STEP_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {STEP_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        tail(&printed)
    );
    printed
}

fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.current_dir(dir);
    command
}

/// One `aihub serve` of the test's own: `gpt-4o` answered by the fake OpenRouter, and
/// `broken-model` on a provider whose port nobody listens on (every call 502).
struct Platform {
    _env: Env,
    _serve: tokio::process::Child,
    _upstream: Upstream,
    admin: Api,
    base_url: String,
}

impl Platform {
    async fn start() -> Platform {
        let upstream = Upstream::start().await;
        let env = Env::new().await;
        let catalog = json!([
            {"name": "gpt-4o", "tier": "basic", "context_length": 128000, "input_micros_per_mtok": 2_500_000,
             "output_micros_per_mtok": 10_000_000, "deployments": [{"provider": "openrouter", "upstream_model": "openai/gpt-4o"}]},
            {"name": "broken-model", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1,
             "output_micros_per_mtok": 1, "deployments": [{"provider": "openai", "upstream_model": "broken/model"}]}
        ]);
        let file = std::env::temp_dir().join(format!("aihub-models-{}.json", Uuid::now_v7()));
        std::fs::write(&file, catalog.to_string()).expect("catalog");
        let port = free_port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("aihub-sdk-serve-{port}.log")))
                .expect("log file");
        let serve = env
            .serve_command(port, &file, &upstream.openai_base_url())
            // A loaded machine may take more than the default 2 s to project a write.
            .env("AIHUB_CONSISTENCY_TIMEOUT_MS", "15000")
            .env("OPENAI_API_KEY", "oa-test")
            .env(
                "OPENAI_BASE_URL",
                format!("http://127.0.0.1:{}/v1", free_port()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("aihub serve starts");
        let admin = env.serving_at(port).await;
        let base_url = format!("{}/api/v1", admin.base);
        Platform {
            _env: env,
            _serve: serve,
            _upstream: upstream,
            admin,
            base_url,
        }
    }

    /// The variables the SDK suites read: where the platform is and the admin's token.
    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AIHUB_BASE_URL", self.base_url.clone()),
            ("AIHUB_ADMIN_TOKEN", self.admin.token.clone()),
        ]
    }
}

/// An organization on Pro and a key of its owner that may chat, as a user would hold.
async fn chat_key(admin: &Api) -> String {
    let tenant = Tenant::create_on(admin, "sdk-snippet", "pro").await;
    admin_key(
        admin,
        &tenant.org_id,
        Some(&tenant.owner_id),
        &["chat:write".into(), "models:read".into()],
    )
    .await
}

/// The platform as a user starts it: `infra/local/up.sh` (PostgreSQL, a Kafka broker of its own,
/// `aihub bootstrap`, `aihub serve`), in a scratch home with its own broker port, database and
/// listen address so it never meets the platform a developer runs, and with OpenRouter's base URL
/// pointed at the local fake (there is no internet). `AIHUB_BIN` runs the debug build beside the
/// test rather than a release build. `infra/local/down.sh` stops it when dropped.
struct UpSh {
    vars: Vec<(&'static str, String)>,
    home: PathBuf,
    database: String,
    _upstream: Upstream,
    admin: Api,
    base_url: String,
}

impl UpSh {
    async fn start() -> UpSh {
        let upstream = Upstream::start().await;
        let home = scratch("up-sh");
        let listen = format!("127.0.0.1:{}", free_port());
        let kafka_port = free_port();
        let database = format!("aihub_up_sh_{}", Uuid::now_v7().simple());
        let mut vars = vec![
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", std::env::var("HOME").unwrap_or_default()),
            ("AIHUB_HOME", home.display().to_string()),
            ("AIHUB_BIN", e2e::aihub_binary().display().to_string()),
            ("AIHUB_LISTEN", listen.clone()),
            ("KAFKA_PORT", kafka_port.to_string()),
            ("KAFKA_CONTROLLER_PORT", free_port().to_string()),
            ("KAFKA_BROKERS", format!("127.0.0.1:{kafka_port}")),
            (
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ),
            ("OPENROUTER_API_KEY", "sk-or-up-sh".into()),
            ("OPENROUTER_BASE_URL", upstream.openai_base_url()),
            // A loaded machine may take more than the default 2 s to project a write.
            ("AIHUB_CONSISTENCY_TIMEOUT_MS", "15000".into()),
        ];
        // The broker's and the bookkeeping's priorities as test.sh sets them, where it does
        // (up.sh's defaults, nice 10 and SCHED_IDLE, would put them behind the neighbouring
        // test binaries).
        vars.extend(
            [
                "KAFKA_NICE",
                "KAFKA_IDLE",
                "AIHUB_BACKGROUND_NICE",
                "AIHUB_BACKGROUND_IDLE",
            ]
            .into_iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name, value))),
        );
        let mut up = UpSh {
            vars,
            home,
            database,
            _upstream: upstream,
            admin: Api {
                base: format!("http://{listen}"),
                token: String::new(),
                http: reqwest::Client::new(),
            },
            base_url: format!("http://{listen}/api/v1"),
        };
        let printed = run(
            "infra/local/up.sh",
            command("bash", &repo())
                .arg("infra/local/up.sh")
                .env_clear()
                .envs(up.vars.iter().cloned()),
        )
        .await;
        assert!(printed.contains("AI Hub is up."), "{}", tail(&printed));
        let token =
            std::fs::read_to_string(up.home.join("admin-token")).expect("up.sh's admin token");
        up.admin.token = token.trim().to_string();
        up
    }
}

impl Drop for UpSh {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg("infra/local/down.sh")
            .current_dir(repo())
            .env_clear()
            .envs(self.vars.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::process::Command::new("psql")
            .args(["postgres://postgres@127.0.0.1:5432/postgres", "-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Copies the JavaScript SDK (sources and tests, not its build or modules) into `dir`, with the
/// cached development packages as its `node_modules`.
fn javascript_checkout(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name();
            if name == "node_modules" || name == "dist" {
                continue;
            }
            let target = to.join(&name);
            if entry.file_type().expect("type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }
    let checkout = dir.join("javascript");
    copy(&repo().join("sdks/javascript"), &checkout);
    std::os::unix::fs::symlink(node_modules(), checkout.join("node_modules")).expect("symlink");
    checkout
}

/// The code block of `readme` that follows `<!-- product-snippet -->`.
fn product_snippet(readme: &Path) -> String {
    let text = std::fs::read_to_string(readme).expect("README");
    let after = text
        .split_once("<!-- product-snippet -->")
        .unwrap_or_else(|| panic!("{} has no <!-- product-snippet --> block", readme.display()))
        .1;
    let body = after.trim_start().split_once('\n').expect("a fence").1;
    body.split_once("\n```")
        .expect("a closing fence")
        .0
        .to_string()
        + "\n"
}

/// PRODUCT.md, when the project's shared documents sit beside the repository (as on the
/// developers' machines and in CI), holds each README snippet verbatim.
fn assert_as_in_product_md(snippet: &str) {
    let product = repo().join("../shared/PRODUCT.md");
    if let Ok(text) = std::fs::read_to_string(&product) {
        assert!(
            text.contains(snippet.trim_end()),
            "the README snippet is not PRODUCT.md's:\n{snippet}"
        );
    }
}

/// The printed chunks of a snippet, `None`s (chunks without content) left out.
fn printed_text(output: &str) -> String {
    output
        .lines()
        .filter(|l| *l != "None" && *l != "null" && *l != "undefined")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_follow_the_openapi_document() {
    let (python, _) = python_tools();
    run(
        "python3 sdks/generate.py --check",
        command(&python, &repo()).args(["sdks/generate.py", "--check"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_passes_its_suite_against_the_platform() {
    let (python, _) = python_tools();
    let platform = Platform::start().await;
    let dir = repo().join("sdks/python");
    let output = run(
        "pytest sdks/python/tests",
        command(&python, &dir)
            .args(["-m", "pytest", "-q", "-rs", "tests"])
            .env("PYTHONPATH", dir.join("src"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(platform.vars()),
    )
    .await;
    let summary = output
        .lines()
        .rfind(|l| l.contains(" passed"))
        .unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "every test ran: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_sdk_and_the_openai_package_pass_their_suite_against_the_platform() {
    let platform = Platform::start().await;
    let scratch = scratch("js");
    let js = javascript_checkout(&scratch);
    run(
        "tsc (the SDK)",
        command("node", &js).args(["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"]),
    )
    .await;
    run(
        "tsc (a typed caller, against the declarations)",
        command("node", &js).args([
            "node_modules/typescript/bin/tsc",
            "-p",
            "test/tsconfig.json",
        ]),
    )
    .await;
    let mut files: Vec<String> = std::fs::read_dir(js.join("test"))
        .expect("tests")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".test.mjs"))
        .map(|n| format!("test/{n}"))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f == "test/openai.test.mjs"));
    let output = run(
        "node --test",
        command("node", &js)
            .args(["--test", "--test-reporter=spec"])
            .args(&files)
            .envs(platform.vars()),
    )
    .await;
    assert!(output.contains("ℹ fail 0"), "{}", tail(&output));
    assert!(
        output.contains("ℹ skipped 0"),
        "every test ran:\n{}",
        tail(&output)
    );
    let _ = std::fs::remove_dir_all(scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packages_install_and_run_product_md_as_written_against_up_sh() {
    let (python, wheelhouse) = python_tools();
    let platform = UpSh::start().await;
    let key = chat_key(&platform.admin).await;
    let scratch = scratch("packages");
    let sdk = repo().join("sdks/python");

    // Python: `pip install ./sdks/python` into a clean virtualenv, offline from the cached wheels.
    let venv = scratch.join("venv");
    run(
        "python -m venv",
        command(&python, &scratch).args(["-m", "venv"]).arg(&venv),
    )
    .await;
    run(
        "pip install ./sdks/python",
        command(venv.join("bin/python"), &scratch)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-index",
                "--find-links",
            ])
            .arg(&wheelhouse)
            .arg(&sdk),
    )
    .await;
    let snippet = product_snippet(&sdk.join("README.md"));
    assert_as_in_product_md(&snippet);
    let file = scratch.join("snippet.py");
    std::fs::write(&file, snippet.replace("YOUR_API_KEY", &key)).expect("snippet");
    let printed = run(
        "PRODUCT.md's Python snippet",
        command(venv.join("bin/python"), &scratch)
            .arg(&file)
            .env("AIHUB_BASE_URL", &platform.base_url)
            .env_remove("PYTHONPATH"),
    )
    .await;
    assert_eq!(printed_text(&printed), GREETING, "{printed}");

    // `python -m build` makes a wheel (and an sdist), typed.
    let dist = scratch.join("dist");
    run(
        "python -m build",
        command(&python, &scratch)
            .args(["-m", "build", "--outdir"])
            .arg(&dist)
            .arg(&sdk)
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", &wheelhouse),
    )
    .await;
    let listing = run(
        "the wheel's contents",
        command(&python, &dist).args([
            "-c",
            "import glob, zipfile; w = zipfile.ZipFile(glob.glob('ai_hub_python-*.whl')[0]); \
             print('\\n'.join(w.namelist())); \
             print([l for l in w.read([n for n in w.namelist() if n.endswith('METADATA')][0]).decode().splitlines() if l.startswith('Name:')][0])",
        ]),
    )
    .await;
    for expected in [
        "ai_hub/py.typed",
        "ai_hub/_models.py",
        "Name: ai-hub-python",
    ] {
        assert!(
            listing.contains(expected),
            "{expected} not in the wheel:\n{listing}"
        );
    }
    assert!(std::fs::read_dir(&dist)
        .expect("dist")
        .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tar.gz"))));

    // JavaScript: `npm pack`, then `npm install` of the tarball into a new project, offline.
    let js = javascript_checkout(&scratch);
    let packed = run(
        "npm pack",
        command("npm", &js)
            .args(["pack", "--silent", "--pack-destination"])
            .arg(&scratch),
    )
    .await;
    let tarball = scratch.join(packed.lines().last().expect("the tarball's name").trim());
    let project = scratch.join("project");
    std::fs::create_dir_all(&project).expect("project");
    std::fs::write(
        project.join("package.json"),
        json!({"name": "snippet", "private": true, "type": "module"}).to_string(),
    )
    .expect("package.json");
    run(
        "npm install the tarball",
        command("npm", &project)
            .args([
                "install",
                "--offline",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .arg(&tarball),
    )
    .await;
    let installed = project.join("node_modules/@ai-hub/javascript");
    for file in [
        "dist/index.js",
        "dist/index.d.ts",
        "dist/models.d.ts",
        "package.json",
    ] {
        assert!(
            installed.join(file).is_file(),
            "{file} is not in the package"
        );
    }
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(installed.join("package.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(
        manifest.get("dependencies"),
        None,
        "no runtime dependencies"
    );
    let snippet = product_snippet(&repo().join("sdks/javascript/README.md"));
    assert_as_in_product_md(&snippet);
    std::fs::write(
        project.join("snippet.mjs"),
        snippet.replace("YOUR_API_KEY", &key),
    )
    .expect("snippet");
    let printed = run(
        "PRODUCT.md's JavaScript snippet",
        command("node", &project)
            .arg("snippet.mjs")
            .env("AIHUB_BASE_URL", &platform.base_url),
    )
    .await;
    assert_eq!(printed_text(&printed), GREETING, "{printed}");
    let _ = std::fs::remove_dir_all(scratch);
}
