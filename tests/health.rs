//! `/healthz`, `/readyz` and the per-partition progress metrics tell the truth: an agent stuck
//! on one record leaves its partition with records waiting and an offset that does not move,
//! which `/healthz` names (503) after `processing.stall_intervals` commit intervals while the
//! other partitions go on; once the agent moves again, everything is committed and the node is
//! healthy, with no lag left (the lag in seconds grew meanwhile). A new group with
//! `auto_offset_reset = "latest"` processes only what is written after it joined. Runs on both
//! brokers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http_get, logs, sample, unique, wait_for, Kafka};
use faust::demo::PageView;
use faust::{Agent, AgentError, App, Event};

const WAIT: Duration = Duration::from_secs(60);

/// Waits, on the first record of partition 0, until released.
#[derive(Clone)]
struct Stuck {
    topic: String,
    released: Arc<AtomicBool>,
}

impl Agent for Stuck {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "stuck"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        if event.partition() == 0 {
            while !self.released.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }
}

#[test]
fn a_stalled_partition_is_named_on_healthz_and_recovers() {
    logs();
    let kafka = Kafka::new("stall");
    let dir = tempfile::tempdir().unwrap();
    let group = unique("stall");
    let mut cfg = kafka.config(dir.path(), &group);
    cfg.agents.remove("page_views");
    cfg.agents.insert("stuck".into(), Default::default());
    cfg.processing.stall_intervals = 5;
    let agent = Stuck {
        topic: kafka.topic.clone(),
        released: Arc::default(),
    };
    let mut node = App::new().agent(agent.clone()).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    let web = info.web_addr.unwrap();
    let ready = http_get(web, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    kafka.produce_page_views(400, 7);
    let ends = kafka.ends(&kafka.topic);
    assert!(ends[&0] > 0, "no record in partition 0: {ends:?}");
    let stalled = format!("{}[0]", kafka.topic);
    wait_for("/healthz to name the stalled partition", WAIT, || {
        http_get(web, "/healthz")
            .is_some_and(|h| h.starts_with("HTTP/1.1 503") && h.contains(&stalled))
    });
    // The others went on: everything but partition 0 committed, and they are not named.
    wait_for("the other partitions committed", WAIT, || {
        let c = kafka.committed(&group);
        (1..4).all(|p| c.get(&p) == ends.get(&p))
    });
    let health = http_get(web, "/healthz").unwrap();
    for p in 1..4 {
        assert!(
            !health.contains(&format!("{}[{p}]", kafka.topic)),
            "{health}"
        );
    }
    let page = info.metrics.encode();
    let labels = |p: i32| format!("{{partition=\"{p}\",topic=\"{}\"}}", kafka.topic);
    assert_eq!(
        sample(&page, &format!("faust_partition_stalled{}", labels(0))),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, &format!("faust_partition_stalled{}", labels(1))),
        Some(0.0)
    );
    let lag = sample(&page, &format!("faust_partition_lag_records{}", labels(0))).unwrap();
    assert_eq!(lag, ends[&0] as f64, "{page}");
    let age = sample(
        &page,
        &format!("faust_partition_commit_age_seconds{}", labels(0)),
    )
    .unwrap();
    assert!(age >= 0.5, "commit age {age}");
    let lag_seconds =
        |page: &str| sample(page, &format!("faust_partition_lag_seconds{}", labels(0))).unwrap();
    let behind = lag_seconds(&page);
    assert!(behind > 0.0);
    // Seconds behind grow while the partition waits (the coordinator updates them each second).
    wait_for("the lag in seconds to grow", WAIT, || {
        lag_seconds(&info.metrics.encode()) >= behind + 1.0
    });
    // Stalled is not unready: the partition is consuming.
    let ready = http_get(web, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    agent.released.store(true, Ordering::SeqCst);
    wait_for("every offset committed", WAIT, || {
        kafka.committed(&group) == ends
    });
    wait_for("/healthz to answer 200", WAIT, || {
        http_get(web, "/healthz").is_some_and(|h| h.starts_with("HTTP/1.1 200"))
    });
    wait_for("no lag left", WAIT, || {
        let page = info.metrics.encode();
        (0..4).all(|p| {
            sample(&page, &format!("faust_partition_lag_records{}", labels(p))) == Some(0.0)
                && sample(&page, &format!("faust_partition_lag_seconds{}", labels(p))) == Some(0.0)
                && sample(&page, &format!("faust_partition_stalled{}", labels(p))) == Some(0.0)
        })
    });
    node.stop().unwrap();
}

/// `processing.auto_offset_reset = "latest"`: a new group starts at the end of each partition:
/// records written before it joined are not processed, records written after are, exactly.
#[test]
fn a_new_group_with_latest_starts_at_the_end() {
    logs();
    let kafka = Kafka::new("latest");
    kafka.produce_page_views(300, 5);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("latest");
    let mut cfg = kafka.config(dir.path(), &group);
    cfg.agents.get_mut("page_views").unwrap().sinks.clear();
    cfg.processing.auto_offset_reset = faust::config::OffsetReset::Latest;
    let mut node = App::new()
        .agent(faust::demo::PageViews::on_topic(&kafka.topic))
        .spawn(cfg)
        .unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    // Every partition fetched once (its high watermark known, so its start resolved).
    wait_for("every partition positioned", WAIT, || {
        let page = info.metrics.encode();
        (0..4).all(|p| {
            let name = format!(
                "faust_partition_lag_records{{partition=\"{p}\",topic=\"{}\"}}",
                kafka.topic
            );
            sample(&page, &name).is_some()
        })
    });
    let later = kafka.produce_page_views(120, 6);
    wait_for("the new records processed", WAIT, || {
        info.metrics.agent_events("page_views") >= 120
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        info.metrics.agent_events("page_views"),
        120,
        "only the records written after"
    );
    node.stop().unwrap();
    let stored = faust::Store::open_existing(dir.path())
        .unwrap()
        .table_contents(&faust::demo::page_counts())
        .unwrap();
    assert_eq!(stored, later, "the table counts the new records only");
}
