//! End-to-end tests of one node, in process: it counts page views, and its table, offsets,
//! output and metrics are checked exactly. They run on a mock cluster owned by each test, or on
//! the real broker `FAUST_TEST_BROKER` names.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{logs, wait_for, Kafka, PARTITIONS};
use faust::demo::{page_counts, PageView, PageViews};
use faust::{Agent, AgentError, App, Event, Store, Table, TableSpec};

const WAIT: Duration = Duration::from_secs(60);

fn stored_counts(path: &std::path::Path, table: &Table<String, u64>) -> HashMap<String, u64> {
    let store = Store::open_existing(path).expect("store");
    store.table_contents(table).expect("table")
}

#[test]
fn counts_equal_the_truth_and_offsets_reach_the_end() {
    logs();
    let kafka = Kafka::new("count");
    let n = 3_000;
    let truth = kafka.produce_page_views(n, 1);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let group = common::unique("count");
    let cfg = kafka.config(&store, &group);

    let mut node = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(cfg)
        .unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    assert!(info.web_addr.is_some());
    wait_for("every event", WAIT, || {
        info.metrics.agent_events("page_views") >= n as u64
    });
    let report = node.stop().unwrap();

    assert_eq!(report.events, n as u64, "each event handled exactly once");
    assert!(report.commits > 0);
    assert_eq!(stored_counts(&store, &page_counts()), truth);
    let committed = kafka.committed(&group);
    assert_eq!(committed.len(), PARTITIONS as usize, "{committed:?}");
    assert_eq!(committed.values().sum::<i64>(), n as i64, "{committed:?}");
    kafka.assert_every_input_emitted();
    let out: i64 = kafka.ends(&kafka.out).values().sum();
    assert_eq!(out, n as i64, "no output sent twice after a clean run");
}

#[test]
fn a_restarted_node_continues_where_it_stopped() {
    logs();
    let kafka = Kafka::new("restart");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let group = common::unique("restart");
    let cfg = kafka.config(&store, &group);
    let agent = PageViews::on_topic(&kafka.topic);

    let first = kafka.produce_page_views(1_500, 2);
    let mut node = App::new().agent(agent.clone()).spawn(cfg.clone()).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("first run", WAIT, || {
        info.metrics.agent_events("page_views") >= 1_500
    });
    assert_eq!(node.stop().unwrap().events, 1_500);

    let second = kafka.produce_page_views(1_000, 3);
    let mut node = App::new().agent(agent).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("second run", WAIT, || {
        info.metrics.agent_events("page_views") >= 1_000
    });
    let report = node.stop().unwrap();
    assert_eq!(
        report.events, 1_000,
        "the second run reads only the new events"
    );

    let mut truth = first;
    for (url, n) in second {
        *truth.entry(url).or_insert(0) += n;
    }
    assert_eq!(stored_counts(&store, &page_counts()), truth);
    assert_eq!(kafka.committed(&group).values().sum::<i64>(), 2_500);
}

/// How a [`Faulty`] agent misbehaves, once per chosen offset.
#[derive(Clone, Copy)]
enum Fault {
    /// Panics at every 97th offset (13, 110, ...) of a partition.
    Panic,
    /// Returns an error at every 89th offset (5, 94, ...) of a partition.
    Error,
}

/// Counts like `PageViews`, but fails the first time it sees certain offsets, after its table
/// write (which must be rolled back, not counted twice), and records the partition hooks.
struct Faulty {
    fault: Fault,
    topic: String,
    counts: Table<String, u64>,
    faulted: Arc<Mutex<HashSet<(i32, i64)>>>,
    hooks: Arc<Mutex<Vec<String>>>,
}

impl Faulty {
    fn new(fault: Fault, topic: &str, counts: &Table<String, u64>) -> Self {
        Faulty {
            fault,
            topic: topic.into(),
            counts: counts.clone(),
            faulted: Arc::default(),
            hooks: Arc::default(),
        }
    }
}

impl Agent for Faulty {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        match self.fault {
            Fault::Panic => "flaky",
            Fault::Error => "failing",
        }
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        event
            .table(&self.counts)?
            .update(url, |n| n.unwrap_or(0) + 1)?;
        let id = (event.partition(), event.offset());
        let (every, at) = match self.fault {
            Fault::Panic => (97, 13),
            Fault::Error => (89, 5),
        };
        if event.offset() % every == at && self.faulted.lock().unwrap().insert(id) {
            match self.fault {
                Fault::Panic => panic!("injected panic at {id:?}"),
                Fault::Error => {
                    return Err(AgentError::msg(format!("transient failure at {id:?}")))
                }
            }
        }
        Ok(())
    }

    fn on_assign(&self, _topic: &str, partition: i32) {
        self.hooks
            .lock()
            .unwrap()
            .push(format!("assign {partition}"));
    }

    fn on_revoke(&self, _topic: &str, partition: i32) {
        self.hooks
            .lock()
            .unwrap()
            .push(format!("revoke {partition}"));
    }
}

