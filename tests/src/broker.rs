//! Apache Kafka brokers of a test's own, for tests that stop, kill and restart brokers without
//! disturbing the shared one: one node (`Broker`) or three (`Cluster`). Both run through the
//! scripts a person would use (`infra/local/kafka.sh`, `infra/local/cluster.sh`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use events::kafka::KafkaConnection;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/local")
        .join(name)
}

/// Runs one of our infra scripts to the end and returns what it printed.
pub fn run_script(name: &str, args: &[&str]) -> String {
    let output = Command::new(script(name))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(output.status.success(), "{name} {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The classpath of Kafka's broker, tools and Java client (fetched once by `kafka.sh`).
pub fn kafka_classpath() -> String {
    let file = run_script("kafka.sh", &["classpath"]);
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {file}: {e}"))
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `count` consecutive free ports, starting at the returned one, below the kernel's ephemeral
/// range: a node stopped and started again must find its port still free, and while it is down
/// an outgoing connection (any client on the machine) may take an ephemeral port as its own end
/// (CI saw a restarted node fail to bind so).
fn free_ports(count: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(count));
    for _ in 0..200 {
        let base = if high > low {
            low + (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16
        } else {
            free_port()
        };
        if base > u16::MAX - count {
            continue;
        }
        if (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// A directory whose name marks the test's own brokers, so test.sh can clean up after a
/// failed test (`pkill -f aihub-e2e-kafka`).
fn broker_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aihub-e2e-kafka-{port}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("broker dir");
    dir
}

/// Waits until `port` accepts connections (`listening`) or refuses them (`!listening`).
async fn wait_port(port: u16, listening: bool, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
        != listening
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} did not {} within {limit:?}",
            if listening { "open" } else { "close" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// One KRaft node (broker and controller) on free ports.
pub struct Broker {
    pub port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub async fn start() -> Self {
        let port = free_ports(2);
        let mut broker = Self {
            port,
            controller_port: port + 1,
            dir: broker_dir(port),
            child: None,
        };
        broker.resume().await;
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same ports and the same storage.
    pub async fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("kafka.log"))
            .expect("log file");
        let dir = self.dir.to_string_lossy().into_owned();
        let voters = format!("1@127.0.0.1:{}", self.controller_port);
        let child = Command::new(script("kafka.sh"))
            .args([
                "run",
                &dir,
                "1",
                &self.port.to_string(),
                &self.controller_port.to_string(),
                &voters,
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting kafka.sh");
        self.child = Some(child);
        wait_port(self.port, true, Duration::from_secs(120)).await;
    }

    /// Kills the broker with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker cleanly (SIGTERM: it leaves, flushing its logs) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-TERM");
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // When a test fails, its AI Hub's Kafka clients still close against this broker while the
        // runtime unwinds; killing it first would leave them waiting. test.sh removes leftovers.
        if std::thread::panicking() {
            return;
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three KRaft nodes started by `infra/local/cluster.sh`.
pub struct Cluster {
    base: u16,
    dir: PathBuf,
}

impl Cluster {
    pub async fn start() -> Self {
        let base = free_ports(6);
        let dir = broker_dir(base);
        let (dir_arg, base_arg) = (dir.to_string_lossy().into_owned(), base.to_string());
        tokio::task::spawn_blocking(move || {
            run_script("cluster.sh", &["start", &dir_arg, &base_arg])
        })
        .await
        .expect("cluster.sh start");
        Self { base, dir }
    }

    pub fn bootstrap(&self) -> String {
        (1..=3)
            .map(|n| format!("127.0.0.1:{}", self.node_port(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_port(&self, node: i32) -> u16 {
        self.base + 2 * (node as u16 - 1)
    }

    fn pid(&self, node: i32) -> u32 {
        let file = self.dir.join(format!("node-{node}/pid"));
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", file.display()))
    }

    /// Kills node `node` with SIGKILL and waits until it is gone.
    pub async fn kill(&self, node: i32) {
        let pid = self.pid(node);
        signal(pid, "-KILL");
        wait_port(self.node_port(node), false, Duration::from_secs(30)).await;
    }

    /// Starts a stopped or killed node again, on its old storage.
    pub async fn restart(&self, node: i32) {
        let args = [
            self.dir.to_string_lossy().into_owned(),
            self.base.to_string(),
            node.to_string(),
        ];
        tokio::task::spawn_blocking(move || {
            run_script("cluster.sh", &["node", &args[0], &args[1], &args[2]])
        })
        .await
        .expect("cluster.sh node");
    }

    /// The leader node of every partition of `topic`, by partition.
    pub async fn leaders(&self, topic: &str) -> Vec<(i32, i32)> {
        let (brokers, topic) = (self.bootstrap(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = KafkaConnection::plaintext(brokers)
                .client_config()
                .create()
                .expect("metadata client");
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .expect("metadata");
            metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| (p.id(), p.leader())))
                .collect()
        })
        .await
        .expect("leaders")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let dir = self.dir.to_string_lossy().into_owned();
        let _ = Command::new(script("cluster.sh"))
            .args(["stop", &dir])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
