//! Changelog replay rate: how fast one partition's tables are rebuilt from their changelog,
//! next to a bare librdkafka consumer reading the same records in the same run (the ceiling).
//!
//!   cargo bench --bench changelog_replay            (embedded mock cluster, 150,000 records)
//!   FAUST_BENCH_BROKER=127.0.0.1:9092 FAUST_BENCH_RECORDS=1000000 cargo bench --bench changelog_replay
//!
//! Records are small (a key of ~8 bytes, a JSON integer), as a count table writes them. Two
//! shapes: 10 versions per key (a count table's changelog before compaction: each commit writes
//! each changed key) and 1 version per key (fully compacted).
//! Target: at least 500,000 records/s per partition actor.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faust_actors::io::changelog::Restore;
use faust_actors::names::changelog_topic;
use faust_actors::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() {
    for versions in [10, 1] {
        run(versions);
    }
}

fn run(versions: usize) {
    let records: usize = std::env::var("FAUST_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000);
    let keys = (records / versions).max(1);
    let mock;
    let bootstrap = match std::env::var("FAUST_BENCH_BROKER") {
        Ok(b) => b,
        Err(_) => {
            mock = MockCluster::new(1).expect("mock cluster");
            mock.bootstrap_servers()
        }
    };
    let app = format!("bench-{}-{versions}", std::process::id());
    let topic = changelog_topic(&app, "counts");
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    create(&client, &topic);

    let producer: ThreadedProducer<_> = client
        .clone()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()
        .unwrap();
    for i in 0..records {
        let key = format!("k{}", i % keys);
        let value = (i / keys + 1).to_string();
        loop {
            match producer.send(
                BaseRecord::to(&topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value),
            ) {
                Ok(()) => break,
                Err(_) => producer.poll(Duration::from_millis(5)),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let bare = bare_read(&client, &topic, records);
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let tree = db.open_tree("partition/bench/0").unwrap();
    let restore = Restore {
        client: client.clone(),
        group: format!("{app}-restore"),
        tables: vec![(Arc::from("counts"), topic.clone())],
        partition: 0,
        timeout: Duration::from_secs(30),
    };
    let metrics = Metrics::new().unwrap();
    let done = restore.run(&tree, Path::new("bench"), &metrics).unwrap();
    assert_eq!(done.records as usize, records, "every record replayed");
    let stored = tree.scan_prefix(b"d/counts\0").count();
    assert_eq!(stored, keys, "one stored key per table key");

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let (replay, ceiling) = (rate(records, done.elapsed), rate(records, bare));
    println!("-- {records} records, {versions} version(s) per key, {keys} keys");
    println!(
        "changelog replay: {records} records in {:.2?} = {replay:.0} records/s",
        done.elapsed
    );
    println!("bare consumer:    {records} records in {bare:.2?} = {ceiling:.0} records/s");
    println!(
        "ratio replay/bare-consumer = {:.2}; target 500000 records/s: {}",
        replay / ceiling,
        if replay >= 500_000.0 { "met" } else { "MISSED" }
    );
}

fn create(client: &ClientConfig, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = client.create().unwrap();
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // The mock cluster auto-creates topics on first use; a real broker needs this.
    let _ = futures::executor::block_on(admin.create_topics([&new], &opts));
}

/// Reads the partition to the end with a bare consumer; returns the time it took.
fn bare_read(client: &ClientConfig, topic: &str, records: usize) -> Duration {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", format!("bench-bare-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "16777216")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    drop(tpl);
    let start = Instant::now();
    let mut seen = 0;
    while seen < records {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "bare read stalled at {seen}"
        );
    }
    start.elapsed()
}
