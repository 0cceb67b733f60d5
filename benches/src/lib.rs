//! Small helpers shared by the benchmark binaries.

use std::time::Duration;

/// The allocator the `aihub` binary runs with (`aihub/src/main.rs`): the platform code these
/// binaries run in process allocates as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// p50, p99 and max of a set of durations, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99), at(1.0))
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}")
}

/// The `aihub` binary built beside the running benchmark (`target/release/aihub`).
pub fn aihub_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("benchmark exe");
    let binary = exe.parent().expect("target dir").join("aihub");
    assert!(
        binary.is_file(),
        "{} is missing: cargo build --release -p aihub -p benches",
        binary.display()
    );
    binary
}

/// A free local port (bound and released; good enough for a benchmark).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `aihub <role>` against the database, topic and broker of `config`, with `extra`
/// variables, logging to `log`. The child inherits this process's environment, so
/// `AIHUB_*` settings given to the benchmark reach it too.
pub fn spawn_aihub(
    role: &str,
    config: &platform::Config,
    listen: Option<u16>,
    extra: &[(&str, String)],
    log: &std::path::Path,
) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("log file");
    let mut command = tokio::process::Command::new(aihub_binary());
    for (name, value) in config.connection_vars() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .arg(role)
        .env("AIHUB_TOPIC", &config.topic)
        .env("AIHUB_CONSUMER_GROUP_PREFIX", &config.consumer_group_prefix)
        .env(
            "AIHUB_ADMIN_TOKEN",
            config.admin_token.as_deref().unwrap_or_default(),
        )
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true);
    if let Some(port) = listen {
        command.env("AIHUB_LISTEN", format!("127.0.0.1:{port}"));
    }
    for (name, value) in extra {
        command.env(name, value);
    }
    command.spawn().expect("aihub starts")
}

/// Waits until `GET {base}/healthz` answers 200.
pub async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not become healthy");
}

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident memory of a process, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    proc_status(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The soft limit on open files of a process.
pub fn fd_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU time (user + system) a process used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A chat usage event (`chat.completion.succeeded`) of organization `org`: the platform's most
/// frequent event, which the usage and audit projections both write.
pub fn usage_event(org: uuid::Uuid, i: usize) -> events::EventEnvelope {
    use events::chat::{Attempt, ChatCall, ChatCompletionSucceeded};
    use events::{Actor, EventEnvelope, EventPayload};
    let payload = EventPayload::ChatCompletionSucceeded(ChatCompletionSucceeded {
        call: ChatCall {
            request_id: format!("bench-{i}"),
            api_key_id: None,
            team_id: None,
            user_id: None,
            model: "bench".into(),
            streamed: false,
            attempts: vec![Attempt {
                provider: "openrouter".into(),
                upstream_model: "bench/model".into(),
                outcome: "ok".into(),
                latency_ms: 5,
            }],
            latency_ms: 5,
        },
        provider: "openrouter".into(),
        upstream_model: "bench/model".into(),
        prompt_tokens: 6,
        completion_tokens: 4,
        total_tokens: 10,
        cost_micros: 10,
        time_to_first_token_ms: None,
        client_disconnected: false,
        usage_estimated: false,
    });
    EventEnvelope::new(
        payload,
        Some(org),
        events::StreamId::chat(uuid::Uuid::now_v7()),
        1,
        Actor::system(),
        format!("bench-{i}"),
    )
}

/// Writes the events straight to the test's topic, as the relay would (same settings, key and
/// headers), and waits until the broker has them all.
pub async fn preload(env: &e2e::Env, events: impl Iterator<Item = events::EventEnvelope>) {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{FutureProducer, Producer};
    use rdkafka::util::Timeout;
    let producer: FutureProducer = events::kafka::producer_config(&env.config.kafka)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for event in events {
        let payload = event.encode();
        let key = event.partition_key();
        loop {
            let record = rdkafka::producer::FutureRecord::to(&env.config.topic)
                .key(&key)
                .payload(&payload)
                .headers(events::kafka::cloudevents_headers(&event))
                .timestamp(event.occurred_at.timestamp_millis());
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("producing: {e}"),
            }
        }
        if deliveries.len() >= 100_000 {
            for delivery in futures::future::join_all(deliveries.drain(..)).await {
                delivery.expect("delivered").expect("acknowledged");
            }
        }
    }
    for delivery in futures::future::join_all(deliveries).await {
        delivery.expect("delivered").expect("acknowledged");
    }
    producer
        .flush(Timeout::After(Duration::from_secs(60)))
        .expect("flush");
}
