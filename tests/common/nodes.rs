//! Runs `faust-node` processes against one broker: each with its own store and HTTP port,
//! stoppable with SIGTERM or SIGKILL, observed through its `/metrics`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use faust::config::Config;

/// One node process.
pub struct NodeProc {
    child: Child,
    /// Where its `/metrics` is served.
    pub addr: SocketAddr,
    /// Its JSON log.
    pub log: PathBuf,
}

/// A group of node processes sharing one config file.
pub struct Nodes {
    dir: tempfile::TempDir,
    config: PathBuf,
    nodes: Vec<Option<NodeProc>>,
    /// Another program than `faust-node` (given the config in `FAUST_TEST_NODE_CONFIG`).
    program: Option<(PathBuf, Vec<String>)>,
}

/// The variable that gives a node program started by [`Nodes::with_program`] its config file.
pub const NODE_CONFIG_VAR: &str = "FAUST_TEST_NODE_CONFIG";

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nodes {
    /// Writes `config` (stores and ports are set per node) for the nodes to come.
    pub fn new(config: &Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
        Nodes {
            dir,
            config: path,
            nodes: Vec::new(),
            program: None,
        }
    }

    /// Nodes that run `program args...` instead of `faust-node worker --config FILE`; the config
    /// file's path is in [`NODE_CONFIG_VAR`]. For apps whose agents `faust-node` does not run
    /// (a test binary re-running itself as a node).
    pub fn with_program(config: &Config, program: PathBuf, args: &[&str]) -> Self {
        let mut nodes = Self::new(config);
        nodes.program = Some((program, args.iter().map(|a| a.to_string()).collect()));
        nodes
    }

    /// Starts one more node; returns its index.
    pub fn start(&mut self) -> usize {
        let i = self.nodes.len();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = self.dir.path().join(format!("node-{i}.log"));
        let mut command = match &self.program {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            None => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_faust-node"));
                c.args(["worker", "--config"]).arg(&self.config);
                c
            }
        };
        let child = command
            .env(NODE_CONFIG_VAR, &self.config)
            .env("FAUST__WEB__BIND", addr.to_string())
            .env(
                "FAUST__STORE__PATH",
                self.dir.path().join(format!("store-{i}")),
            )
            .env("FAUST__LOG__FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.nodes.push(Some(NodeProc { child, addr, log }));
        i
    }

    fn node(&self, i: usize) -> &NodeProc {
        self.nodes[i].as_ref().expect("node stopped")
    }

    /// How many nodes were started (stopped ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The node's `/metrics` page, if it answers.
    pub fn metrics(&self, i: usize) -> Option<String> {
        super::http_get(self.node(i).addr, "/metrics")
    }

    /// The sum of every sample whose line starts with `prefix` (0 when unreachable).
    pub fn sum(&self, i: usize, prefix: &str) -> f64 {
        self.metrics(i).map_or(0.0, |body| {
            body.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
    }

    /// Partitions the node holds as active.
    pub fn active(&self, i: usize) -> i64 {
        self.sum(i, "faust_assigned_partitions{role=\"active\"}") as i64
    }

    /// Events the node's agents finished.
    pub fn events(&self, i: usize) -> u64 {
        self.sum(i, "faust_events_total{") as u64
    }

    /// SIGKILL: the node dies without committing or leaving the group.
    pub fn kill(&mut self, i: usize) {
        let mut node = self.nodes[i].take().expect("node running");
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status (panics after `bound`).
    pub fn terminate(&mut self, i: usize, bound: Duration) -> ExitStatus {
        let mut node = self.nodes[i].take().expect("node running");
        let ok = Command::new("kill")
            .args(["-TERM", &node.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let start = Instant::now();
        loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > bound {
                let _ = node.child.kill();
                panic!(
                    "node {i} did not exit within {bound:?} of SIGTERM:\n{}",
                    log(&node.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `bound`) for the node to exit on its own; its exit status.
    pub fn wait_exit(&mut self, i: usize, bound: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            let node = self.nodes[i].as_mut().expect("node running");
            if let Some(status) = node.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < bound,
                "node {i} still runs after {bound:?}:\n{}",
                log(&node.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node's log so far.
    pub fn log(&self, i: usize) -> String {
        log(&self.node(i).log)
    }
}

fn log(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

/// The phases of [`kill_one_of_two`], each feeding the input topic.
pub struct KillPlan<'a> {
    /// Fed to both nodes.
    pub before: Box<dyn FnOnce() + 'a>,
    /// Fed after node b was killed.
    pub after: Box<dyn FnOnce() + 'a>,
    /// Fed once node a holds every partition (moving stream time past everything, say).
    pub last: Box<dyn FnOnce() + 'a>,
}

/// Two node processes share the partitions of `kafka.topic` in group `app`; `plan.before`
/// feeds them; node b is SIGKILLed once it has processed 2,000 events and every partition has a
/// commit; `plan.after` feeds on; once node a holds every partition, `plan.last`; returns node
/// a's index when the group has committed every record of the topic.
pub fn kill_one_of_two(
    nodes: &mut Nodes,
    kafka: &super::Kafka,
    app: &str,
    plan: KillPlan<'_>,
) -> usize {
    use super::{wait_for, PARTITIONS};
    let wait = Duration::from_secs(120);
    let (a, b) = (nodes.start(), nodes.start());
    wait_for("both nodes to hold partitions", wait, || {
        let (x, y) = (nodes.active(a), nodes.active(b));
        x + y == i64::from(PARTITIONS) && x >= 1 && y >= 1
    });
    (plan.before)();
    wait_for("node b to commit", wait, || {
        let committed = kafka.committed(app);
        nodes.events(b) > 2_000 && committed.len() == PARTITIONS as usize
    });
    nodes.kill(b);
    (plan.after)();
    wait_for("node a to take over every partition", wait, || {
        nodes.active(a) == i64::from(PARTITIONS)
    });
    (plan.last)();
    let total: i64 = kafka.ends(&kafka.topic).values().sum();
    wait_for("every event committed", wait, || {
        kafka.committed(app).values().sum::<i64>() == total
    });
    a
}
