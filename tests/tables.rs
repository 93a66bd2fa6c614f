//! Durable tables: every write goes to a compacted changelog first, a lost store is rebuilt from
//! it, and a killed node's partitions move to the warm standbys of the others.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agents::GlobalCounter;
use common::nodes::Nodes;
use common::{logs, node_config, unique, wait_for, Kafka, PARTITIONS};
use faust::config::TableConfig;
use faust::demo::{page_counts, PageViews};
use faust::{App, GlobalTable, Store};

const WAIT: Duration = Duration::from_secs(180);

#[test]
fn a_lost_store_is_rebuilt_from_the_changelog() {
    logs();
    let kafka = Kafka::new("rebuild");
    let truth = kafka.produce_page_views(3_000, 21);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let group = unique("rebuild");
    let cfg = kafka.config(&store, &group);
    let agent = PageViews::on_topic(&kafka.topic);

    let mut node = App::new().agent(agent.clone()).spawn(cfg.clone()).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every event", WAIT, || {
        info.metrics.agent_events("page_views") >= 3_000
    });
    node.stop().unwrap();
    assert_eq!(
        kafka.changelog_table(&group),
        truth,
        "the changelog holds the table"
    );

    std::fs::remove_dir_all(&store).unwrap();
    let mut node = App::new().agent(agent).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    let m = info.metrics.clone();
    // A partition counts as active once its restore is done.
    wait_for("every partition restored and running", WAIT, || {
        m.assigned_partitions.with_label_values(&["active"]).get() == i64::from(PARTITIONS)
    });
    // Rebuilt by the partitions' restores, or by standbys the node ran while joining the group
    // (then promoted in place).
    let replayed = m.recovery_records_total.get() + m.standby_records_total.get();
    let report = node.stop().unwrap();
    assert!(replayed > 0, "the changelog was replayed");
    assert_eq!(report.events, 0, "no event was processed again");
    let rebuilt = Store::open_existing(&store)
        .unwrap()
        .table_contents(&page_counts())
        .unwrap();
    assert_eq!(rebuilt, truth, "the rebuilt table equals what it was");
}

/// Samples the group's committed offsets and keeps, per partition, the largest advance seen
/// between two samples: an upper bound on the events one commit interval covers.
struct CommitSampler {
    stop: Arc<AtomicBool>,
    max_step: Arc<Mutex<HashMap<i32, i64>>>,
    thread: std::thread::JoinHandle<()>,
}

