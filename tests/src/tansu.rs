//! A Tansu broker of a test's own, for tests that stop and restart the broker without
//! disturbing the shared one.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Broker {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("tansu"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .join(".cargo/bin/tansu")
    })
}

impl Broker {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir =
            std::env::temp_dir().join(format!("aihub-e2e-tansu-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.resume().await;
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and the same storage.
    pub async fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("log file");
        let child = Command::new(binary())
            .arg("broker")
            // Marks the test's own brokers, so test.sh can clean up after a failed test.
            .arg("--cluster-id")
            .arg("aihub-e2e")
            .arg("--storage-engine")
            // Tansu reads the SQLite path relative to its working directory.
            .arg("sqlite://tansu.db")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tansu did not listen on {}", self.port);
    }

    /// Kills the broker, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
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
