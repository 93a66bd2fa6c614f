//! Windowed tables in a running node: closed windows reach the close topic once with their
//! exact counts and late events are counted, not merged (mock cluster and real Kafka); and a
//! node SIGKILLed while windows are open loses no close (real Kafka only).
//!
//! Event times are given to the records by the test, so windows and closes do not depend on
//! the wall clock: nothing here sleeps to let time pass.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::nodes::{kill_one_of_two, KillPlan, Nodes, NODE_CONFIG_VAR};
use common::{logs, unique, wait_for, Kafka};
use faust::config::Config;
use faust::demo::WindowedClicks;
use faust::generator::{PageView, PageViewSource};
use faust::{App, WindowResult};
use rdkafka::message::Message;

const WAIT: Duration = Duration::from_secs(120);
const SIZE: i64 = 10_000;
const TABLE: &str = "clicks_per_window";

/// (url, window start) -> page views.
type Truth = HashMap<(String, i64), u64>;

fn agent(kafka: &Kafka) -> WindowedClicks {
    let size = Duration::from_millis(SIZE as u64);
    WindowedClicks::new(&kafka.topic, size, Duration::ZERO, &kafka.out)
}

fn config(kafka: &Kafka, store: &Path, app: &str) -> Config {
    kafka.prepare_changelog(app, TABLE);
    let mut cfg = kafka.config(store, app);
    cfg.agents.clear();
    cfg
}

/// Produces `n` page views of 30 URLs with event times spread evenly over `(from, to]`, in
/// time order; returns the true count per (url, window). (A timestamp of 0 would mean "now"
/// to the producer.)
fn produce(kafka: &Kafka, n: usize, from: i64, to: i64, seed: u64) -> Truth {
    let mut source = PageViewSource::new(seed, 30, 20);
    let views: Vec<_> = (1..=n as i64)
        .map(|i| source.next_view(from + i * (to - from) / n as i64))
        .collect();
    let bytes: Vec<_> = views
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect();
    kafka.produce_timed(
        views
            .iter()
            .zip(&bytes)
            .map(|(v, b)| (v.url.as_str(), b.as_slice(), Some(v.ts))),
    );
    let mut truth = Truth::new();
    for v in views {
        *truth
            .entry((v.url, v.ts.div_euclid(SIZE) * SIZE))
            .or_insert(0) += 1;
    }
    truth
}

/// One page view of each of `urls` at `ts`.
fn produce_at(kafka: &Kafka, urls: &[&String], ts: i64) {
    let records: Vec<_> = urls
        .iter()
        .map(|url| {
            let user = "test".into();
            let v = PageView {
                url: (*url).clone(),
                user,
                ts,
            };
            (url.as_str(), serde_json::to_vec(&v).unwrap())
        })
        .collect();
    kafka.produce_timed(records.iter().map(|(u, b)| (*u, b.as_slice(), Some(ts))));
}

/// One page view of each URL in `truth` at `ts`: moves every partition's stream time there.
fn advance_to(kafka: &Kafka, truth: &Truth, ts: i64) {
    let mut urls: Vec<&String> = truth.keys().map(|(u, _)| u).collect();
    urls.sort();
    urls.dedup();
    produce_at(kafka, &urls, ts);
}

/// Every close on the close topic: (url, window start) -> the values sent.
fn closes(kafka: &Kafka) -> HashMap<(String, i64), Vec<u64>> {
    let mut out: HashMap<_, Vec<u64>> = HashMap::new();
    kafka.read_to_end(&kafka.out, |msg| {
        let url = String::from_utf8_lossy(msg.key().unwrap()).into_owned();
        let r: WindowResult<u64> = serde_json::from_slice(msg.payload().unwrap()).unwrap();
        assert_eq!(r.end - r.start, SIZE);
        out.entry((url, r.start)).or_default().push(r.value);
    });
    out
}

