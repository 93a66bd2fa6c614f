//! Windowed count next to the plain count, in the same run, on the same records: how much a
//! tumbling-window table (10 s event-time windows, closes sent to a topic) costs over a plain
//! count table.
//!
//!   cargo bench --bench windowed_count            (embedded mock cluster, 120,000 records)
//!   FAUST_BENCH_BROKER=127.0.0.1:9092 FAUST_BENCH_RECORDS=1000000 cargo bench --bench windowed_count
//!
//! Records are the benchmark workload's page views (JSON, keyed by one of 10,000 URLs drawn
//! Zipf-like), 4 partitions, one every millisecond of event time (so 10,000 per window). Each
//! run is a fresh node (its own group, store and changelogs) reading the topic from the start;
//! the time is from its first finished event to its last, so group joins do not count.

use std::time::{Duration, Instant};

use faust::config::{Config, TopicConfig};
use faust::demo::{PageViews, WindowedClicks};
use faust::generator::PageViewSource;
use faust::{Agent, App, Codec};
use faust_actors::names::changelog_topic;
use faust_actors::names::members_topic;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const PARTITIONS: i32 = 4;
const TOPIC: &str = "page_views";
const CLOSES: &str = "page_views_per_window";

fn main() {
    let records: usize = std::env::var("FAUST_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120_000);
    let topic = format!("{TOPIC}-{}", std::process::id());
    let closes = format!("{CLOSES}-{}", std::process::id());
    let mock;
    let bootstrap = match std::env::var("FAUST_BENCH_BROKER") {
        Ok(b) => {
            create(&b, &topic);
            b
        }
        Err(_) => {
            // The mock cluster has no admin API: every topic is made here.
            mock = MockCluster::new(1).expect("mock cluster");
            let apps = ["plain", "windowed"].map(app_id);
            for topic in [&topic, &closes] {
                mock.create_topic(topic, PARTITIONS, 1).unwrap();
            }
            for app in &apps {
                mock.create_topic(&members_topic(app), 1, 1).unwrap();
                for table in ["page_counts", "clicks_per_window"] {
                    let changelog = changelog_topic(app, table);
                    mock.create_topic(&changelog, PARTITIONS, 1).unwrap();
                }
            }
            mock.bootstrap_servers()
        }
    };
    produce(&bootstrap, &topic, records);

    let windowed = WindowedClicks::new(&topic, Duration::from_secs(10), Duration::ZERO, &closes);
    let plain = run(
        &bootstrap,
        &topic,
        "plain",
        PageViews::on_topic(&topic),
        records,
    );
    let windowed = run(&bootstrap, &topic, "windowed", windowed, records);
    println!("-- {records} page views, {PARTITIONS} partitions, one node, at-least-once");
    for (name, took) in [("plain count", plain), ("windowed count", windowed)] {
        let rate = records as f64 / took.as_secs_f64();
        println!("{name:<15} {took:>9.2?}  {rate:>9.0} events/s");
    }
    println!(
        "ratio windowed/plain = {:.2}",
        plain.as_secs_f64() / windowed.as_secs_f64()
    );
}

fn app_id(name: &str) -> String {
    format!("bench-{name}-{}", std::process::id())
}

/// Preloads `records` page views, one per millisecond of event time.
fn produce(bootstrap: &str, topic: &str, records: usize) {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut source = PageViewSource::new(42, 10_000, 100_000);
    let start = 1_700_000_000_000;
    for i in 0..records {
        let view = source.next_view(start + i as i64);
        let value = serde_json::to_vec(&view).unwrap();
        let mut record = BaseRecord::to(topic)
            .key(&view.url)
            .payload(&value)
            .timestamp(view.ts);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// Creates `topic` on a real broker (the nodes create their own internal topics).
fn create(bootstrap: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let _ = futures::executor::block_on(admin.create_topics([&new], &opts));
}

/// Runs one node with `agent` until it has finished every record; returns the time from its
/// first finished event to its last.
fn run(bootstrap: &str, topic: &str, name: &str, agent: impl Agent, records: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.app.id = app_id(name);
    config.broker.bootstrap = bootstrap.into();
    config.broker.session_timeout = Duration::from_secs(3);
    config.store.path = Some(dir.path().join("store"));
    config.web.bind = "127.0.0.1:0".into();
    config.processing.commit_interval = Duration::from_millis(100);
    config.log.level = "warn".into();
    let spec = TopicConfig {
        partitions: PARTITIONS,
        replication: None,
        key_codec: Codec::String,
        value_codec: Codec::Json,
    };
    config.topics.insert(topic.into(), spec);
    let mut node = App::new().agent(agent).spawn(config).unwrap();
    let info = node.wait_ready(Duration::from_secs(60)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let wait = |what: &str, done: &dyn Fn(u64) -> bool| loop {
        let n = info.metrics.all_events();
        if done(n) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: stuck {what} at {n} events"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let first = wait("before the first event", &|n| n > 0);
    let last = wait("before the last event", &|n| n >= records as u64);
    node.stop().unwrap();
    last - first
}
