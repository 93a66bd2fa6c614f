//! Faults of the platform under running nodes, on real Kafka: a broker stopped mid-stream and
//! started again. Each run checks what the guarantee promises at the end (exactly once: every
//! output once and the table exact; at least once: nothing below the truth), that the nodes say
//! what happened (`/healthz`, metrics), and that they still stop cleanly.

mod common;

use std::time::{Duration, Instant};

use common::bench::{BenchApp, BenchNode};
use common::broker::OwnBroker;
use common::wait_for;

fn real_kafka(test: &str) -> bool {
    let real = std::env::var("FAUST_TEST_BROKER").is_ok_and(|b| !b.is_empty());
    if !real {
        eprintln!(
            "skipped: `{test}` needs real Kafka (set FAUST_TEST_BROKER, as scripts/test does)"
        );
    }
    real
}

/// The status line of `GET /healthz` (`None`: no answer).
fn health(node: &BenchNode) -> Option<String> {
    let page = node.get("/healthz")?;
    Some(page.lines().next().unwrap_or_default().to_owned())
}

/// The broker is stopped for 20 s while two apps of two nodes each (one exactly once, one at
/// least once) are half-way through their input, then started again: both resume by
/// themselves, and finish with nothing lost (exactly once: still exact).
#[test]
fn a_broker_stopped_for_20_s_mid_stream_loses_nothing() {
    if !real_kafka("broker_outage") {
        return;
    }
    let broker = OwnBroker::start();
    let mut apps = [
        BenchApp::new(&broker.bootstrap(), "outage-eos", "a", "exactly_once"),
        BenchApp::new(&broker.bootstrap(), "outage-alo", "a", "at_least_once"),
    ];
    let mut nodes: Vec<Vec<BenchNode>> = apps
        .iter()
        .map(|app| (0..2).map(|n| app.start_node(n, &[])).collect())
        .collect();
    wait_for(
        "every node to hold partitions",
        Duration::from_secs(90),
        || {
            nodes
                .iter()
                .flatten()
                .all(|n| n.log().contains("partition started"))
        },
    );
    // Both inputs written at once; the broker stops as soon as they are, with the nodes still
    // working through them (checked below: a run where they had finished proves nothing).
    std::thread::scope(|s| {
        for app in &mut apps {
            s.spawn(|| app.preload(300_000));
        }
    });
    let at: Vec<i64> = apps.iter().map(BenchApp::progress).collect();
    eprintln!("stopping the broker at {at:?} committed");
    for (app, at) in apps.iter().zip(&at) {
        assert!(
            *at < app.total,
            "{}: every record was processed before the outage",
            app.app
        );
    }
    broker.stop();
    let down = Instant::now();
    // Every node notices within the outage, and says so on /healthz.
    let mut unhealthy = [false; 4];
    while down.elapsed() < Duration::from_secs(20) {
        for (i, node) in nodes.iter().flatten().enumerate() {
            unhealthy[i] |= health(node).is_some_and(|s| s.contains("503"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    broker.restart();
    eprintln!("broker back after {:?}", down.elapsed());
    for app in &apps {
        app.wait_all_committed(Duration::from_secs(120));
    }
    for (i, node) in nodes.iter().flatten().enumerate() {
        assert!(
            unhealthy[i],
            "node {i}: /healthz never said the broker was down"
        );
        wait_for(
            "/healthz to answer 200 again",
            Duration::from_secs(60),
            || health(node).is_some_and(|s| s.contains("200")),
        );
    }
    let eos = &nodes[0];
    let rebuilt: f64 = eos
        .iter()
        .map(|n| n.metric("faust_producer_rebuilds_total{result=\"ok\"}"))
        .sum();
    let ended: f64 = eos
        .iter()
        .map(|n| {
            n.metric("faust_transactions_total{result=\"aborted\"}")
                + n.metric("faust_transactions_total{result=\"fatal\"}")
        })
        .sum();
    eprintln!("exactly once: {ended} transactions aborted or failed, {rebuilt} producers rebuilt");
    assert!(
        ended >= 1.0,
        "exactly once: the outage left no trace in the metrics"
    );
    for (a, group) in nodes.iter_mut().enumerate() {
        for (n, node) in group.iter_mut().enumerate() {
            node.terminate_cleanly(&format!("app {a} node {n}"), Duration::from_secs(60));
        }
    }
    for app in &apps {
        app.assert_outcome();
    }
}
