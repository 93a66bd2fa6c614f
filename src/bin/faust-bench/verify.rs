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
    /// `--topic` is the table's changelog, not the output: workload A's `page_counts`, whose
    /// last value per URL must be the true count; or B's `clicks_per_window`, where no window
    /// may ever hold more than its true count and each closed value written must equal it (a
    /// window closed and deleted within one commit leaves only its deletion: its final value
    /// is checked in the output).
    #[arg(long)]
    changelog: bool,
    /// Also reject any repeated output: A's counts of a URL must only grow (a count seen again
    /// means events were counted again from an older table; Kafka Streams' cache skips some
    /// counts, so gaps are allowed), and B's windows must each close once (exactly once).
    #[arg(long)]
    no_duplicates: bool,
    /// At least once: a key may hold more than its true count (events counted again after a
    /// failure), never less.
    #[arg(long, conflicts_with = "no_duplicates")]
    at_least: bool,
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

/// Workload A's output value: the per-event `{"url", "count"}`, or a table change stream's
/// bare count (`[tables.page_counts] sinks`).
#[derive(Deserialize)]
#[serde(untagged)]
enum CountValue {
    Emitted(Count),
    Changed(u64),
}

impl CountValue {
    fn count(self) -> u64 {
        match self {
            CountValue::Emitted(c) => c.count,
            CountValue::Changed(n) => n,
        }
    }
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
    let (mut repeats, mut repeated) = (0u64, Vec::<String>::new());
    let mut peaks: HashMap<String, u64> = HashMap::new();
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
            let parsed = match args.changelog {
                true => changelog_entry(args.workload, &m).map(|e| {
                    e.and_then(|(k, n, closed)| {
                        let top = peaks.entry(k.clone()).or_insert(0);
                        *top = (*top).max(n);
                        closed.then_some((k, n))
                    })
                }),
                false => output_entry(args.workload, &m).map_err(|_| ()),
            };
            match parsed {
                Ok(Some((k, n))) if !k.starts_with(FLUSH_KEY) => {
                    if args.no_duplicates {
                        let last = seen.get(&k).copied();
                        let next_ok = match args.workload {
                            Workload::A => n > last.unwrap_or(0),
                            Workload::B => last.is_none(),
                        };
                        if !next_ok && repeated.len() < 5 {
                            repeated.push(format!("{k}: {n} after {last:?}"));
                        }
                        repeats += u64::from(!next_ok);
                    }
                    seen.insert(k, n);
                }
                Ok(_) => {}
                Err(_) => bad += 1,
            }
        }
        let diff = match (args.changelog, args.workload) {
            (true, Workload::B) => window_history(&expected, &seen, &peaks),
            _ => differences(&expected, &seen, args.at_least),
        };
        if repeats > 0 {
            bail!(
                "{repeats} repeated outputs (not exactly once); first: {}",
                repeated.join(", ")
            );
        }
        if diff.is_empty() && bad == 0 {
            println!(
                "verified: {} keys equal the true counts ({records} output records)",
                match (args.changelog, args.workload) {
                    (true, Workload::B) => seen.len(),
                    _ => expected.len(),
                }
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

fn differences(
    expected: &HashMap<String, u64>,
    seen: &HashMap<String, u64>,
    at_least: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, n) in expected {
        match seen.get(k) {
            Some(m) if m == n || (at_least && m > n) => {}
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

/// An output record as (key, value): A's `{"url", "count"}` (or a bare count), B's `{"start",
/// "value"}`.
fn output_entry(
    workload: Workload,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> serde_json::Result<Option<(String, u64)>> {
    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
    let value = m.payload().unwrap_or_default();
    Ok(Some(match workload {
        Workload::A => (key, serde_json::from_slice::<CountValue>(value)?.count()),
        Workload::B => {
            let c = serde_json::from_slice::<Closed>(value)?;
            (window_key(&key, c.start), c.value)
        }
    }))
}

/// A changelog record as (key, value, closed); `None` for a deletion or B's stream time. Layouts: A is URL -> JSON count; B is `0x01 | start ^ sign bit | URL` ->
/// `state (1 open, 2 closed) | JSON count` (`faust_actors` windowed tables).
fn changelog_entry(
    workload: Workload,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> std::result::Result<Option<(String, u64, bool)>, ()> {
    let (Some(key), Some(value)) = (m.key(), m.payload()) else {
        return Ok(None);
    };
    match workload {
        Workload::A => {
            let n = serde_json::from_slice(value).map_err(|_| ())?;
            Ok(Some((String::from_utf8_lossy(key).into_owned(), n, true)))
        }
        Workload::B => match (key.split_first(), value.split_first()) {
            (Some((1, rest)), Some((&state, count))) if rest.len() >= 8 => {
                let (time, url) = rest.split_at(8);
                let raw = u64::from_be_bytes(time.try_into().map_err(|_| ())?);
                let start = (raw ^ (1 << 63)) as i64;
                let n = serde_json::from_slice(count).map_err(|_| ())?;
                let key = window_key(&String::from_utf8_lossy(url), start);
                Ok(Some((key, n, state == 2)))
            }
            (Some((0, _)), _) => Ok(None),
            _ => Err(()),
        },
    }
}

/// B's changelog history against the truth: no window above its true count, every closed value
/// equal to it, none outside the input, and at least one closed window seen.
fn window_history(
    expected: &HashMap<String, u64>,
    closed: &HashMap<String, u64>,
    peaks: &HashMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, top) in peaks.iter().filter(|(k, _)| !k.starts_with(FLUSH_KEY)) {
        match expected.get(k) {
            None => out.push(format!("{k}: not in the input")),
            Some(n) if top > n => out.push(format!("{k}: reached {top} (true {n})")),
            Some(n) => match closed.get(k) {
                Some(c) if c != n => out.push(format!("{k}: closed at {c} (true {n})")),
                _ => {}
            },
        }
    }
    if closed.is_empty() {
        out.push("no closed window in the changelog".into());
    }
    out
}
