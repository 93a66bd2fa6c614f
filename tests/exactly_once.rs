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

use std::time::Duration;

use common::bench::{metric, BenchApp, BenchNode};
use common::{wait_for, Kafka};

const RECORDS: u64 = 200_000;

#[derive(Clone, Copy, PartialEq)]
enum Kill {
    HalfWay,
    InCommit,
}

/// One crash run; panics with the verifier's words when anything differs.
fn crash_run(kafka: &Kafka, workload: &'static str, kill: Kill) {
    let mut app = BenchApp::new(
        &kafka.bootstrap(),
        &format!("eos-{workload}"),
        workload,
        "exactly_once",
    );
    let mut nodes: Vec<BenchNode> = (0..3)
        .map(|n| {
            let pause: &[(&str, &str)] = match kill == Kill::InCommit && n == 2 {
                true => &[("FAUST_FAULT_COMMIT_PAUSE_MS", "2500")],
                false => &[],
            };
            app.start_node(n, pause)
        })
        .collect();
    // Every node holds partitions before any input arrives, so all three do the work.
    wait_for(
        "the three nodes to hold partitions",
        Duration::from_secs(90),
        || nodes.iter().all(|n| n.log().contains("partition started")),
    );
    app.preload(RECORDS);
    let victim = match kill {
        Kill::HalfWay => {
            wait_for(
                "half of the input committed",
                Duration::from_secs(120),
                || app.progress() >= app.total / 2,
            );
            0
        }
        Kill::InCommit => {
            // The paused node lags (each of its commits with data waits 2.5 s); kill it on a
            // pause that starts after this point, so it is inside a commit with records and
            // offsets in its transaction.
            let pauses = |n: &BenchNode| {
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
        "killing node {victim} at {} of {} committed",
        app.progress(),
        app.total
    );
    nodes[victim].signal("-KILL");
    let _ = nodes[victim].child.wait();
    app.wait_all_committed(Duration::from_secs(180));
    for (n, node) in nodes.iter().enumerate() {
        if n != victim {
            let committed = node.metric("faust_transactions_total{result=\"committed\"}");
            assert!(committed > 0.0, "node {n} counted no committed transaction");
        }
    }
    for (n, node) in nodes.iter_mut().enumerate() {
        if n != victim {
            node.terminate_cleanly(&format!("node {n}"), Duration::from_secs(60));
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
    app.assert_outcome();
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

/// Aborts, made on purpose (`FAUST_FAULT_ABORT_ROUNDS`: the first three transactions with data
/// abort, as a vote that is not ready would): every partition drops its uncommitted work and
/// seeks back, and the end result is as if nothing had happened: each count once, the table
/// exact, the aborts counted.
#[test]
fn aborted_transactions_leave_no_trace() {
    let Some(kafka) = Kafka::real("eos_abort") else {
        return;
    };
    let mut app = BenchApp::new(&kafka.bootstrap(), "eos-abort", "a", "exactly_once");
    let abort = [("FAUST_FAULT_ABORT_ROUNDS", "3")];
    let mut node = app.start_node(0, &abort);
    wait_for(
        "the node to hold partitions",
        Duration::from_secs(60),
        || node.log().matches("partition started").count() >= 4,
    );
    app.preload(20_000);
    app.wait_all_committed(Duration::from_secs(120));
    let metrics = node.metrics().unwrap_or_default();
    let aborted = metric(&metrics, "faust_transactions_total{result=\"aborted\"}");
    assert_eq!(aborted, 3.0, "{metrics}");
    assert!(
        node.log()
            .contains("transaction aborted: dropping uncommitted work"),
        "no partition said it rewound"
    );
    node.terminate_cleanly("the node", Duration::from_secs(60));
    app.assert_outcome();
}
