//! Shared helpers of the integration tests.
//!
//! The broker comes from `FAUST_TEST_BROKER`: unset, each test owns an in-process mock cluster;
//! set to a bootstrap list (`scripts/test` starts Apache Kafka with `scripts/kafka`), tests use
//! that broker. Topic and group names are unique per test, so tests share a broker safely.
#![allow(dead_code)]

pub mod agents;
pub mod bench;
pub mod broker;
pub mod nodes;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faust::config::{AgentConfig, Config, TopicConfig};
use faust::generator::PageViewSource;
use faust::Codec;
use faust_actors::names::changelog_topic;
use faust_actors::names::dead_letter_topic;
use faust_actors::names::members_topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub const PARTITIONS: i32 = 4;
/// The agents the tests run: [`Kafka::config`] makes their dead-letter topics on the mock
/// cluster, which cannot create topics on a node's request.
pub const TEST_AGENTS: &[&str] = &[
    "page_views",
    "flaky",
    "failing",
    "global_counter",
    "windowed_clicks",
    "picky",
    "by_user",
    "by_user-group_by",
    "batcher",
    "emit_then_fail",
    "stuck",
    "views_by_url",
    "views_again",
    "lookup",
    "customers",
    "orders",
];
const TIMEOUT: Duration = Duration::from_secs(30);

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

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos % (1 << 40))
}

enum Backend {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Real(String),
}

/// The test's broker, with an input topic and an output topic of [`PARTITIONS`] each.
pub struct Kafka {
    backend: Backend,
    /// The input topic (page views keyed by URL).
    pub topic: String,
    /// The output topic (what agents emit).
    pub out: String,
}

impl Kafka {
    /// The broker `FAUST_TEST_BROKER` names, or a mock cluster owned by this test.
    pub fn new(test: &str) -> Self {
        let backend = match std::env::var("FAUST_TEST_BROKER") {
            Ok(b) if !b.is_empty() => Backend::Real(b),
            _ => Backend::Mock(MockCluster::new(1).expect("mock cluster")),
        };
        let kafka = Kafka {
            backend,
            topic: unique(&format!("{test}-in")),
            out: unique(&format!("{test}-out")),
        };
        kafka.create_topic(&kafka.topic, PARTITIONS);
        kafka.create_topic(&kafka.out, PARTITIONS);
        kafka
    }

    /// A real broker only: `None` (the test is skipped, and says so) when none is given.
    pub fn real(test: &str) -> Option<Self> {
        real_broker(test).map(|_| Self::new(test))
    }

    pub fn is_real(&self) -> bool {
        matches!(self.backend, Backend::Real(_))
    }

    pub fn bootstrap(&self) -> String {
        match &self.backend {
            Backend::Mock(c) => c.bootstrap_servers(),
            Backend::Real(b) => b.clone(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        match &self.backend {
            Backend::Mock(c) => c.create_topic(name, partitions, 1).expect("create topic"),
            Backend::Real(_) => {
                let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let res = futures::executor::block_on(admin.create_topics(
                    [&topic],
                    &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
                ))
                .expect("create topics");
                for r in res {
                    r.expect("topic created");
                }
            }
        }
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

    /// Produces raw key/value records to the input topic and waits until all are acknowledged.
    pub fn produce<'a>(&self, records: impl Iterator<Item = (&'a str, &'a [u8])>) {
        self.produce_timed(records.map(|(k, v)| (k, v, None)));
    }

    /// As [`Kafka::produce`], each record with the given timestamp (ms), if any.
    pub fn produce_timed<'a>(
        &self,
        records: impl Iterator<Item = (&'a str, &'a [u8], Option<i64>)>,
    ) {
        self.produce_to(&self.topic, records);
    }

    /// As [`Kafka::produce_timed`], to `topic`.
    pub fn produce_to<'a>(
        &self,
        topic: &str,
        records: impl Iterator<Item = (&'a str, &'a [u8], Option<i64>)>,
    ) {
        // Keys placed as Java clients place them (and as the node's queries look for them).
        let producer: ThreadedProducer<_> = self
            .client()
            .set("partitioner", "murmur2_random")
            .create()
            .expect("producer");
        for (k, v, ts) in records {
            let mut record = BaseRecord::to(topic).key(k).payload(v);
            if let Some(ts) = ts {
                record = record.timestamp(ts);
            }
            let mut record = Some(record);
            while let Some(r) = record.take() {
                if let Err((e, back)) = producer.send(r) {
                    assert!(
                        e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        "{e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                    record = Some(back);
                }
            }
        }
        producer.flush(TIMEOUT).expect("flush");
    }

    /// Produces one record to the input topic with a header whose *name* is `name` as raw bytes
    /// (a C or Go producer can send a name that is not UTF-8; rdkafka's API cannot).
    pub fn produce_with_header_name(&self, key: &str, value: &[u8], name: &[u8]) {
        let headers = rdkafka::message::OwnedHeaders::new();
        // `BorrowedHeaders` is librdkafka's headers pointer itself (rdkafka's own casts).
        let native = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
            as *mut rdkafka::bindings::rd_kafka_headers_t;
        // SAFETY: a live, writable headers list; the bytes are copied by librdkafka.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                native,
                name.as_ptr().cast(),
                name.len() as isize,
                b"x".as_ptr().cast(),
                1,
            )
        };
        assert_eq!(
            err,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
        let producer: ThreadedProducer<_> = self.client().create().expect("producer");
        let record = BaseRecord::to(&self.topic)
            .key(key)
            .payload(value)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.flush(TIMEOUT).expect("flush");
    }

