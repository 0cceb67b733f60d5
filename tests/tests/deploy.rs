//! The deployment artifacts (issue 15), checked with the tools their users run: `docker-compose
//! config` on infra/docker/compose.yaml, `helm lint` and `helm template | kubeconform -strict` on
//! infra/helm/aihub, `promtool check` on infra/prometheus. infra/local/test.sh installs the tools
//! (`ensure_deploy_tools`) and names them in DOCKER_COMPOSE, HELM, KUBECONFORM, KUBE_SCHEMAS and
//! PROMTOOL; without them these tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

fn tool(variable: &str, fallback: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| fallback.to_string())
}

/// Runs a command in the repository; (succeeded, stdout, stderr).
fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.current_dir(root()).output().unwrap_or_else(|e| {
        panic!(
            "{command:?} could not run ({e}): run infra/local/test.sh, which installs it (ensure_deploy_tools)"
        )
    });
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn compose() -> Command {
    let mut command = Command::new(tool("DOCKER_COMPOSE", "docker-compose"));
    command.args(["-f", "infra/docker/compose.yaml"]);
    command
}

#[test]
fn the_compose_file_validates_and_runs_every_role_the_issue_names() {
    // Without GDPR's secret the file refuses to start, naming it.
    let (ok, _, err) = run(compose()
        .arg("config")
        .env("AIHUB_ADMIN_TOKEN", "t")
        .env_remove("AIHUB_PERSONAL_DATA_SECRET"));
    assert!(!ok && err.contains("AIHUB_PERSONAL_DATA_SECRET"), "{err}");
    let (ok, out, err) = run(compose()
        .arg("config")
        .env("AIHUB_ADMIN_TOKEN", "t")
        .env("AIHUB_PERSONAL_DATA_SECRET", SECRET));
    assert!(ok, "docker-compose config failed:\n{err}");
    let (ok, services, err) = run(compose()
        .args(["config", "--services"])
        .env("AIHUB_ADMIN_TOKEN", "t")
        .env("AIHUB_PERSONAL_DATA_SECRET", SECRET));
    assert!(ok, "{err}");
    let services: Vec<&str> = services.lines().collect();
    for wanted in [
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "postgres",
        "bootstrap",
        "command-api-1",
        "command-api-2",
        "read-api",
        "projectors-1",
        "projectors-2",
        "prometheus",
        "grafana",
        "webhook-receiver",
        "edge",
    ] {
        assert!(services.contains(&wanted), "no {wanted} in {services:?}");
    }
    // Three brokers in one KRaft quorum, and the topic replicated to all three.
    assert_eq!(
        out.matches("KAFKA_CONTROLLER_QUORUM_VOTERS: 1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093")
            .count(),
        3
    );
    assert!(
        out.contains("AIHUB_TOPIC_REPLICATION: '3'")
            || out.contains("AIHUB_TOPIC_REPLICATION: \"3\""),
        "{out}"
    );
    // Every AI Hub container has a read-only root filesystem.
    assert!(out.matches("read_only: true").count() >= 6, "{out}");
    // Without an admin token the file refuses to render: nobody runs it open by mistake.
    let (ok, _, err) = run(compose()
        .arg("config")
        .env("AIHUB_PERSONAL_DATA_SECRET", SECRET)
        .env_remove("AIHUB_ADMIN_TOKEN"));
    assert!(!ok, "rendered without AIHUB_ADMIN_TOKEN");
    assert!(err.contains("AIHUB_ADMIN_TOKEN"), "{err}");
}

fn helm() -> Command {
    Command::new(tool("HELM", "helm"))
}

fn kube_version() -> String {
    tool("KUBE_VERSION", "1.32.0")
}

/// `helm template` with these settings, validated by kubeconform against the Kubernetes schemas
/// (strict: an unknown field is an error) and the ServiceMonitor schema in the repository.
fn template_validates(settings: &[&str]) -> String {
    let mut command = helm();
    command.args([
        "template",
        "aihub",
        "infra/helm/aihub",
        "--kube-version",
        &kube_version(),
    ]);
    for setting in settings {
        command.args(["--set", setting]);
    }
    let (ok, manifests, err) = run(&mut command);
    assert!(ok, "helm template {settings:?} failed:\n{err}");
    let file = std::env::temp_dir().join(format!("aihub-helm-{}.yaml", uuid::Uuid::now_v7()));
    std::fs::write(&file, &manifests).expect("manifests");
    let schemas = tool("KUBE_SCHEMAS", "");
    assert!(
        !schemas.is_empty(),
        "KUBE_SCHEMAS is not set: run infra/local/test.sh (ensure_deploy_tools)"
    );
    let (ok, out, err) = run(Command::new(tool("KUBECONFORM", "kubeconform")).args([
        "-strict",
        "-summary",
        "-kubernetes-version",
        &kube_version(),
        "-schema-location",
        &format!("{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"),
        "-schema-location",
        "infra/helm/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        file.to_str().expect("path"),
    ]));
    let _ = std::fs::remove_file(&file);
    assert!(
        ok,
        "kubeconform refused helm template {settings:?}:\n{out}\n{err}"
    );
    assert!(out.contains("Invalid: 0, Errors: 0, Skipped: 0"), "{out}");
    manifests
}

