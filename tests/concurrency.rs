//! Agent concurrency (Faust's `concurrency=N`) in a running node, on the mock cluster and on
//! real Kafka: an agent that waits 20 ms on "I/O" per event finishes the same input about N
//! times faster with N = 8 than with N = 1, with exactly the same table; never more than N
//! events of a partition wait at once, and the events of one key wait one after another in
//! offset order, even across an error that retries an event. On real Kafka the N = 8 run is
//! repeated exactly once, with the same table.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{logs, unique, wait_for, Kafka, PARTITIONS};
use faust::config::{Config, Guarantee};
use faust::{AgentError, App, Codec, ConcurrentAgent, Event, Record, Table, TableSpec};
use faust_actors::names::dead_letter_topic;

const WAIT: Duration = Duration::from_secs(120);
const EVENTS: u64 = 800;
const KEYS: u64 = 64;
const IO: Duration = Duration::from_millis(20);
const AGENT: &str = "lookup";

/// What the agent saw, to check the promises after the run.
#[derive(Default)]
struct Seen {
    /// Events of each partition preparing now, and the most at once.
    now: [AtomicUsize; PARTITIONS as usize],
    most: [AtomicUsize; PARTITIONS as usize],
    /// Per key: what preparing it looked like so far.
    keys: Mutex<HashMap<String, KeyState>>,
    /// Events that started while an older one of their key was preparing, or before it.
    out_of_order: AtomicUsize,
    /// Whether the one injected error was returned yet.
    failed: AtomicBool,
    /// Per partition, when its first event started preparing and its last one was handled
    /// (partitions start at slightly different times: each is timed alone).
    spans: Mutex<HashMap<i32, (Instant, Instant)>>,
}

/// Whether an event of a key is preparing, the last offset that started, and every offset
/// that started.
#[derive(Default)]
struct KeyState {
    busy: bool,
    last: i64,
    started: HashSet<i64>,
}

/// One event waiting on its lookup, counted in [`Seen`] until dropped.
struct Waiting<'a> {
    seen: &'a Seen,
    key: &'a str,
    partition: usize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.seen.now[self.partition].fetch_sub(1, Ordering::SeqCst);
        self.seen
            .keys
            .lock()
            .unwrap()
            .get_mut(self.key)
            .unwrap()
            .busy = false;
    }
}

/// Looks each event's value up (20 ms of waiting) and adds what it found, twice the value, to
/// the key's total.
struct Lookup {
    topic: String,
    n: usize,
    totals: Table<String, u64>,
    seen: Arc<Seen>,
}

impl ConcurrentAgent for Lookup {
    type Key = String;
    type Value = u64;
    type Prepared = u64;

    fn name(&self) -> &str {
        AGENT
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.totals.spec()]
    }

    fn concurrency(&self) -> usize {
        self.n
    }

    async fn prepare(
        &self,
        key: Option<&String>,
        value: &u64,
        record: &Record,
    ) -> Result<u64, AgentError> {
        let seen = &self.seen;
        let key = key.cloned().unwrap_or_default();
        {
            let mut keys = seen.keys.lock().unwrap();
            let k = keys.entry(key.clone()).or_default();
            // An event retried (and those after it, dropped with it) prepares again: only a
            // first start may not come before a later event's.
            let again = !k.started.insert(record.offset);
            if k.busy || (record.offset < k.last && !again) {
                seen.out_of_order.fetch_add(1, Ordering::SeqCst);
            }
            k.busy = true;
            k.last = record.offset;
            let mut spans = seen.spans.lock().unwrap();
            let now = Instant::now();
            spans.entry(record.partition).or_insert((now, now));
        }
        let p = record.partition as usize;
        let now = seen.now[p].fetch_add(1, Ordering::SeqCst) + 1;
        seen.most[p].fetch_max(now, Ordering::SeqCst);
        // Ends the wait when the sleep ends, or when the runtime drops the preparation (the
        // batch ended early).
        let _waiting = Waiting {
            seen,
            key: &key,
            partition: p,
        };
        tokio::time::sleep(IO).await;
        // One event fails once: it is retried, prepared again, and counted once.
        if *value == EVENTS / 2 && !seen.failed.swap(true, Ordering::SeqCst) {
            return Err(AgentError::msg(
                "the lookup service is unavailable (injected)",
            ));
        }
        Ok(value * 2)
    }

    async fn handle(
        &self,
        event: &mut Event<'_, String, u64>,
        found: u64,
    ) -> Result<(), AgentError> {
        let key = event.key().cloned().unwrap_or_default();
        event
            .table(&self.totals)?
            .update(key, |t| t.unwrap_or(0) + found)?;
        if let Some((_, last)) = self.seen.spans.lock().unwrap().get_mut(&event.partition()) {
            *last = Instant::now();
        }
        Ok(())
    }
}