    /// Sets topic configs (real Kafka only), e.g. `max.message.bytes`.
    /// Commits `offsets` (partition -> next offset) of the input topic for `group`, as a
    /// member would (the group must have no live member).
    pub fn commit_offsets(&self, group: &str, offsets: &HashMap<i32, i64>) {
        let consumer: BaseConsumer = self.client().set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .unwrap();
        }
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .unwrap();
    }

    /// Grows `topic` to `total` partitions (admin CreatePartitions; real Kafka only).
    pub fn add_partitions(&self, topic: &str, total: usize) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let grow = rdkafka::admin::NewPartitions::new(topic, total);
        let done =
            futures::executor::block_on(admin.create_partitions([&grow], &AdminOptions::new()))
                .unwrap();
        for r in done {
            r.unwrap();
        }
    }

    pub fn set_topic_config(&self, topic: &str, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let mut alter =
            rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic));
        for (k, v) in configs {
            alter = alter.set(k, v);
        }
        let res = futures::executor::block_on(admin.alter_configs(
            [&alter],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        ))
        .expect("alter configs");
        for r in res {
            r.expect("topic config set");
        }
    }

    /// Every record of `topic`: (partition, offset, timestamp, key, payload, headers).
    pub fn records(&self, topic: &str) -> Vec<Read> {
        let mut out = Vec::new();
        self.read_to_end(topic, |m| {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        });
        out
    }

    /// The offsets group `group` committed on the input topic, per partition.
    pub fn committed(&self, group: &str) -> HashMap<i32, i64> {
        committed(&self.bootstrap(), group, &self.topic)
    }

    /// The end offset of each partition of `topic`.
    pub fn ends(&self, topic: &str) -> HashMap<i32, i64> {
        let consumer: BaseConsumer = self.client().create().unwrap();
        (0..PARTITIONS)
            .map(|p| (p, consumer.fetch_watermarks(topic, p, TIMEOUT).unwrap().1))
            .collect()
    }

    /// The `faust-source` header of every record in the output topic: which input records
    /// (partition, offset) an agent emitted something for.
    pub fn emitted_sources(&self) -> HashSet<(i32, i64)> {
        let mut seen = HashSet::new();
        self.read_to_end(&self.out, |msg| {
            let source = msg
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == faust::SOURCE_HEADER))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .expect("output record without a faust-source header");
            let mut parts = source.rsplitn(3, '/');
            let offset: i64 = parts.next().unwrap().parse().unwrap();
            let partition: i32 = parts.next().unwrap().parse().unwrap();
            seen.insert((partition, offset));
        });
        seen
    }

    /// Reads every partition of `topic` from its start to its current end, in order per
    /// partition, handing each record to `f`.
    pub fn read_to_end(&self, topic: &str, mut f: impl FnMut(&BorrowedMessage<'_>)) {
        let ends = self.ends(topic);
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            // A read_committed reader never sees the offsets of transaction markers, so a
            // transactional topic ends where librdkafka says so, before its high watermark.
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        drop(tpl);
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut at_end: HashSet<i32> = HashSet::new();
        let start = Instant::now();
        while ends
            .iter()
            .any(|(p, end)| !at_end.contains(p) && next.get(p).copied().unwrap_or(0) < *end)
        {
            assert!(start.elapsed() < TIMEOUT, "{topic} not read in time");
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = match msg {
                Ok(msg) => msg,
                Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p);
                    continue;
                }
                Err(e) => panic!("reading {topic}: {e}"),
            };
            at_end.remove(&msg.partition());
            next.insert(msg.partition(), msg.offset() + 1);
            f(&msg);
        }
    }

    /// Panics unless an output record names every input record (at least once).
    pub fn assert_every_input_emitted(&self) {
        let seen = self.emitted_sources();
        let inputs = self.all_inputs();
        let mut missing: Vec<_> = inputs.difference(&seen).copied().collect();
        missing.sort();
        assert!(
            missing.is_empty(),
            "{} of {} inputs have no output (emitted {} distinct sources; output ends {:?}); first missing: {:?}",
            missing.len(),
            inputs.len(),
            seen.len(),
            self.ends(&self.out),
            &missing[..missing.len().min(10)]
        );
    }

    /// The last value of every key of a table's changelog (tombstones remove), read from the
    /// start of all its partitions: the table as the changelog has it.
    pub fn changelog_table(&self, app_id: &str) -> HashMap<String, u64> {
        let mut table = HashMap::new();
        self.read_to_end(&changelog_topic(app_id, "page_counts"), |msg| {
            let key = String::from_utf8_lossy(msg.key().unwrap()).into_owned();
            match msg.payload() {
                Some(v) => table.insert(key, serde_json::from_slice(v).unwrap()),
                None => table.remove(&key),
            };
        });
        table
    }

    /// Every (partition, offset) of the input topic.
    pub fn all_inputs(&self) -> HashSet<(i32, i64)> {
        self.ends(&self.topic)
            .into_iter()
            .flat_map(|(p, end)| (0..end).map(move |o| (p, o)))
            .collect()
    }

    /// Creates the changelog of `table` for app `app_id` where the node cannot (the mock
    /// cluster has no admin API; a real broker gets it from the node).
    pub fn prepare_changelog(&self, app_id: &str, table: &str) {
        if let Backend::Mock(cluster) = &self.backend {
            let _ = cluster.create_topic(&changelog_topic(app_id, table), PARTITIONS, 1);
        }
    }

    /// A node config for this broker: the input and output topics, `page_views` emitting to
    /// the output, a store in `store`, HTTP on a free port, fast commits.
    pub fn config(&self, store: &Path, app_id: &str) -> Config {
        if let Backend::Mock(cluster) = &self.backend {
            // The mock cluster has no admin CreateTopics: make the changelog here (once).
            let _ = cluster.create_topic(&changelog_topic(app_id, "page_counts"), PARTITIONS, 1);
            let _ = cluster.create_topic(&members_topic(app_id), 1, 1);
            for agent in TEST_AGENTS {
                let _ = cluster.create_topic(&dead_letter_topic(app_id, agent), PARTITIONS, 1);
            }
        }
        let mut c = Config::default();
        c.app.id = app_id.into();
        c.broker.bootstrap = self.bootstrap();
        c.broker.session_timeout = Duration::from_secs(3);
        c.store.path = Some(store.to_path_buf());
        c.web.bind = "127.0.0.1:0".into();
        c.processing.commit_interval = Duration::from_millis(100);
        c.processing.retry_backoff = Duration::from_millis(10);
        c.processing.retry_backoff_max = Duration::from_millis(100);
        c.processing.workers = 2;
        for name in [&self.topic, &self.out] {
            let topic = TopicConfig {
                partitions: PARTITIONS,
                replication: None,
                key_codec: Codec::String,
                value_codec: Codec::Json,
            };
            c.topics.insert(name.clone(), topic);
        }
        c.agents.insert(
            "page_views".into(),
            AgentConfig {
                topics: None,
                sinks: vec![self.out.clone()],
                ..AgentConfig::default()
            },
        );
        c
    }
}

