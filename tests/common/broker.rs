//! A broker of the test's own, started with `scripts/kafka` on free ports, for tests that stop
//! and start it (the shared broker of `scripts/test` serves every other test at once).

use std::path::PathBuf;
use std::process::Command;

use super::nodes::free_port;

/// A single-node Apache Kafka owned by one test; stopped and deleted when dropped.
pub struct OwnBroker {
    port: u16,
    dir: PathBuf,
    _keep: tempfile::TempDir,
}

impl OwnBroker {
    /// Starts one (a few seconds: the jars are those `scripts/kafka` cached for the shared one).
    pub fn start() -> Self {
        let keep = tempfile::tempdir().unwrap();
        // The controller listens on the next port: both must be free.
        let port = loop {
            let p = free_port();
            if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        let broker = OwnBroker {
            port,
            dir: keep.path().join("kafka"),
            _keep: keep,
        };
        broker.run("start");
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, as an operator or a rolling restart would), keeping its data.
    pub fn stop(&self) {
        self.run("stop");
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        self.run("start");
    }

    fn run(&self, what: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka");
        let out = Command::new(script)
            .arg(what)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_DIR", &self.dir)
            .output()
            .expect("running scripts/kafka");
        assert!(
            out.status.success(),
            "scripts/kafka {what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.run("stop");
    }
}
