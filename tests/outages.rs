//! Faults of the platform under running nodes, on real Kafka: a broker stopped mid-stream and
//! started again. Each run checks what the guarantee promises at the end (exactly once: every
//! output once and the table exact; at least once: nothing below the truth), that the nodes say
//! what happened (`/healthz`, metrics), and that they still stop cleanly.

mod common;

use std::time::{Duration, Instant};

use common::bench::{BenchApp, BenchNode};
use common::broker::OwnBroker;
use common::{real_broker, wait_for};

/// The status line of `GET /healthz` (`None`: no answer).
fn health(node: &BenchNode) -> Option<String> {
    let page = node.get("/healthz")?;
    Some(page.lines().next().unwrap_or_default().to_owned())
}

/// Waits until the node says it is healthy and ready again, with nothing stalled or waiting.
fn settles(node: &BenchNode, name: &str) {
    wait_for(
        &format!("{name} to be healthy and ready"),
        Duration::from_secs(60),
        || {
            let ready = node
                .get("/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"));
            ready && health(node).is_some_and(|s| s.contains("200"))
        },
    );
    assert_eq!(node.metric("faust_partitions_not_ready"), 0.0, "{name}");
    assert_eq!(node.metric("faust_membership_suspended"), 0.0, "{name}");
}

/// The broker is stopped for 20 s while two apps of two nodes each (one exactly once, one at
/// least once) are half-way through their input, then started again: both resume by
/// themselves, and finish with nothing lost (exactly once: still exact).
#[test]
fn a_broker_stopped_for_20_s_mid_stream_loses_nothing() {
    if real_broker("broker_outage").is_none() {
        return;
    }
    let broker = OwnBroker::start();
    let mut apps = [
        BenchApp::new(&broker.bootstrap(), "outage-eos", "a", "exactly_once"),
        BenchApp::new(&broker.bootstrap(), "outage-alo", "a", "at_least_once"),
    ];
    for app in &mut apps {
        // Frozen while the input is written (below): no rebalance meanwhile.
        app.session_timeout = "15s";
    }
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
    // The input must still be flowing when the broker stops (checked below: a run where the
    // nodes had finished proves nothing), but an at-least-once node keeps up with a producer.
    // So the nodes are frozen while both inputs are written (well within their session
    // timeout: no rebalance), woken, and the broker stops as soon as both apps have committed
    // something.
    for node in nodes.iter().flatten() {
        node.signal("-STOP");
    }
    std::thread::scope(|s| {
        for app in &mut apps {
            s.spawn(|| app.preload(300_000));
        }
    });
    for node in nodes.iter().flatten() {
        node.signal("-CONT");
    }
    let mut at: Vec<i64>;
    let woken = Instant::now();
    loop {
        at = apps.iter().map(BenchApp::progress).collect();
        if at.iter().all(|&p| p > 0) || woken.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("stopping the broker at {at:?} committed");
    for (app, at) in apps.iter().zip(&at) {
        assert!(
            (1..app.total).contains(at),
            "{}: {at} of {} records committed when the broker stops, not mid-stream",
            app.app,
            app.total
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

/// How many times `node` (in all its lives) logged a partition start.
fn started_partitions(node: &BenchNode) -> usize {
    node.log().matches("partition started").count()
}

/// Input written at `rate` records per second while `faults` runs, so that the faults hit a
/// stream still flowing; then the total is taken.
fn feeding(app: &mut BenchApp, records: u64, rate: u64, faults: impl FnOnce(&BenchApp)) {
    std::thread::scope(|s| {
        let app = &*app;
        s.spawn(move || app.feed(records, rate));
        faults(app);
    });
    app.fed();
}

/// A node frozen (SIGSTOP) for longer than its session timeout, then resumed: its partitions
/// move to the other node meanwhile, and the zombie, when it wakes, writes nothing that
/// counts: the table is not rolled back (exactly once: exact; at least once: never below the
/// truth), nothing is lost, both nodes stop cleanly.
#[test]
fn a_node_frozen_past_its_session_timeout_writes_nothing_when_it_wakes() {
    let Some(broker) = real_broker("zombie") else {
        return;
    };
    for guarantee in ["exactly_once", "at_least_once"] {
        let mut app = BenchApp::new(&broker, "zombie", "a", guarantee);
        let mut nodes: Vec<BenchNode> = (0..2).map(|n| app.start_node(n, &[])).collect();
        wait_for(
            "both nodes to hold partitions",
            Duration::from_secs(90),
            || nodes.iter().all(|n| started_partitions(n) > 0),
        );
        feeding(&mut app, 150_000, 10_000, |app| {
            wait_for("input flowing", Duration::from_secs(60), || {
                app.progress() >= 20_000
            });
            let before = started_partitions(&nodes[1]);
            eprintln!(
                "{guarantee}: freezing node 0 at {} committed",
                app.progress()
            );
            nodes[0].signal("-STOP");
            wait_for(
                "node 1 to take node 0's partitions",
                Duration::from_secs(60),
                || started_partitions(&nodes[1]) > before,
            );
            // Node 1 works on: the zombie's old values must not land after its newer ones.
            std::thread::sleep(Duration::from_secs(3));
            eprintln!("{guarantee}: waking node 0 at {} committed", app.progress());
            nodes[0].signal("-CONT");
        });
        app.wait_all_committed(Duration::from_secs(180));
        assert!(
            nodes[0]
                .log()
                .contains("frozen for longer than the group's session timeout"),
            "{guarantee}: the zombie did not notice its freeze"
        );
        for (n, node) in nodes.iter().enumerate() {
            settles(node, &format!("{guarantee} node {n}"));
        }
        for (n, node) in nodes.iter_mut().enumerate() {
            node.terminate_cleanly(&format!("{guarantee} node {n}"), Duration::from_secs(60));
        }
        // At least once, outputs the zombie had queued before it froze may still reach the
        // broker after the new owner's (nothing fences a plain producer; the README says so):
        // only exactly once promises the outputs, both promise the table.
        app.assert_table();
        if guarantee == "exactly_once" {
            app.assert_output();
        }
    }
}

/// Exactly once through a burst of SIGKILLs: three nodes, each killed in turn while the input
/// flows and restarted on its own store (same node id: it fences its earlier self), and the
/// outputs and the table are still exact.
#[test]
fn exactly_once_survives_a_burst_of_kills_with_restarts() {
    let Some(broker) = real_broker("kill_burst") else {
        return;
    };
    let mut app = BenchApp::new(&broker, "burst", "a", "exactly_once");
    let mut nodes: Vec<BenchNode> = (0..3).map(|n| app.start_node(n, &[])).collect();
    wait_for(
        "three nodes to hold partitions",
        Duration::from_secs(90),
        || nodes.iter().all(|n| started_partitions(n) > 0),
    );
    feeding(&mut app, 200_000, 10_000, |app| {
        for (victim, node) in nodes.iter_mut().enumerate() {
            let at = 20_000 * (2 * victim as i64 + 1);
            wait_for(
                "progress before the next kill",
                Duration::from_secs(120),
                || app.progress() >= at,
            );
            eprintln!("killing node {victim} at {} committed", app.progress());
            node.signal("-KILL");
            let _ = node.child.wait();
            std::thread::sleep(Duration::from_millis(500));
            *node = app.start_node(victim, &[]);
        }
    });
    app.wait_all_committed(Duration::from_secs(240));
    for (n, node) in nodes.iter().enumerate() {
        settles(node, &format!("node {n}"));
        // Each restarted node fenced its earlier self and committed on its own.
        let committed = node.metric("faust_transactions_total{result=\"committed\"}");
        assert!(
            committed > 0.0,
            "node {n} committed nothing after its restart"
        );
    }
    for (n, node) in nodes.iter_mut().enumerate() {
        node.terminate_cleanly(&format!("node {n}"), Duration::from_secs(60));
    }
    app.assert_outcome();
}

/// Partitions revoked from a node and given back to it (a second node joins, then leaves,
/// twice) while the input flows: each time they come back they resume (no lost wake-up of the
/// partition queue, which librdkafka shares between the old reader and the new), and the
/// result is exact.
#[test]
fn partitions_given_back_to_the_same_node_resume() {
    let Some(broker) = real_broker("given_back") else {
        return;
    };
    for guarantee in ["exactly_once", "at_least_once"] {
        let mut app = BenchApp::new(&broker, "given-back", "a", guarantee);
        let mut first = app.start_node(0, &[]);
        wait_for("node 0 to hold partitions", Duration::from_secs(90), || {
            started_partitions(&first) >= 4
        });
        let log1 = app.dir.path().join("node1.log");
        feeding(&mut app, 200_000, 10_000, |app| {
            for _ in 0..2 {
                let seen = std::fs::read_to_string(&log1)
                    .map(|l| l.matches("partition started").count())
                    .unwrap_or(0);
                let mut second = app.start_node(1, &[]);
                wait_for("node 1 to take partitions", Duration::from_secs(90), || {
                    started_partitions(&second) > seen
                });
                let back = started_partitions(&first);
                second.terminate_cleanly("node 1", Duration::from_secs(60));
                wait_for("node 0 to get them back", Duration::from_secs(90), || {
                    started_partitions(&first) > back
                });
                eprintln!("{guarantee}: given back at {} committed", app.progress());
            }
        });
        app.wait_all_committed(Duration::from_secs(180));
        settles(&first, &format!("{guarantee} node 0"));
        let revoked = first.metric("faust_rebalances_total{kind=\"revoke\"}");
        assert!(revoked >= 2.0, "{guarantee}: {revoked} revocations");
        first.terminate_cleanly(&format!("{guarantee} node 0"), Duration::from_secs(60));
        app.assert_outcome();
    }
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    /// Fills the disk with a ballast file until it refuses more.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let ballast = self.path().join("ballast");
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// The store's disk fills up while the input flows: the node says so at once (`/healthz`
/// 503 naming the store, `faust_store_failed`), takes no more records, and exits with a clear
/// error instead of retrying for ever; nothing was committed past what was stored, so once
/// space is freed the restarted node finishes the input with no count below the truth.
#[test]
fn a_full_disk_stops_the_node_with_a_clear_error_and_a_restart_resumes() {
    let Some(broker) = real_broker("full_disk") else {
        return;
    };
    let Some(disk) = SmallDisk::mount("48m") else {
        eprintln!("skipped: `full_disk` needs to mount a tmpfs (root)");
        return;
    };
    let mut app = BenchApp::new(&broker, "full-disk", "a", "at_least_once");
    app.store_root = Some(disk.path().to_path_buf());
    let mut node = app.start_node(0, &[]);
    wait_for(
        "the node to hold partitions",
        Duration::from_secs(90),
        || started_partitions(&node) >= 4,
    );
    feeding(&mut app, 150_000, 10_000, |app| {
        wait_for("input flowing", Duration::from_secs(60), || {
            app.progress() >= 20_000
        });
        let ballast = disk.fill();
        eprintln!("disk full at {} committed", app.progress());
        let (mut said, started) = (false, std::time::Instant::now());
        let status = loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the node did not stop on a full disk:\n{}",
                node.tail(30)
            );
            said |= node.get("/healthz").is_some_and(|h| {
                h.starts_with("HTTP/1.1 503")
                    && h.contains(&format!("cannot write: {}", disk.path().display()))
            });
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = node.log();
        assert!(!status.success(), "a full disk is not a clean exit");
        assert!(said, "/healthz never named the store");
        assert!(log.contains("No space left on device"), "{}", node.tail(30));
        assert!(log.contains("the store at"), "{}", node.tail(30));
        std::fs::remove_file(ballast).unwrap();
        node = app.start_node(0, &[]);
    });
    app.wait_all_committed(Duration::from_secs(180));
    node.terminate_cleanly("the restarted node", Duration::from_secs(60));
    app.assert_outcome();
}

/// A live duplicate: a second process started on a copy of a node's store has the same node
/// id, so the same `transactional.id`; each fences the other's producer in turn. After a few
/// failures in a short time the one fenced first stops with a clear error (exit 1), the other
/// goes on alone, and the outputs and the table are exact.
#[test]
fn a_live_duplicate_fences_the_producer_and_one_of_the_two_stops() {
    let Some(broker) = real_broker("duplicate") else {
        return;
    };
    let mut app = BenchApp::new(&broker, "duplicate", "a", "exactly_once");
    let mut first = app.start_node(0, &[]);
    wait_for("node 0 to hold partitions", Duration::from_secs(90), || {
        started_partitions(&first) >= 4
    });
    first.terminate_cleanly("node 0", Duration::from_secs(60));
    let dir = app.dir.path();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(dir.join("store0"))
        .arg(dir.join("store1"))
        .status()
        .unwrap();
    assert!(copied.success());
    let mut nodes = [app.start_node(0, &[]), app.start_node(1, &[])];
    wait_for("both to hold partitions", Duration::from_secs(90), || {
        nodes.iter().all(|n| started_partitions(n) > 0)
    });
    let mut stopped = None;
    feeding(&mut app, 100_000, 10_000, |_| {
        let started = std::time::Instant::now();
        while stopped.is_none() {
            for (i, node) in nodes.iter_mut().enumerate() {
                if let Some(status) = node.child.try_wait().unwrap() {
                    stopped = Some((i, status));
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "neither duplicate stopped:\n{}\n---\n{}",
                nodes[0].tail(20),
                nodes[1].tail(20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (gone, status) = stopped.unwrap();
    eprintln!("node {gone} stopped: {status}");
    assert_eq!(status.code(), Some(1), "{}", nodes[gone].tail(20));
    assert!(
        nodes[gone].log().contains("was fenced again and again"),
        "{}",
        nodes[gone].tail(20)
    );
    let survivor = &mut nodes[1 - gone];
    app.wait_all_committed(Duration::from_secs(180));
    assert_eq!(
        survivor.child.try_wait().unwrap(),
        None,
        "both stopped:\n{}",
        survivor.tail(20)
    );
    survivor.terminate_cleanly("the survivor", Duration::from_secs(60));
    app.assert_outcome();
}
