//! Tests that need real Apache Kafka (`FAUST_TEST_BROKER`, started by `scripts/test` with
//! `scripts/kafka`): topic management through the admin API, and groups of `faust-node`
//! processes that share, hand over and take over partitions. Without a real broker they are
//! skipped and say so.

mod common;

use std::time::{Duration, Instant};

use common::nodes::Nodes;
use common::{logs, node_config, unique, wait_for, Kafka, PARTITIONS};
use faust::config::TopicConfig;
use faust::demo::PageViews;
use faust::{App, Codec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

const WAIT: Duration = Duration::from_secs(90);

fn partitions_of(bootstrap: &str, topic: &str) -> usize {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0].partitions().len()
}

#[test]
fn missing_topics_are_created_and_a_partition_mismatch_stops_start_up() {
    logs();
    let Some(kafka) = Kafka::real("topics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fresh = unique("fresh");
    let mut cfg = kafka.config(&dir.path().join("a"), &unique("topics"));
    let topic = |partitions| TopicConfig {
        partitions,
        replication: Some(1),
        key_codec: Codec::String,
        value_codec: Codec::Json,
    };
    cfg.topics.insert(fresh.clone(), topic(3));

    let mut node = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(cfg.clone())
        .unwrap();
    node.wait_ready(WAIT).unwrap();
    node.stop().unwrap();
    assert_eq!(
        partitions_of(&kafka.bootstrap(), &fresh),
        3,
        "created with its configured count"
    );

    cfg.topics.insert(fresh.clone(), topic(5));
    cfg.store.path = Some(dir.path().join("b"));
    let mut node = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(cfg)
        .unwrap();
    let err = node.wait_ready(WAIT).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("topic `{fresh}` has 3 partition(s) on the broker but 5 in [topics.{fresh}]")
    );
}

fn committed_total(kafka: &Kafka, group: &str) -> i64 {
    kafka.committed(group).values().sum()
}

#[test]
fn two_nodes_share_the_partitions_and_a_stopped_node_hands_them_over() {
    logs();
    let Some(kafka) = Kafka::real("share") else {
        return;
    };
    let group = unique("share");
    let mut nodes = Nodes::new(&node_config(&kafka, &group));
    let (a, b) = (nodes.start(), nodes.start());
    wait_for("both nodes to hold partitions", WAIT, || {
        let (x, y) = (nodes.active(a), nodes.active(b));
        x + y == i64::from(PARTITIONS) && x >= 1 && y >= 1
    });

    kafka.produce_page_views(2_000, 10);
    wait_for("the first 2,000 events committed", WAIT, || {
        committed_total(&kafka, &group) == 2_000
    });
    assert!(
        nodes.events(a) > 0 && nodes.events(b) > 0,
        "both nodes worked"
    );

    let status = nodes.terminate(b, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    wait_for("the remaining node to hold every partition", WAIT, || {
        nodes.active(a) == i64::from(PARTITIONS)
    });
    kafka.produce_page_views(1_000, 11);
    wait_for("all 3,000 events committed", WAIT, || {
        committed_total(&kafka, &group) == 3_000
    });
    kafka.assert_every_input_emitted();
    assert_eq!(nodes.terminate(a, Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn a_killed_nodes_partitions_are_taken_over_and_every_event_is_processed() {
    logs();
    let Some(kafka) = Kafka::real("kill") else {
        return;
    };
    let group = unique("kill");
    let mut nodes = Nodes::new(&node_config(&kafka, &group));
    let (a, b) = (nodes.start(), nodes.start());
    wait_for("both nodes to hold partitions", WAIT, || {
        let (x, y) = (nodes.active(a), nodes.active(b));
        x + y == i64::from(PARTITIONS) && x >= 1 && y >= 1
    });

    // Produce in chunks; node b is killed right after a chunk lands, while it is busy with it
    // and has not committed it yet.
    let total = 4_000;
    for chunk in 0..8 {
        if chunk == 4 {
            wait_for("node b to process earlier chunks", WAIT, || {
                nodes.events(b) > 0
            });
        }
        kafka.produce_page_views(total / 8, 100 + chunk);
        if chunk == 4 {
            nodes.kill(b);
        }
    }
    let killed = Instant::now();
    wait_for("node a to take over every partition", WAIT, || {
        nodes.active(a) == i64::from(PARTITIONS)
    });
    let takeover = killed.elapsed();
    wait_for("every event committed", WAIT, || {
        committed_total(&kafka, &group) == total as i64
    });
    kafka.assert_every_input_emitted();
    let outputs: i64 = kafka.ends(&kafka.out).values().sum();
    eprintln!(
        "SIGKILL takeover: {takeover:.1?} until the survivor held all {PARTITIONS} partitions; \
         {outputs} outputs for {total} inputs ({} processed again after the kill)",
        outputs - total as i64
    );
    assert!(outputs >= total as i64);
    assert_eq!(nodes.terminate(a, Duration::from_secs(30)).code(), Some(0));
}

/// Partitions added to the source topic while a node runs: tables are sharded by partition, so
/// the node stops with a clear error naming the topic and both counts (Kafka Streams stops
/// too), instead of moving keys to table partitions that never saw them.
#[test]
fn partitions_added_to_a_source_topic_stop_the_node_with_a_clear_error() {
    logs();
    let Some(kafka) = Kafka::real("grown") else {
        return;
    };
    let group = unique("grown");
    let mut nodes = Nodes::new(&node_config(&kafka, &group));
    let a = nodes.start();
    wait_for("the node to hold partitions", WAIT, || {
        nodes.active(a) == PARTITIONS as i64
    });
    kafka.add_partitions(&kafka.topic, PARTITIONS as usize + 2);
    let status = nodes.wait_exit(a, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "a clear error is not a clean exit");
    let log = nodes.log(a);
    let want = format!(
        "topic `{}` has {} partition(s) on the broker but {PARTITIONS}",
        kafka.topic,
        PARTITIONS + 2
    );
    assert!(log.contains(&want), "{want} not in:\n{log}");
    assert!(
        log.contains("partition count changed while the app runs"),
        "{log}"
    );
}