fn metric(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{table=\"{TABLE}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

#[test]
fn closed_windows_reach_the_close_topic_once_with_exact_counts() {
    logs();
    let kafka = Kafka::new("windows");
    let app = unique("windows");
    let dir = tempfile::tempdir().unwrap();
    let truth = produce(&kafka, 3_000, 0, 50_000, 5);
    // Three late page views: their URLs' partitions are already past 20 s, window [0, 10 s)
    // is closed. They are counted as late and not merged.
    let mut late_urls: Vec<&String> = truth
        .keys()
        .filter(|(_, start)| *start == 40_000)
        .map(|(u, _)| u)
        .collect();
    late_urls.sort();
    produce_at(&kafka, &late_urls[..3], 5);
    advance_to(&kafka, &truth, 100_000);
    let total: i64 = kafka.ends(&kafka.topic).values().sum();

    let cfg = config(&kafka, &dir.path().join("store"), &app);
    let mut node = App::new().agent(agent(&kafka)).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every event committed", WAIT, || {
        kafka.committed(&app).values().sum::<i64>() == total
    });
    let text = info.metrics.encode();
    node.stop().unwrap();

    let got = closes(&kafka);
    let mut wrong: Vec<_> = truth
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(&vec![**v]))
        .map(|(k, v)| (k.clone(), *v, got.get(k).cloned()))
        .collect();
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "{} of {} windows not closed exactly once with the true count: {:?}",
        wrong.len(),
        truth.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(got.len(), truth.len(), "no other window closed");
    assert_eq!(metric(&text, "faust_late_events_total"), 3);
    assert_eq!(
        metric(&text, "faust_windows_closed_total"),
        truth.len() as u64
    );
    // Stream time 100 s deletes every window that started at or before 80 s.
    assert_eq!(
        metric(&text, "faust_windows_expired_total"),
        truth.len() as u64
    );
}

/// The node process of the kill test: this test binary run again with this test's name and
/// `--ignored`, its config in [`NODE_CONFIG_VAR`], until it is killed.
#[test]
#[ignore = "a node process started by windows_close_at_least_once_after_a_node_is_killed"]
fn window_node() {
    let Ok(config) = std::env::var(NODE_CONFIG_VAR) else {
        return;
    };
    let topics: Vec<String> = std::env::var("FAUST_TEST_WINDOW_TOPICS")
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    let size = Duration::from_millis(SIZE as u64);
    let agent = WindowedClicks::new(&topics[0], size, Duration::ZERO, &topics[1]);
    let args = ["window-node", "worker", "--config", config.as_str()];
    let code = App::new().agent(agent).main_from(args);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

#[test]
fn windows_close_at_least_once_after_a_node_is_killed() {
    logs();
    let Some(kafka) = Kafka::real("window-kill") else {
        return;
    };
    let app = unique("window-kill");
    let mut cfg = config(&kafka, Path::new("set-per-node"), &app);
    cfg.store.path = None;
    cfg.processing.commit_interval = Duration::from_millis(200);
    std::env::set_var(
        "FAUST_TEST_WINDOW_TOPICS",
        format!("{},{}", kafka.topic, kafka.out),
    );
    let exe = std::env::current_exe().unwrap();
    let args = ["window_node", "--exact", "--ignored", "--nocapture"];
    let mut nodes = Nodes::with_program(&cfg, exe, &args);
    // 60 windows of event time. Node b dies once it has committed windows of every partition
    // it holds (so open windows must come back from the changelog) and while its windows of
    // the last 10 s are still open.
    let truth = std::cell::RefCell::new(Truth::new());
    let plan = KillPlan {
        before: Box::new(|| *truth.borrow_mut() = produce(&kafka, 40_000, 0, 300_000, 7)),
        after: Box::new(|| {
            for (k, v) in produce(&kafka, 20_000, 300_000, 600_000, 8) {
                *truth.borrow_mut().entry(k).or_insert(0) += v;
            }
        }),
        last: Box::new(|| advance_to(&kafka, &truth.borrow(), 1_000_000)),
    };
    let a = kill_one_of_two(&mut nodes, &kafka, &app, plan);
    let truth = truth.into_inner();

    let got = closes(&kafka);
    let (mut missing, mut below, mut repeated) = (Vec::new(), Vec::new(), 0);
    for (window, count) in &truth {
        match got.get(window) {
            None => missing.push(window.clone()),
            Some(values) => {
                repeated += values.len() - 1;
                below.extend(
                    values
                        .iter()
                        .filter(|v| *v < count)
                        .map(|v| (window, *v, *count)),
                );
            }
        }
    }
    eprintln!(
        "SIGKILL with open windows: {} windows, {} closes ({repeated} repeated)",
        truth.len(),
        got.values().map(Vec::len).sum::<usize>()
    );
    assert!(
        missing.is_empty(),
        "{} windows never closed: {missing:?}",
        missing.len()
    );
    assert!(below.is_empty(), "closes below the truth: {below:?}");
    assert_eq!(got.len(), truth.len(), "no window closed that had no event");
    assert_eq!(nodes.terminate(a, Duration::from_secs(30)).code(), Some(0));
}