/// One record read back by [`Kafka::records`].
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Read {
    /// The last header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        let (_, v) = self.headers.iter().rev().find(|(k, _)| k == name)?;
        Some(String::from_utf8_lossy(v.as_deref()?).into_owned())
    }
}

/// The real broker `FAUST_TEST_BROKER` names; `None` (the test is skipped, and says so) when
/// none is given.
pub fn real_broker(test: &str) -> Option<String> {
    match std::env::var("FAUST_TEST_BROKER") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            eprintln!(
                "skipped: `{test}` needs real Kafka (set FAUST_TEST_BROKER, as scripts/test does)"
            );
            None
        }
    }
}

/// The value of the sample `name` (with its labels) on a Prometheus page, if present.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// The offsets `group` committed on `topic`, per partition.
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        // The offsets committed so far, without waiting for an open transaction that holds
        // newer ones (librdkafka's default, read_committed, waits for it to end).
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    // A group the broker has just met may not have a coordinator yet: ask again (bounded).
    let start = Instant::now();
    let got = loop {
        match consumer.committed_offsets(tpl.clone(), TIMEOUT) {
            Ok(got) => break got,
            Err(e)
                if start.elapsed() < TIMEOUT
                    && (is_coordinator_moving(&e)
                        || e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::OperationTimedOut)) =>
            {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("committed offsets of group {group}: {e}"),
        }
    };
    drop(tpl);
    // Plain data before the consumer is dropped (a live list blocks its destruction).
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

/// Whether `e` says the group's coordinator is not ready yet (a transient state of a new group).
fn is_coordinator_moving(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::NotCoordinator | C::CoordinatorLoadInProgress | C::CoordinatorNotAvailable)
    )
}

/// A config for `faust-node` processes: the demo agent on the test's topics, emitting to the
/// output topic (stores and ports are set per process by [`nodes::Nodes`]).
pub fn node_config(kafka: &Kafka, group: &str) -> Config {
    let mut cfg = kafka.config(Path::new("set-per-node"), group);
    cfg.store.path = None;
    cfg.processing.commit_interval = Duration::from_millis(200);
    cfg.log.level = "info,librdkafka=warn,rdkafka=warn".into();
    let agent = cfg.agents.get_mut("page_views").unwrap();
    agent.topics = Some(vec![kafka.topic.clone()]);
    cfg
}

/// `GET path` over HTTP/1.1 to `addr`: the whole response (status line, headers, body), or
/// `None` when nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
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