#[test]
fn a_panicking_agent_is_restarted_and_loses_nothing() {
    logs();
    let kafka = Kafka::new("flaky");
    let n = 2_000;
    let truth = kafka.produce_page_views(n, 4);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let counts = page_counts();
    let agent = Faulty::new(Fault::Panic, &kafka.topic, &counts);
    let panicked = agent.faulted.clone();
    let mut cfg = kafka.config(&store, &common::unique("flaky"));
    cfg.agents.clear();

    let mut node = App::new().agent(agent).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every event", WAIT, || {
        info.metrics.agent_events("flaky") >= n as u64
    });
    let restarts = info
        .metrics
        .agent_restarts_total
        .with_label_values(&["flaky"])
        .get();
    let report = node.stop().unwrap();

    let panics = panicked.lock().unwrap().len() as u64;
    assert!(
        panics >= 4 * (n as u64 / PARTITIONS as u64 / 97),
        "panics injected: {panics}"
    );
    assert_eq!(restarts, panics, "one actor restart per panic");
    assert_eq!(report.events, n as u64);
    assert_eq!(
        stored_counts(&store, &counts),
        truth,
        "no event lost or counted twice"
    );
}

#[test]
fn metrics_and_health_are_served_over_http() {
    logs();
    let kafka = Kafka::new("http");
    kafka.produce_page_views(200, 7);
    let dir = tempfile::tempdir().unwrap();
    let mut node = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(kafka.config(&dir.path().join("s"), &common::unique("http")))
        .unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    let addr = info.web_addr.unwrap();
    wait_for("events", WAIT, || {
        info.metrics.agent_events("page_views") >= 200
    });
    wait_for("a commit", WAIT, || info.metrics.commits_total.get() > 0);
    let body = common::http_get(addr, "/metrics").unwrap();
    let events: u64 = body
        .lines()
        .filter(|l| l.starts_with("faust_events_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(events, 200, "{body}");
    assert!(
        body.contains("faust_assigned_partitions{role=\"active\"} 4"),
        "{body}"
    );
    let keys = body
        .lines()
        .find(|l| l.starts_with("faust_table_keys{table=\"page_counts\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok());
    assert!(keys.is_some_and(|k| k > 0), "{body}");
    let health = common::http_get(addr, "/healthz").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"active_partitions\":4"), "{health}");
    node.stop().unwrap();
}

#[test]
fn an_agent_error_is_retried_without_double_counting_and_hooks_run_per_partition() {
    logs();
    let kafka = Kafka::new("failing");
    let n = 2_000;
    let truth = kafka.produce_page_views(n, 8);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let counts = page_counts();
    let agent = Faulty::new(Fault::Error, &kafka.topic, &counts);
    let (failed, hooks) = (agent.faulted.clone(), agent.hooks.clone());
    let mut cfg = kafka.config(&store, &common::unique("failing"));
    cfg.agents.clear();

    let mut node = App::new().agent(agent).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every event", WAIT, || {
        info.metrics.agent_events("failing") >= n as u64
    });
    let m = &info.metrics;
    let errors = m.agent_errors_total.with_label_values(&["failing"]).get();
    let restarts = m.agent_restarts_total.with_label_values(&["failing"]).get();
    let report = node.stop().unwrap();

    let failures = failed.lock().unwrap().len() as u64;
    assert!(
        failures >= 4 * (n as u64 / PARTITIONS as u64 / 89),
        "failures injected: {failures}"
    );
    assert_eq!(errors, failures, "each error counted once");
    assert_eq!(
        restarts, 0,
        "an error retries the event; only a panic restarts the actor"
    );
    assert_eq!(report.events, n as u64);
    assert_eq!(
        stored_counts(&store, &counts),
        truth,
        "no event lost or counted twice"
    );
    let mut hooks = hooks.lock().unwrap().clone();
    hooks.sort();
    let expected: Vec<String> = (0..PARTITIONS)
        .map(|p| format!("assign {p}"))
        .chain((0..PARTITIONS).map(|p| format!("revoke {p}")))
        .collect();
    assert_eq!(
        hooks, expected,
        "each partition assigned once and revoked once"
    );
}
