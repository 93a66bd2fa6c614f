//! The broker `scripts/kafka` starts serves what faust-rs relies on beyond consumer groups:
//! transactions (with read_committed readers) and log compaction. Real Kafka only.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{unique, Kafka};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);

fn client(kafka: &Kafka) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", kafka.bootstrap());
    c
}

/// Every (key, value) of partition 0 of `topic`, read from the start with `isolation`.
fn read_all(kafka: &Kafka, topic: &str, isolation: &str) -> Vec<(String, String)> {
    let consumer: BaseConsumer = client(kafka)
        .set("group.id", unique("reader"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer.fetch_watermarks(topic, 0, T).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    drop(tpl);
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        let position = consumer.position().unwrap();
        let at = position.elements()[0].offset();
        drop(position);
        if matches!(at, Offset::Offset(o) if o >= high) || start.elapsed() > Duration::from_secs(5)
        {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            out.push((text(m.key()), text(m.payload())));
        }
    }
    out
}

#[test]
fn transactions_commit_and_abort_for_read_committed_readers() {
    let Some(kafka) = Kafka::real("txn") else {
        return;
    };
    let topic = unique("txn-topic");
    kafka.create_topic(&topic, 1);
    let producer: BaseProducer = client(&kafka)
        .set("transactional.id", unique("txn-id"))
        .create()
        .unwrap();
    producer.init_transactions(T).unwrap();
    for (value, commit) in [("kept", true), ("aborted", false), ("kept-too", true)] {
        producer.begin_transaction().unwrap();
        producer
            .send(BaseRecord::to(&topic).key("k").payload(value))
            .unwrap();
        producer.flush(T).unwrap();
        match commit {
            true => producer.commit_transaction(T).unwrap(),
            false => producer.abort_transaction(T).unwrap(),
        }
    }
    let committed: Vec<String> = read_all(&kafka, &topic, "read_committed")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(committed, ["kept", "kept-too"]);
    let everything = read_all(&kafka, &topic, "read_uncommitted");
    assert_eq!(
        everything.len(),
        3,
        "the aborted record is in the log: {everything:?}"
    );
}

#[test]
fn compacted_topics_keep_the_last_value_per_key() {
    let Some(kafka) = Kafka::real("compact") else {
        return;
    };
    let topic = unique("compact-topic");
    let admin: AdminClient<DefaultClientContext> = client(&kafka).create().unwrap();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.001")
        .set("delete.retention.ms", "100");
    for r in futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new())).unwrap()
    {
        r.unwrap();
    }
    let producer: BaseProducer = client(&kafka).create().unwrap();
    for round in 0..5 {
        for key in ["a", "b", "c"] {
            let value = format!("{key}{round}");
            producer
                .send(BaseRecord::to(&topic).key(key).payload(&value))
                .unwrap();
        }
        producer.flush(T).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let start = Instant::now();
    loop {
        // A record after segment.ms rolls the segment, so the cleaner may take the old ones.
        producer
            .send(BaseRecord::to(&topic).key("roll").payload("x"))
            .unwrap();
        producer.flush(T).unwrap();
        let all = read_all(&kafka, &topic, "read_uncommitted");
        let versions = all.iter().filter(|(k, _)| k != "roll").count();
        if versions == 3 {
            let last: HashMap<_, _> = all.into_iter().collect();
            assert_eq!(last["a"], "a4");
            assert_eq!(last["c"], "c4");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not compacted after 90 s: {versions} versions of 3 keys remain"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
