//! Compares a system's output topic with the true counts: the last value per URL (workload A,
//! values `{"url", "count"}`) or per URL and window (workload B, values `{"start", "end",
//! "value"}` keyed by URL). Results can lag a system's last commit (Faust closes windows on a
//! timer), so it reads on until they match or `--wait` passes, then names what differs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset};
use serde::Deserialize;

use crate::preload::{window_key, Truth};
use crate::{Workload, FLUSH_KEY};

/// `faust-bench verify`.
#[derive(clap::Args)]
pub struct Args {
    /// Bootstrap servers.
    #[arg(long)]
    broker: String,
    /// The output topic.
    #[arg(long)]
    topic: String,
    /// Which workload made it.
    #[arg(long, value_enum)]
    workload: Workload,
    /// The true counts (`faust-bench preload --truth`).
    #[arg(long)]
    truth: PathBuf,
    /// How long to wait, in seconds, for the output to become complete.
    #[arg(long, default_value_t = 30)]
    wait: u64,
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

#[derive(Deserialize)]
struct Closed {
    start: i64,
    value: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let file = std::fs::File::open(&args.truth)
        .with_context(|| format!("opening {}", args.truth.display()))?;
    let truth: Truth = serde_json::from_reader(std::io::BufReader::new(file))?;
    let expected = match args.workload {
        Workload::A => truth.a,
        Workload::B => truth.b,
    };
    let mut config = ClientConfig::new();
    config.set("isolation.level", "read_committed");
    let (consumer, partitions) =
        crate::reader(config, &args.broker, &args.topic, Offset::Beginning)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let (mut seen, mut records, mut bad) = (HashMap::new(), 0u64, 0u64);
    loop {
        // Read to the current end of every partition.
        let ends: Vec<i64> = (0..partitions)
            .map(|p| consumer.fetch_watermarks(&args.topic, p, Duration::from_secs(10)))
            .map(|w| w.map(|(_, high)| high))
            .collect::<Result<_, _>>()?;
        let mut positions = vec![0i64; partitions as usize];
        let at_end = |pos: &[i64]| pos.iter().zip(&ends).all(|(p, e)| p >= e);
        let started = Instant::now();
        while !at_end(&positions) && started.elapsed() < Duration::from_secs(120) {
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                positions = current_positions(&consumer, &args.topic, partitions, &positions);
                continue;
            };
            let m = m?;
            positions[m.partition() as usize] = m.offset() + 1;
            records += 1;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = m.payload().unwrap_or_default();
            let parsed = match args.workload {
                Workload::A => serde_json::from_slice::<Count>(value).map(|c| (key, c.count)),
                Workload::B => serde_json::from_slice::<Closed>(value)
                    .map(|c| (window_key(&key, c.start), c.value)),
            };
            match parsed {
                Ok((k, n)) if !k.starts_with(FLUSH_KEY) => {
                    seen.insert(k, n);
                }
                Ok(_) => {}
                Err(_) => bad += 1,
            }
        }
        let diff = differences(&expected, &seen);
        if diff.is_empty() && bad == 0 {
            println!(
                "verified: {} keys equal the true counts ({records} output records)",
                expected.len()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} of {} keys differ from the true counts, {bad} output records unreadable \
                 ({records} read); first: {}",
                diff.len(),
                expected.len(),
                diff.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Where the consumer stands per partition (its fetch position), for partitions past which it
/// got no record (compacted or aborted records leave gaps before the end).
fn current_positions(c: &BaseConsumer, topic: &str, n: i32, known: &[i64]) -> Vec<i64> {
    let Ok(pos) = c.position() else {
        return known.to_vec();
    };
    (0..n)
        .map(|p| match pos.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(known[p as usize]),
            _ => known[p as usize],
        })
        .collect()
}

fn differences(expected: &HashMap<String, u64>, seen: &HashMap<String, u64>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, n) in expected {
        match seen.get(k) {
            Some(m) if m == n => {}
            Some(m) => out.push(format!("{k}: {m} (true {n})")),
            None => out.push(format!("{k}: missing (true {n})")),
        }
    }
    for k in seen.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(format!("{k}: not in the input"));
    }
    out.sort();
    out
}
