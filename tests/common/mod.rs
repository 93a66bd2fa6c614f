//! Shared helpers of the integration tests: an embedded Kafka (librdkafka's mock cluster) that
//! the test owns, producing page views with known counts, and reading what a node committed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use faust::config::{Config, TopicConfig};
use faust::generator::PageViewSource;
use faust::Codec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub const TOPIC: &str = "page_views";
pub const PARTITIONS: i32 = 4;

/// Logs to the test harness's captured output.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A mock cluster owned by the test (it outlives the nodes the test starts and stops).
pub struct Kafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Kafka {
    pub fn new() -> Self {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster
            .create_topic(TOPIC, PARTITIONS, 1)
            .expect("create topic");
        Kafka { cluster }
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Produces `n` page views (seeded) keyed by URL; returns the true count per URL.
    pub fn produce_page_views(&self, n: usize, seed: u64) -> HashMap<String, u64> {
        let mut source = PageViewSource::new(seed, 50, 20);
        let views: Vec<_> = (0..n).map(|i| source.next_view(i as i64)).collect();
        let payloads: Vec<(String, Vec<u8>)> = views
            .iter()
            .map(|v| (v.url.clone(), serde_json::to_vec(v).unwrap()))
            .collect();
        self.produce(payloads.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        let mut truth = HashMap::new();
        for v in views {
            *truth.entry(v.url).or_insert(0) += 1;
        }
        truth
    }

    /// Produces raw key/value records and waits until all are acknowledged.
    pub fn produce<'a>(&self, records: impl Iterator<Item = (&'a str, &'a [u8])>) {
        let producer: ThreadedProducer<_> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("producer");
        for (k, v) in records {
            producer
                .send(BaseRecord::to(TOPIC).key(k).payload(v))
                .expect("enqueue");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// The offsets group `group` committed on the topic, per partition.
    pub fn committed(&self, group: &str) -> HashMap<i32, i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(TOPIC, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        // Turn the list into plain data before the consumer is dropped.
        let map = got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        drop(got);
        map
    }
}

/// A node config for `kafka`, storing in `store`, serving on a free port.
pub fn config(bootstrap: &str, store: &Path, app_id: &str) -> Config {
    let mut c = Config::default();
    c.app.id = app_id.into();
    c.broker.bootstrap = bootstrap.into();
    c.broker.session_timeout = Duration::from_secs(3);
    c.store.path = Some(store.to_path_buf());
    c.web.bind = "127.0.0.1:0".into();
    c.processing.commit_interval = Duration::from_millis(100);
    c.processing.retry_backoff = Duration::from_millis(10);
    c.processing.retry_backoff_max = Duration::from_millis(100);
    c.processing.workers = 2;
    c.topics.insert(
        TOPIC.into(),
        TopicConfig {
            partitions: PARTITIONS,
            key_codec: Codec::String,
            value_codec: Codec::Json,
        },
    );
    c
}

/// Waits until `cond` holds, polling; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
