//! Exactly once after a crash, on real Kafka (transactions and `read_committed` need it): three
//! `faust-bench node` processes, `processing.guarantee = "exactly_once"`, one standby per
//! partition, 200,000 page views with known counts. One node is SIGKILLed half-way, or (in the
//! other run) inside a transaction commit: between sending its offsets to the transaction and
//! committing it, held there by the `FAUST_FAULT_COMMIT_PAUSE_MS` fault injection. Afterwards:
//! - the output topic, read `read_committed`, holds each URL's counts only growing, none twice
//!   (workload A), or each window's final count exactly once (workload B, a windowed table);
//! - the table read back from its changelog (`read_committed`) equals the true counts: every
//!   URL's count, or every window's final value.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::bench::{bench, text};
use common::{committed, unique, wait_for, Kafka};

const RECORDS: u64 = 200_000;
/// The preload's records plus one flush record per partition.
const TOTAL: i64 = RECORDS as i64 + 4;

#[derive(Clone, Copy, PartialEq)]
enum Kill {
    HalfWay,
    InCommit,
}

/// `faust-bench verify` of `topic` (an output, or with `--changelog` a table's changelog)
/// against the true counts, waiting up to 20 s for it to become complete.
fn verify(broker: &str, topic: &str, workload: &str, truth: &Path, extra: &[&str]) -> Output {
    let truth = truth.to_str().unwrap();
    let mut args = vec!["verify", "--broker", broker, "--topic", topic];
    args.extend_from_slice(&["--workload", workload, "--truth", truth, "--wait", "20"]);
    args.extend_from_slice(extra);
    bench(&args)
}

