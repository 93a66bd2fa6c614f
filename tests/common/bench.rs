//! Running the `faust-bench` tool from tests: its subcommands, and groups of `faust-bench node`
//! processes (the benchmark's agents run as real nodes) on one app, with its true counts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{committed, unique};

/// Runs `faust-bench` with `args` to completion.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faust-bench"))
        .args(args)
        .output()
        .expect("running faust-bench")
}

/// Everything a finished command printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A directory kept when the test fails (the node logs say why), removed when it passes.
pub struct Kept(PathBuf);

impl Kept {
    /// A new temporary directory.
    pub fn new() -> Self {
        Kept(tempfile::tempdir().unwrap().keep())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One app of `faust-bench node` processes: its names, its config, and its true counts.
pub struct BenchApp {
    pub dir: Kept,
    pub broker: String,
    pub app: String,
    pub input: String,
    pub output: String,
    /// `a` (a count per URL, each new count sent) or `b` (a windowed count).
    pub workload: &'static str,
    pub table: &'static str,
    /// `exactly_once` or `at_least_once`.
    pub guarantee: &'static str,
    /// The group's session timeout.
    pub session_timeout: &'static str,
    /// Where the nodes' stores go (default: the app's directory).
    pub store_root: Option<PathBuf>,
    /// Records preloaded so far, each partition's flush record included.
    pub total: i64,
    /// The same while a paced preload runs (see [`BenchApp::feed`]).
    feeding: std::sync::atomic::AtomicI64,
}

impl BenchApp {
    /// An app with fresh names on `broker`; its topics are created by its first node.
    pub fn new(
        broker: &str,
        prefix: &str,
        workload: &'static str,
        guarantee: &'static str,
    ) -> Self {
        let dir = Kept::new();
        eprintln!("{prefix}: logs in {}", dir.path().display());
        BenchApp {
            dir,
            broker: broker.to_owned(),
            app: unique(prefix),
            input: unique(&format!("{prefix}-in")),
            output: unique(&format!("{prefix}-out")),
            workload,
            table: match workload {
                "a" => "page_counts",
                _ => "clicks_per_window",
            },
            guarantee,
            session_timeout: "6s",
            total: 0,
            store_root: None,
            feeding: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Starts node `n` (its store and config kept across restarts, so a restarted node is the
    /// same node: same id, same transactional id), with `env` added.
    pub fn start_node(&self, n: usize, env: &[(&str, &str)]) -> BenchNode {
        let dir = self.dir.path();
        let config = dir.join(format!("node{n}.toml"));
        let (input, output) = (&self.input, &self.output);
        std::fs::write(
            &config,
            format!(
                "[app]\nid = \"{app}\"\n[broker]\nbootstrap = \"{broker}\"\n\
                 session_timeout = \"{session}\"\n\
                 [store]\npath = \"{store}\"\n[web]\nbind = \"127.0.0.1:0\"\n[processing]\n\
                 commit_interval = \"200ms\"\nguarantee = \"{guarantee}\"\n\
                 [topics.{input}]\npartitions = 4\nkey_codec = \"string\"\nvalue_codec = \"json\"\n\
                 [topics.{output}]\npartitions = 4\nkey_codec = \"string\"\nvalue_codec = \"json\"\n\
                 [tables.{table}]\nstandby_replicas = 1\n\
                 [log]\nlevel = \"info,faust_actors=debug,librdkafka=warn,rdkafka=warn\"\n\
                 {sinks}",
                app = self.app,
                broker = self.broker,
                session = self.session_timeout,
                store = self
                    .store_root
                    .as_deref()
                    .unwrap_or(dir)
                    .join(format!("store{n}"))
                    .display(),
                guarantee = self.guarantee,
                table = self.table,
                sinks = match self.workload {
                    "a" => format!("[agents.page_views]\nsinks = [\"{output}\"]\n"),
                    _ => String::new(),
                },
            ),
        )
        .unwrap();
        // Appended: a restarted node's log follows its earlier life's.
        let log = dir.join(format!("node{n}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faust-bench"));
        cmd.args(["node", self.workload, "--input", input, "--output", output])
            .args(["--", "worker", "--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        cmd.envs(env.iter().copied());
        BenchNode {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    /// Writes `records` page views into the (existing) input topic and the true counts.
    pub fn preload(&mut self, records: u64) {
        self.feed(records, 0);
        self.fed();
    }

    /// [`BenchApp::preload`] at `rate` records per second (0: at once), from `&self`, for a
    /// thread that feeds the nodes while the test injects faults; [`BenchApp::fed`] then
    /// takes the total.
    pub fn feed(&self, records: u64, rate: u64) {
        let rate = rate.to_string();
        let out = bench(&[
            "preload",
            "--rate",
            &rate,
            "--broker",
            &self.broker,
            "--topic",
            &self.input,
            "--existing",
            "--records",
            &records.to_string(),
            "--truth",
            self.truth().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "preload failed: {}", text(&out));
        // One flush record per partition follows the page views.
        let total = records as i64 + 4;
        self.feeding
            .store(total, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes the total of a finished [`BenchApp::feed`].
    pub fn fed(&mut self) {
        self.total = self.feeding.load(std::sync::atomic::Ordering::SeqCst);
    }

    fn truth(&self) -> PathBuf {
        self.dir.path().join("truth.json")
    }

    /// Input records whose offsets the group committed.
    pub fn progress(&self) -> i64 {
        committed(&self.broker, &self.app, &self.input)
            .values()
            .sum()
    }

    /// Waits until the group committed every preloaded record.
    pub fn wait_all_committed(&self, timeout: Duration) {
        let start = Instant::now();
        while self.progress() < self.total {
            assert!(
                start.elapsed() < timeout,
                "after {timeout:?}, {} of {} records committed: {:?}",
                self.progress(),
                self.total,
                committed(&self.broker, &self.app, &self.input)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `faust-bench verify` of `topic` against the true counts (waiting up to 20 s for it to
    /// become complete).
    pub fn verify(&self, topic: &str, extra: &[&str]) -> Output {
        let truth = self.truth();
        let mut args = vec!["verify", "--broker", &self.broker, "--topic", topic];
        args.extend_from_slice(&["--workload", self.workload, "--wait", "20"]);
        args.extend_from_slice(&["--truth", truth.to_str().unwrap()]);
        args.extend_from_slice(extra);
        bench(&args)
    }

    /// Checks the guarantee's promise on the table's changelog and on the output: exactly
    /// once, the table exact and one output per input; at least once, no count below the truth.
    pub fn assert_outcome(&self) {
        self.assert_table();
        self.assert_output();
    }

    /// The guarantee's promise on the output (see [`BenchApp::assert_outcome`]).
    pub fn assert_output(&self) {
        let exactly = self.guarantee == "exactly_once";
        let strict: &[&str] = if exactly {
            &["--no-duplicates"]
        } else {
            &["--at-least"]
        };
        let out = self.verify(&self.output, strict);
        assert!(
            out.status.success(),
            "the output breaks {}: {}",
            self.guarantee,
            text(&out)
        );
        if exactly && self.workload == "a" {
            let want = format!("({} output records)", self.total);
            assert!(text(&out).contains(&want), "want {want}: {}", text(&out));
        }
    }

    /// The guarantee's promise on the table, read back from its changelog.
    pub fn assert_table(&self) {
        let exactly = self.guarantee == "exactly_once";
        let changelog = format!("{}-{}-changelog", self.app, self.table);
        let mut args = vec!["--changelog"];
        if !exactly {
            args.push("--at-least");
        }
        let out = self.verify(&changelog, &args);
        assert!(
            out.status.success(),
            "the table in its changelog breaks {}: {}",
            self.guarantee,
            text(&out)
        );
    }
}

/// One `faust-bench node` process; killed when dropped, so a failed run leaves none behind.
pub struct BenchNode {
    pub child: Child,
    log: PathBuf,
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BenchNode {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log that are not debug lines.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `GET path` on the node's web server (its port is in the last start-up line).
    pub fn get(&self, path: &str) -> Option<String> {
        let log = self.log();
        let at = log.rfind("listening on: ")? + "listening on: ".len();
        let addr: String = log[at..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        super::http_get(addr.parse().ok()?, path)
    }

    /// The node's `/metrics` page.
    pub fn metrics(&self) -> Option<String> {
        self.get("/metrics")
    }

    /// The value of one sample (name with labels) on its `/metrics` page; 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics().unwrap_or_default(), name)
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then asserts the node exits 0 within `bound`.
    pub fn terminate_cleanly(&mut self, name: &str, bound: Duration) {
        self.signal("-TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{name} did not stop cleanly ({status}):\n{}",
                    self.tail(40)
                );
                return;
            }
            assert!(
                start.elapsed() < bound,
                "{name} did not exit within {bound:?} of SIGTERM:\n{}",
                self.tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The value of the sample `name` (with its labels) on a Prometheus page; 0 when absent.
pub fn metric(page: &str, name: &str) -> f64 {
    super::sample(page, name).unwrap_or(0.0)
}
