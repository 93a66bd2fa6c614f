//! End-to-end latency at a fixed load: produces page views at `--rate` per second for
//! `--seconds`, each stamped with the time it was made, into a system's input topic, and reads
//! the system's output topic from its end. Every system stamps its output with the input's
//! timestamp (Kafka Streams does by default; the others are written to), so for each output
//! record latency = now - its timestamp. It starts once probe records come out the other end;
//! the first two seconds after that are warm-up and not counted.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use faust::generator::PageViewSource;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{Producer, ThreadedProducer};

use crate::preload::send_view;
use rdkafka::{ClientConfig, Message, Offset};

/// `faust-bench latency`.
#[derive(clap::Args)]
pub struct Args {
    /// Bootstrap servers.
    #[arg(long)]
    broker: String,
    /// The system's input topic.
    #[arg(long)]
    input: String,
    /// The system's output topic.
    #[arg(long)]
    output: String,
    /// Records per second.
    #[arg(long)]
    rate: u64,
    /// How long to produce.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

const WARM_UP: Duration = Duration::from_secs(2);

/// Sends a probe record every 200 ms until the system's first output arrives, so that its
/// start-up (group join, restore) is not timed as latency. Two minutes at most.
fn wait_ready(
    consumer: &BaseConsumer,
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    source: &mut PageViewSource,
    input: &str,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        send_view(producer, input, None, &source.next_view(now_ms()))?;
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m?;
            // Drain what else the probes made.
            while consumer.poll(Duration::from_millis(500)).is_some() {}
            return Ok(());
        }
    }
    bail!("the system made no output in two minutes of probes on {input}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn run(args: &Args) -> Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10");
    let (consumer, _) = crate::reader(config, &args.broker, &args.output, Offset::End)?;
    // Let the assignment settle at the end before the first record is made.
    let _ = consumer.poll(Duration::from_millis(500));

    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &args.broker)
        // librdkafka's default linger: the same few milliseconds for every system, and fewer
        // produce requests for the broker that shares the machine.
        .set("linger.ms", "5")
        // Keys placed as Java clients (and faust-rs nodes) place them.
        .set("partitioner", "murmur2_random")
        .create()
        .context("creating the producer")?;
    let mut source = PageViewSource::new(7, 10_000, 100_000);
    wait_ready(&consumer, &producer, &mut source, &args.input)?;
    let started = Instant::now();
    let counted_from = now_ms() + WARM_UP.as_millis() as i64;
    let stop_at = started + Duration::from_secs(args.seconds);
    let (mut sent, mut latencies) = (0u64, Vec::new());
    while Instant::now() < stop_at + Duration::from_secs(5) {
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while Instant::now() < stop_at && sent < due {
            send_view(&producer, &args.input, None, &source.next_view(now_ms()))?;
            sent += 1;
        }
        while let Some(m) = consumer.poll(Duration::ZERO) {
            let m = m?;
            if let Some(ts) = m.timestamp().to_millis() {
                if ts >= counted_from {
                    latencies.push(now_ms() - ts);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    producer.flush(Duration::from_secs(10))?;
    if latencies.is_empty() {
        bail!(
            "no output arrived on {} while producing {sent} records",
            args.output
        );
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"sent\": {sent}, \"measured\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"p999_ms\": {}, \"max_ms\": {}}}",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    Ok(())
}
