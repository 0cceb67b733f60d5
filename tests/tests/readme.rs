//! The README's first session runs as written: every shell block marked `<!-- first-session -->`
//! is split into its commands, and each runs with bash against a platform of this test's own.
//! The README reads the admin token from `AIHUB_ADMIN_TOKEN` and the address from
//! `AIHUB_LISTEN`, the variables `up.sh` uses, so nothing in it is rewritten.

use std::path::Path;
use std::time::Duration;

use e2e::Env;
use uuid::Uuid;

const MARKER: &str = "<!-- first-session";

/// The bodies of the ```bash blocks that follow a first-session marker, in order.
fn first_session_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with(MARKER) {
            continue;
        }
        let fence = lines.by_ref().find(|l| !l.trim().is_empty());
        assert_eq!(
            fence.map(str::trim),
            Some("```bash"),
            "a first-session marker must stand right before a ```bash block"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push(body.join("\n"));
    }
    blocks
}

/// Whether bash reads `text` as complete commands (no open quote, no trailing `\`).
fn complete(text: &str) -> bool {
    !text.trim_end().ends_with('\\')
        && std::process::Command::new("bash")
            .args(["-n", "-c", text])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("bash runs")
            .success()
}

/// A block's commands: comment and blank lines between commands dropped, continuation lines and
/// multi-line quotes kept with their command.
fn commands(block: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        let starts_command = pending.is_empty();
        if starts_command && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        if !starts_command {
            pending.push('\n');
        }
        pending.push_str(line);
        if complete(&pending) {
            commands.push(std::mem::take(&mut pending));
        }
    }
    assert!(pending.is_empty(), "an unfinished command: {pending}");
    commands
}

/// The variables a command assigns at its start (`ORG=$(…)`), which later commands use.
fn assigned(command: &str) -> Option<&str> {
    let (name, _) = command.split_once('=')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')).then_some(name)
}

/// Runs one command in `dir` after the variables earlier ones assigned (kept in `state`), with
/// `curl` failing on an HTTP error and a pipeline failing when any part does. Returns whether it
/// succeeded, and what it printed.
async fn run(command: &str, dir: &Path, env: &[(&str, String)]) -> (bool, String) {
    let mut script = String::from(
        "set -eo pipefail\n\
         curl() { command curl --fail-with-body --show-error \"$@\"; }\n\
         [ -f state.sh ] && source state.sh\n",
    );
    script.push_str(command);
    script.push('\n');
    if let Some(name) = assigned(command) {
        script.push_str(&format!(
            "if [ -z \"${name}\" ] || [ \"${name}\" = null ]; then echo '{name} is empty' >&2; exit 1; fi\n\
             declare -p {name} >> state.sh\n"
        ));
    }
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command finishes within a minute")
    .expect("bash runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn the_first_session_is_split_into_whole_commands() {
    let block =
        "A=1\n# a comment\n\ncurl -s $A \\\n  -d '{\"x\":\n 1}' | jq .\nB=$(echo \"two\nlines\")";
    assert_eq!(
        commands(block),
        vec![
            "A=1",
            "curl -s $A \\\n  -d '{\"x\":\n 1}' | jq .",
            "B=$(echo \"two\nlines\")"
        ]
    );
    assert_eq!(assigned("ORG=$(curl)"), Some("ORG"));
    assert_eq!(assigned("curl -d 'a=b'"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_session_runs_command_by_command() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let blocks = first_session_blocks(&readme);
    assert!(blocks.len() >= 2, "no first-session blocks in the README");
    let session: Vec<String> = blocks.iter().flat_map(|b| commands(b)).collect();

    let env = Env::new().await;
    let (app, api) = env.app().await;
    let dir = std::env::temp_dir().join(format!("aihub-readme-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("work dir");
    let vars = [
        ("AIHUB_ADMIN_TOKEN", api.token.clone()),
        ("AIHUB_LISTEN", app.addr.expect("serves HTTP").to_string()),
    ];

    let mut transcript = String::new();
    for command in &session {
        let (ok, printed) = run(command, &dir, &vars).await;
        transcript.push_str(&format!("$ {command}\n{printed}\n"));
        assert!(
            ok,
            "a README command failed:\n$ {command}\n{printed}\n\nthe session so far:\n{transcript}"
        );
    }
    println!("{transcript}");
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}