#[test]
fn the_helm_chart_lints_and_renders_valid_kubernetes_objects() {
    let (ok, out, err) = run(helm().args([
        "lint",
        "--strict",
        "infra/helm/aihub",
        "--kube-version",
        &kube_version(),
        "--set",
        "database.url=postgres://aihub:secret@db:5432/aihub",
    ]));
    assert!(ok, "helm lint failed:\n{out}\n{err}");

    let manifests = template_validates(&["database.url=postgres://aihub:secret@db:5432/aihub"]);
    for kind in [
        "kind: Deployment",
        "kind: HorizontalPodAutoscaler",
        "kind: PodDisruptionBudget",
        "kind: Job",
        "kind: CronJob",
        "kind: ServiceMonitor",
        "kind: NetworkPolicy",
        "kind: Secret",
    ] {
        assert!(manifests.contains(kind), "no {kind}");
    }
    for role in ["command-api", "read-api", "projectors"] {
        assert!(
            manifests.contains(&format!("name: aihub-{role}\n")),
            "no Deployment for {role}"
        );
        assert!(
            manifests.contains(&format!("args: [\"{role}\"]")),
            "{role} does not run its role"
        );
    }
    // Projectors are not scaled on CPU past the partitions: only the stateless roles get an HPA.
    assert_eq!(
        manifests.matches("kind: HorizontalPodAutoscaler").count(),
        2
    );
    assert!(!manifests.contains("kind: Deployment\n    name: aihub-projectors\n  minReplicas"));
    assert!(manifests.contains("path: /readyz") && manifests.contains("path: /healthz"));
    assert!(manifests.contains("readOnlyRootFilesystem: true"));
    assert!(manifests.contains("runAsNonRoot: true"));
    assert!(manifests.contains("helm.sh/hook: pre-install,pre-upgrade"));
    assert!(manifests.contains("args: [\"backup\", \"--into\", \"/backups\", \"--keep\", \"14\"]"));

    // External, managed Kafka and Postgres with their CAs, an existing Secret, an Ingress.
    let managed = template_validates(&[
        "database.existingSecret=aihub-db",
        "database.caSecret=rds-ca",
        "kafka.securityProtocol=SASL_SSL",
        "kafka.saslMechanism=SCRAM-SHA-512",
        "kafka.saslUsername=aihub",
        "kafka.caSecret=kafka-ca",
        "secrets.existingSecret=aihub-secrets",
        "ingress.enabled=true",
        "ingress.tlsSecret=api-tls",
        "commandApi.autoscaling.enabled=false",
        "metrics.serviceMonitor.enabled=false",
        "networkPolicy.enabled=false",
        "backup.enabled=false",
    ]);
    assert!(managed.contains("kind: Ingress"));
    assert!(
        !managed.contains("kind: Secret"),
        "an existing Secret is used, none made"
    );
    assert!(managed.contains("KAFKA_SSL_CA_FILE") && managed.contains("AIHUB_DATABASE_CA_FILE"));
    assert!(managed.contains("KAFKA_SECURITY_PROTOCOL: \"SASL_SSL\""));

    // Without a database the chart says what is missing.
    let (ok, _, err) = run(helm().args([
        "template",
        "aihub",
        "infra/helm/aihub",
        "--kube-version",
        &kube_version(),
    ]));
    assert!(!ok);
    assert!(
        err.contains("database.url or database.existingSecret is required"),
        "{err}"
    );
}

#[test]
fn the_prometheus_rules_and_configuration_check() {
    let promtool = tool("PROMTOOL", "promtool");
    let (ok, out, err) =
        run(Command::new(&promtool).args(["check", "rules", "infra/prometheus/rules/aihub.yml"]));
    assert!(ok, "promtool check rules failed:\n{out}\n{err}");
    assert!(out.contains("SUCCESS"), "{out}");
    // The rules name only metrics a process serves: each metric family in the rules is
    // registered in the code.
    let rules =
        std::fs::read_to_string(root().join("infra/prometheus/rules/aihub.yml")).expect("rules");
    let code = std::fs::read_to_string(root().join("platform/src/metrics.rs")).expect("metrics");
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("aihub_"))
        .collect();
    names.sort();
    names.dedup();
    assert!(!names.is_empty());
    for name in names {
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        assert!(
            code.contains(&format!("\"{family}\"")),
            "{name} is in the rules but no process serves {family}"
        );
    }
    // Grafana's dashboard is JSON whose every query names a recorded series or a served metric.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("infra/grafana/dashboards/aihub-overview.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert!(expr.contains("aihub"), "{expr}");
        }
    }
}

#[test]
fn the_image_runs_as_non_root_with_a_health_check_on_readyz() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("USER 10001:10001"));
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/readyz"));
    assert!(dockerfile.contains("cargo build --release --locked -p aihub"));
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2,
        "two stages"
    );
    // The build's inputs exist where the Dockerfile copies them from, and the context leaves
    // out the build output.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

/// Every shell script of the repository parses (`bash -n`): a script that cannot start stops the
/// whole suite, or the platform's start, before any test says why.
#[test]
fn every_shell_script_parses() {
    let mut scripts = vec![root().join(".ci/run")];
    let mut dirs = vec![root().join("infra")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("infra") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    assert!(scripts.len() >= 8, "{scripts:?}");
    for script in scripts {
        let (ok, _, err) = run(Command::new("bash").arg("-n").arg(&script));
        assert!(ok, "{} does not parse:\n{err}", script.display());
    }
}