/// Writes the page views into the nodes' (existing) input topic, and their true counts.
fn preload(broker: &str, input: &str, records: &str, truth: &Path) {
    let out = bench(&[
        "preload",
        "--broker",
        broker,
        "--topic",
        input,
        "--existing",
        "--records",
        records,
        "--truth",
        truth.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "preload failed: {}", text(&out));
}

struct Kept(PathBuf);

impl Kept {
    fn path(&self) -> &Path {
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

struct Node {
    child: Child,
    log: PathBuf,
}

impl Drop for Node {
    /// A failed run leaves no node behind (it would join the next run's broker).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The node's `/metrics` page (its port is in the web server's start-up line).
    fn metrics(&self) -> Option<String> {
        let log = self.log();
        let at = log.find("listening on: ")? + "listening on: ".len();
        let addr: String = log[at..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        let page = common::http_get(addr.parse().ok()?, "/metrics")?;
        Some(page)
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }
}

#[allow(clippy::too_many_arguments)]
fn start_node(
    dir: &Path,
    n: usize,
    broker: &str,
    app: &str,
    workload: &str,
    table: &str,
    input: &str,
    output: &str,
    env: &[(&str, &str)],
) -> Node {
    let config = dir.join(format!("node{n}.toml"));
    std::fs::write(
        &config,
        format!(
            "[app]\nid = \"{app}\"\n[broker]\nbootstrap = \"{broker}\"\nsession_timeout = \"6s\"\n\
             [store]\npath = \"{store}\"\n[web]\nbind = \"127.0.0.1:0\"\n[processing]\n\
             commit_interval = \"200ms\"\nguarantee = \"exactly_once\"\n\
             [topics.{input}]\npartitions = 4\nkey_codec = \"string\"\nvalue_codec = \"json\"\n\
             [topics.{output}]\npartitions = 4\nkey_codec = \"string\"\nvalue_codec = \"json\"\n\
             [tables.{table}]\nstandby_replicas = 1\n[log]\nlevel = \"info,faust_actors=debug,librdkafka=warn,rdkafka=warn\"\n\
             {sinks}",
            store = dir.join(format!("store{n}")).display(),
            sinks = match workload {
                "a" => format!("[agents.page_views]\nsinks = [\"{output}\"]\n"),
                _ => String::new(),
            },
        ),
    )
    .unwrap();
    let log = dir.join(format!("node{n}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faust-bench"));
    cmd.args(["node", workload, "--input", input, "--output", output, "--"])
        .args(["worker", "--config", config.to_str().unwrap()])
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    cmd.envs(env.iter().copied());
    Node {
        child: cmd.spawn().unwrap(),
        log,
    }
}

/// One crash run; panics with the verifier's words when anything differs.
fn crash_run(kafka: &Kafka, workload: &str, kill: Kill) {
    let broker = kafka.bootstrap();
    // Kept when the run fails (the node logs say why); removed when it passes.
    let dir = tempfile::tempdir().unwrap();
    let dir = Kept(dir.keep());
    eprintln!("crash run {workload}: logs in {}", dir.path().display());
    let app = unique(&format!("eos-{workload}"));
    let input = unique("eos-views");
    let output = unique("eos-out");
    let table = match workload {
        "a" => "page_counts",
        _ => "clicks_per_window",
    };
    let mut nodes: Vec<Node> = (0..3)
        .map(|n| {
            let pause: &[(&str, &str)] = match kill == Kill::InCommit && n == 2 {
                true => &[("FAUST_FAULT_COMMIT_PAUSE_MS", "2500")],
                false => &[],
            };
            start_node(
                dir.path(),
                n,
                &broker,
                &app,
                workload,
                table,
                &input,
                &output,
                pause,
            )
        })
        .collect();
    // Every node holds partitions before any input arrives, so all three do the work.
    wait_for(
        "the three nodes to hold partitions",
        Duration::from_secs(90),
        || nodes.iter().all(|n| n.log().contains("partition started")),
    );
    let truth = dir.path().join("truth.json");
    let records = RECORDS.to_string();
    preload(&broker, &input, &records, &truth);

    let progress = || committed(&broker, &app, &input).values().sum::<i64>();
    let victim = match kill {
        Kill::HalfWay => {
            wait_for(
                "half of the input committed",
                Duration::from_secs(120),
                || progress() >= TOTAL / 2,
            );
            0
        }
        Kill::InCommit => {
            // The paused node lags (each of its commits with data waits 2.5 s); kill it on a
            // pause that starts after this point, so it is inside a commit with records and
            // offsets in its transaction.
            let pauses = |n: &Node| {
                n.log()
                    .matches("pausing inside a transaction commit")
                    .count()
            };
            let seen = pauses(&nodes[2]);
            wait_for(
                "a commit of the paused node",
                Duration::from_secs(60),
                || pauses(&nodes[2]) > seen,
            );
            std::thread::sleep(Duration::from_millis(300));
            2
        }
    };
    eprintln!(
        "killing node {victim} at {} of {TOTAL} committed",
        progress()
    );
    nodes[victim].signal("-KILL");
    let _ = nodes[victim].child.wait();
    wait_for(
        "every record committed after the crash",
        Duration::from_secs(180),
        || progress() == TOTAL,
    );
    for (n, node) in nodes.iter().enumerate() {
        if n != victim {
            let metrics = node.metrics().unwrap_or_default();
            let committed = metric(&metrics, "faust_transactions_total{result=\"committed\"}");
            assert!(
                committed > 0.0,
                "node {n} counted no committed transaction:\n{metrics}"
            );
            node.signal("-TERM");
        }
    }
    for (n, node) in nodes.iter_mut().enumerate() {
        if n != victim {
            let status = node.child.wait().unwrap();
            let log = node.log();
            let tail: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
            let tail = tail[tail.len().saturating_sub(40)..].join("\n");
            assert!(status.success(), "node {n} did not stop cleanly:\n{tail}");
        }
    }
    let aborted = nodes
        .iter()
        .any(|n| n.log().contains("transaction aborted"));
    eprintln!(
        "{workload} {}: an abort was logged: {aborted}",
        match kill {
            Kill::HalfWay => "killed half-way",
            Kill::InCommit => "killed in a commit",
        }
    );

    let out = verify(&broker, &output, workload, &truth, &["--no-duplicates"]);
    assert!(
        out.status.success(),
        "the output is not exactly once: {}",
        text(&out)
    );
    if workload == "a" {
        // One output per input record, committed once: none lost, none twice.
        let want = format!("({TOTAL} output records)");
        assert!(text(&out).contains(&want), "want {want}: {}", text(&out));
    }
    let changelog = format!("{app}-{table}-changelog");
    let out = verify(&broker, &changelog, workload, &truth, &["--changelog"]);
    assert!(
        out.status.success(),
        "the table in its changelog is not the truth: {}",
        text(&out)
    );
}

#[test]
fn counts_are_exact_after_a_node_is_killed() {
    let Some(kafka) = Kafka::real("eos_counts") else {
        return;
    };
    if std::env::var("EOS_ONLY").is_err() {
        crash_run(&kafka, "a", Kill::HalfWay);
    }
    crash_run(&kafka, "a", Kill::InCommit);
}

#[test]
fn windows_are_exact_after_a_node_is_killed() {
    let Some(kafka) = Kafka::real("eos_windows") else {
        return;
    };
    crash_run(&kafka, "b", Kill::HalfWay);
    crash_run(&kafka, "b", Kill::InCommit);
}

/// The value of the sample `name` (with its labels) on a Prometheus page; 0 when absent.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Aborts, made on purpose (`FAUST_FAULT_ABORT_ROUNDS`: the first three transactions with data
/// abort, as a vote that is not ready would): every partition drops its uncommitted work and
/// seeks back, and the end result is as if nothing had happened: each count once, the table
/// exact, the aborts counted.
#[test]
fn aborted_transactions_leave_no_trace() {
    let Some(kafka) = Kafka::real("eos_abort") else {
        return;
    };
    let broker = kafka.bootstrap();
    let dir = Kept(tempfile::tempdir().unwrap().keep());
    let (app, input, output) = (
        unique("eos-abort"),
        unique("abort-views"),
        unique("abort-out"),
    );
    let table = "page_counts";
    let abort = [("FAUST_FAULT_ABORT_ROUNDS", "3")];
    let mut node = start_node(
        dir.path(),
        0,
        &broker,
        &app,
        "a",
        table,
        &input,
        &output,
        &abort,
    );
    wait_for(
        "the node to hold partitions",
        Duration::from_secs(60),
        || node.log().matches("partition started").count() >= 4,
    );
    let truth = dir.path().join("truth.json");
    preload(&broker, &input, "20000", &truth);
    wait_for("every record committed", Duration::from_secs(120), || {
        committed(&broker, &app, &input).values().sum::<i64>() == 20_004
    });
    let metrics = node.metrics().unwrap_or_default();
    let aborted = metric(&metrics, "faust_transactions_total{result=\"aborted\"}");
    assert_eq!(aborted, 3.0, "{metrics}");
    assert!(
        node.log()
            .contains("transaction aborted: dropping uncommitted work"),
        "no partition said it rewound"
    );
    node.signal("-TERM");
    assert!(
        node.child.wait().unwrap().success(),
        "the node did not stop cleanly"
    );
    let out = verify(&broker, &output, "a", &truth, &["--no-duplicates"]);
    assert!(out.status.success(), "not exactly once: {}", text(&out));
    assert!(
        text(&out).contains("(20004 output records)"),
        "{}",
        text(&out)
    );
    let changelog = format!("{app}-{table}-changelog");
    let out = verify(&broker, &changelog, "a", &truth, &["--changelog"]);
    assert!(out.status.success(), "table not exact: {}", text(&out));
}
