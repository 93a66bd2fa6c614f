//! The benchmark's input: the fixed-seed page views (key = URL drawn Zipf-like from 10,000,
//! value = JSON `{"url", "user", "ts"}`), one per millisecond of event time ending two minutes
//! before now, then one flush record per partition 30 s of event time later so every window
//! closes. The true counts go to a JSON file the verifier reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use faust::generator::{PageView, PageViewSource};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::{FLUSH_KEY, WINDOW_MS};

/// `faust-bench preload`.
#[derive(clap::Args)]
pub struct Args {
    /// Bootstrap servers.
    #[arg(long)]
    broker: String,
    /// The input topic (created; it must not exist, unless `--existing`).
    #[arg(long, default_value = "page_views")]
    topic: String,
    /// The topic exists already (say, created by nodes waiting for input) with `--partitions`.
    #[arg(long)]
    existing: bool,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// How many page views.
    #[arg(long)]
    records: u64,
    /// Distinct URLs.
    #[arg(long, default_value_t = 10_000)]
    urls: u32,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Records per second (0: as fast as the broker takes them), so that a test's faults hit
    /// a stream still flowing.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Where the true counts go.
    #[arg(long)]
    truth: PathBuf,
}

/// The true counts, as the verifier reads them.
#[derive(Serialize, Deserialize)]
pub struct Truth {
    /// Records in the topic, flush records included.
    pub records: u64,
    /// Workload A: views per URL.
    pub a: HashMap<String, u64>,
    /// Workload B: views per URL per window, keyed `"<url>@<window start ms>"`.
    pub b: HashMap<String, u64>,
}

/// The key workload B's results are compared by.
pub fn window_key(url: &str, start: i64) -> String {
    format!("{url}@{start}")
}

pub fn run(args: &Args) -> Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    // Event times end two minutes ago: Kafka rejects timestamps more than an hour ahead, and
    // windows stay aligned to 10 s.
    let first = (now - args.records as i64 - 150_000) / WINDOW_MS * WINDOW_MS;
    if !args.existing {
        create_topic(&args.broker, &args.topic, args.partitions)?;
    }
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &args.broker)
        .set("linger.ms", "50")
        // Keys placed as Java clients (and faust-rs nodes) place them.
        .set("partitioner", "murmur2_random")
        // A broker outage during a paced preload must not write a record twice.
        .set("enable.idempotence", "true")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .context("creating the producer")?;
    let mut source = PageViewSource::new(args.seed, args.urls, 100_000);
    let mut truth = Truth {
        records: args.records + args.partitions as u64,
        a: HashMap::new(),
        b: HashMap::new(),
    };
    let started = std::time::Instant::now();
    for i in 0..args.records {
        if args.rate > 0 && i % 100 == 0 {
            let due = Duration::from_secs_f64(i as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let view = source.next_view(first + i as i64);
        *truth.a.entry(view.url.clone()).or_default() += 1;
        let start = view.ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        *truth.b.entry(window_key(&view.url, start)).or_default() += 1;
        send_view(&producer, &args.topic, None, &view)?;
    }
    let flush = PageView {
        url: FLUSH_KEY.into(),
        user: "none".into(),
        ts: first + args.records as i64 + 3 * WINDOW_MS,
    };
    for p in 0..args.partitions {
        send_view(&producer, &args.topic, Some(p), &flush)?;
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing the producer")?;
    let file = std::fs::File::create(&args.truth)
        .with_context(|| format!("creating {}", args.truth.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(file), &truth)?;
    println!(
        "preloaded {} records into {} ({} partitions): {} URLs, {} windows of URLs",
        truth.records,
        args.topic,
        args.partitions,
        truth.a.len(),
        truth.b.len()
    );
    Ok(())
}

/// Sends one page view (key = URL, JSON value, record timestamp = its `ts`), to `partition`
/// or the key's, waiting while the producer's queue is full.
pub fn send_view(
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    partition: Option<i32>,
    view: &PageView,
) -> Result<()> {
    let value = serde_json::to_vec(view)?;
    let mut record = BaseRecord::to(topic)
        .key(&view.url)
        .payload(&value)
        .timestamp(view.ts);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                back,
            )) => {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => bail!("producing to {topic}: {e}"),
        }
    }
}

/// Creates `topic` with replication factor 1.
pub fn create_topic(broker: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .context("creating the admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&new], &opts))
        .with_context(|| format!("creating topic {topic}"))?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating topic {name}: {code}");
        }
    }
    Ok(())
}