/// `EVENTS` values 0.. keyed `k{i % KEYS}`; returns each key's true total (twice its values).
fn produce(kafka: &Kafka) -> HashMap<String, u64> {
    let records: Vec<(String, Vec<u8>)> = (0..EVENTS)
        .map(|i| (format!("k{}", i % KEYS), i.to_string().into_bytes()))
        .collect();
    kafka.produce(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    let mut truth = HashMap::new();
    for i in 0..EVENTS {
        *truth.entry(format!("k{}", i % KEYS)).or_insert(0) += 2 * i;
    }
    truth
}

fn config(kafka: &Kafka, store: &Path, app: &str) -> Config {
    if !kafka.is_real() {
        kafka.create_topic(&dead_letter_topic(app, AGENT), PARTITIONS);
    }
    let mut cfg = kafka.config(store, app);
    cfg.agents.clear();
    cfg
}

/// Runs the agent with concurrency `n` over the whole input; returns how long the events took
/// (each partition's first prepare to its last handle, summed) and what the agent saw.
fn run(kafka: &Kafka, n: usize, total: i64, guarantee: Guarantee) -> (Duration, Arc<Seen>, String) {
    let app = unique(&format!("concurrency-{n}"));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(kafka, &dir.path().join("store"), &app);
    cfg.processing.guarantee = guarantee;
    let seen = Arc::new(Seen::default());
    let agent = Lookup {
        topic: kafka.topic.clone(),
        n,
        totals: Table::new("page_counts").key_codec(Codec::String),
        seen: seen.clone(),
    };
    let mut node = App::new().concurrent_agent(agent).spawn(cfg).unwrap();
    node.wait_ready(WAIT).unwrap();
    wait_for("every event committed", WAIT, || {
        kafka.committed(&app).values().sum::<i64>() == total
    });
    node.stop().unwrap();
    let took = seen
        .spans
        .lock()
        .unwrap()
        .values()
        .map(|(f, l)| *l - *f)
        .sum();
    (took, seen, app)
}

#[test]
fn eight_events_in_flight_finish_an_io_bound_agent_about_eight_times_faster_and_exactly() {
    logs();
    let kafka = Kafka::new("concurrency");
    let truth = produce(&kafka);
    let total: i64 = kafka.ends(&kafka.topic).values().sum();
    assert_eq!(total, EVENTS as i64);

    let (one, seen_one, app_one) = run(&kafka, 1, total, Guarantee::AtLeastOnce);
    let (eight, seen_eight, app_eight) = run(&kafka, 8, total, Guarantee::AtLeastOnce);
    let speedup = one.as_secs_f64() / eight.as_secs_f64();
    eprintln!("concurrency 1: {one:?}; concurrency 8: {eight:?}; {speedup:.1}x faster");
    let mut runs = vec![(1, seen_one, app_one), (8, seen_eight, app_eight)];
    if kafka.is_real() {
        // Exactly once too (the mock cluster has no transactions): the same table.
        let (took, seen, app) = run(&kafka, 8, total, Guarantee::ExactlyOnce);
        eprintln!("concurrency 8, exactly once: {took:?}");
        runs.push((8, seen, app));
    }

    for (n, seen, app) in &runs {
        let n = *n;
        assert_eq!(kafka.changelog_table(app), truth, "concurrency {n}: table");
        let most: Vec<usize> = seen.most.iter().map(|m| m.load(Ordering::SeqCst)).collect();
        eprintln!("concurrency {n}: most events waiting at once per partition: {most:?}");
        assert_eq!(
            most.iter().max(),
            Some(&n),
            "concurrency {n}: most in flight"
        );
        assert_eq!(
            seen.out_of_order.load(Ordering::SeqCst),
            0,
            "concurrency {n}: an event of a key prepared out of order"
        );
        assert!(seen.failed.load(Ordering::SeqCst), "the error was injected");
    }
    // 800 events of 20 ms: 16 s of waiting one at a time, 2 s eight at a time (a partition
    // with fewer keys than 8 waits on fewer at once: the events of a key wait in turn).
    assert!(
        speedup > 5.0,
        "concurrency 8 is only {speedup:.1}x faster than 1 ({one:?} vs {eight:?})"
    );
}