impl CommitSampler {
    fn start(kafka: &Kafka, group: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max_step = Arc::new(Mutex::new(HashMap::new()));
        let (b, t, g) = (kafka.bootstrap(), kafka.topic.clone(), group.to_owned());
        let (s, m) = (stop.clone(), max_step.clone());
        let thread = std::thread::spawn(move || {
            let mut last: HashMap<i32, i64> = HashMap::new();
            while !s.load(Ordering::SeqCst) {
                for (p, o) in common::committed(&b, &g, &t) {
                    let step = o - last.get(&p).copied().unwrap_or(o);
                    let mut max = m.lock().unwrap();
                    let e = max.entry(p).or_insert(0);
                    *e = (*e).max(step);
                    last.insert(p, o);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        CommitSampler {
            stop,
            max_step,
            thread,
        }
    }

    fn finish(self) -> HashMap<i32, i64> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.max_step)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// The partitions a node holds as active, from its `faust_partition_active` lines.
fn active_partitions(nodes: &Nodes, i: usize) -> Vec<i32> {
    let body = nodes.metrics(i).unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("faust_partition_active{") && l.ends_with(" 1"))
        .filter_map(|l| {
            let start = l.find("partition=\"")? + 11;
            l[start..].split('"').next()?.parse().ok()
        })
        .collect()
}

/// Kills, half-way through `total` page views, the node holding the fewest partitions; checks
/// the changelog's table against the truth; returns (takeover time, records replayed by the
/// survivors, promotions on the survivors, changelog records of the killed partitions).
fn kill_half_way(
    kafka: &Kafka,
    group: &str,
    nodes: &mut Nodes,
    total: usize,
) -> (Duration, u64, u64, i64) {
    let n = nodes_count(nodes);
    let sampler = CommitSampler::start(kafka, group);
    let mut truth: HashMap<String, u64> = HashMap::new();
    let (mut victim, mut killed, mut killed_at) = (usize::MAX, Vec::new(), Instant::now());
    let chunks = 20;
    for chunk in 0..chunks {
        for (url, c) in kafka.produce_page_views(total / chunks, 1_000 + chunk as u64) {
            *truth.entry(url).or_insert(0) += c;
        }
        if chunk == chunks / 2 {
            victim = (0..n).min_by_key(|i| nodes.active(*i)).unwrap();
            killed = active_partitions(nodes, victim);
            nodes.kill(victim);
            killed_at = Instant::now();
        }
    }
    let survivors: Vec<usize> = (0..n).filter(|i| *i != victim).collect();
    wait_for("the survivors to hold every partition", WAIT, || {
        survivors.iter().map(|i| nodes.active(*i)).sum::<i64>() == i64::from(PARTITIONS)
    });
    let takeover = killed_at.elapsed();
    wait_for("every event committed", WAIT, || {
        kafka.committed(group).values().sum::<i64>() == total as i64
    });
    let max_step = sampler.finish();

    let table = kafka.changelog_table(group);
    let mut over = 0;
    for (url, t) in &truth {
        let got = table.get(url).copied().unwrap_or(0);
        assert!(
            got >= *t,
            "{url}: {got} counted < {t} true: a write was lost"
        );
        over += got - t;
    }
    let bound: i64 = killed
        .iter()
        .map(|p| max_step.get(p).copied().unwrap_or(0))
        .sum();
    eprintln!(
        "killed node {victim} holding partitions {killed:?}: over-count {over} (bound: one commit \
         interval per killed partition = {bound}), takeover {takeover:.1?}"
    );
    assert!(!killed.is_empty(), "the killed node held partitions");
    assert!(
        over as i64 <= bound,
        "over-count {over} above one commit interval ({bound})"
    );
    let replayed: u64 = survivors
        .iter()
        .map(|i| nodes.sum(*i, "faust_recovery_records_total") as u64)
        .sum();
    let promoted: u64 = survivors
        .iter()
        .map(|i| nodes.sum(*i, "faust_standby_promotions_total") as u64)
        .sum();
    let changelog = kafka.ends(&faust_actors::names::changelog_topic(group, "page_counts"));
    let killed_records: i64 = killed.iter().map(|p| changelog[p]).sum();
    for i in survivors {
        assert_eq!(nodes.terminate(i, Duration::from_secs(30)).code(), Some(0));
    }
    (takeover, replayed, promoted, killed_records)
}

fn nodes_count(nodes: &Nodes) -> usize {
    nodes.len()
}

#[test]
fn three_nodes_with_standbys_lose_no_write_when_one_is_killed() {
    logs();
    let Some(kafka) = Kafka::real("standby") else {
        return;
    };
    let group = unique("standby");
    let cfg = node_config(&kafka, &group);
    let mut nodes = Nodes::new(&cfg);
    for _ in 0..3 {
        nodes.start();
    }
    wait_for(
        "4 active partitions, each with a standby elsewhere",
        WAIT,
        || {
            let active: i64 = (0..3).map(|i| nodes.active(i)).sum();
            let standby: f64 = (0..3)
                .map(|i| nodes.sum(i, "faust_assigned_partitions{role=\"standby\"}"))
                .sum();
            active == i64::from(PARTITIONS) && standby == f64::from(PARTITIONS)
        },
    );
    let (takeover, replayed, promoted, killed_records) =
        kill_half_way(&kafka, &group, &mut nodes, 200_000);
    eprintln!(
        "with standbys: takeover {takeover:.1?}; {promoted} standby promotion(s); the survivors \
         replayed {replayed} changelog records for killed partitions whose changelogs hold \
         {killed_records}"
    );
    assert!(promoted >= 1, "the killed partition's standby was promoted");
    assert!(
        (replayed as i64) * 2 < killed_records,
        "a warm standby replays only the tail: {replayed} of {killed_records}"
    );
}

#[test]
fn without_standbys_a_takeover_replays_the_whole_changelog() {
    logs();
    let Some(kafka) = Kafka::real("nostandby") else {
        return;
    };
    let group = unique("nostandby");
    let mut cfg = node_config(&kafka, &group);
    cfg.tables.insert(
        "page_counts".into(),
        TableConfig {
            standby_replicas: 0,
            ..TableConfig::default()
        },
    );
    let mut nodes = Nodes::new(&cfg);
    nodes.start();
    nodes.start();
    wait_for("both nodes to hold partitions", WAIT, || {
        nodes.active(0) >= 1 && nodes.active(1) >= 1
    });
    let (takeover, replayed, promoted, killed_records) =
        kill_half_way(&kafka, &group, &mut nodes, 60_000);
    assert_eq!(promoted, 0, "no standby, no promotion");
    eprintln!(
        "without standbys: takeover {takeover:.1?}; the survivor replayed {replayed} changelog \
         records (the killed partitions' changelogs hold {killed_records})"
    );
    assert!(
        replayed > 0,
        "the survivor rebuilt the killed partitions from their changelogs"
    );
}

#[test]
fn every_node_holds_the_whole_global_table() {
    logs();
    let kafka = Kafka::new("global");
    let truth = kafka.produce_page_views(2_000, 31);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("global");
    kafka.prepare_changelog(&group, "url_views");
    let views = GlobalTable::<String, u64>::new("url_views");
    let agent = || GlobalCounter {
        topic: kafka.topic.clone(),
        views: views.clone(),
    };
    let config = |name: &str| {
        let mut c = kafka.config(&dir.path().join(name), &group);
        c.agents.clear();
        c.tables.insert(
            "url_views".into(),
            TableConfig {
                standby_replicas: 0,
                ..TableConfig::default()
            },
        );
        c
    };
    let mut a = App::new().agent(agent()).spawn(config("a")).unwrap();
    let mut b = App::new().agent(agent()).spawn(config("b")).unwrap();
    let (ma, mb) = (
        a.wait_ready(WAIT).unwrap().metrics,
        b.wait_ready(WAIT).unwrap().metrics,
    );
    wait_for("both nodes to hold partitions", WAIT, || {
        let held = |m: &faust::Metrics| m.assigned_partitions.with_label_values(&["active"]).get();
        held(&ma) >= 1 && held(&mb) >= 1 && held(&ma) + held(&mb) == i64::from(PARTITIONS)
    });
    wait_for("every event committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == 2_000
    });
    let changelog: i64 = kafka
        .ends(&faust_actors::names::changelog_topic(&group, "url_views"))
        .values()
        .sum();
    wait_for("both copies to reach the changelog's end", WAIT, || {
        [&ma, &mb]
            .iter()
            .all(|m| m.standby_records_total.get() as i64 >= changelog)
    });
    a.stop().unwrap();
    b.stop().unwrap();
    for name in ["a", "b"] {
        let store = Store::open_existing(&dir.path().join(name)).unwrap();
        assert_eq!(
            store.global_contents(&views).unwrap(),
            truth,
            "node {name}'s copy"
        );
    }
}
