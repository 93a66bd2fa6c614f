//! Session windows in a running node: every user's activity sessions (an inactivity gap of
//! 2 s) close once, with their exact count, start and end (mock cluster and real Kafka); and a
//! node SIGKILLed with sessions open loses none and closes none below the truth (real Kafka).
//!
//! Event times are given to the records by the test: nothing here waits for time to pass.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::nodes::{kill_one_of_two, KillPlan, Nodes, NODE_CONFIG_VAR};
use common::{logs, unique, wait_for, Kafka, PARTITIONS};
use faust::config::Config;
use faust::generator::PageView;
use faust::{agent, Agent, App, Codec, Event, WindowResult, WindowedTable};
use faust_actors::names::{changelog_topic, dead_letter_topic};
use rdkafka::message::Message;

const WAIT: Duration = Duration::from_secs(120);
const GAP: i64 = 2_000;
const TABLE: &str = "user_sessions";
const AGENT: &str = "sessions";

/// (user, session start) -> (session end, exclusive; views).
type Truth = HashMap<(String, i64), (i64, u64)>;

/// Page views per user session, each closed session sent to `out` as `{"start", "end",
/// "value"}` keyed by user: the short form with a session table.
fn sessions(topic: &str, out: &str) -> impl Agent {
    let gap = Duration::from_millis(GAP as u64);
    let table = WindowedTable::<String, u64>::session(TABLE, gap, |a, b| a + b)
        .key_codec(Codec::String)
        .close_topic(out);
    agent(AGENT).topic(topic).tables(table).handle(
        async |event: &mut Event<'_, String, PageView>, sessions| {
            let user = event.value().user.clone();
            event
                .window(sessions)?
                .update(user, |n| n.unwrap_or(0) + 1)?;
            Ok(())
        },
    )
}

fn config(kafka: &Kafka, store: &Path, app: &str) -> Config {
    if !kafka.is_real() {
        kafka.create_topic(&changelog_topic(app, TABLE), PARTITIONS);
        kafka.create_topic(&dead_letter_topic(app, AGENT), PARTITIONS);
    }
    let mut cfg = kafka.config(store, app);
    cfg.agents.clear();
    cfg
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below) as i64
    }
}

/// Activity of `users` users over `[from, to)`: each user's views follow one another by 0.1 to
/// 1.5 s (same session) or, three times in ten, by 3 to 11 s (a new session). Produced keyed by
/// user in time order; returns every (user, time).
fn produce(kafka: &Kafka, users: usize, from: i64, to: i64, seed: u64) -> Vec<(String, i64)> {
    let mut rng = Rng(seed | 1);
    let mut events = Vec::new();
    for u in 0..users {
        let user = format!("user-{u}");
        let mut t = from + rng.next(5_000);
        while t < to {
            events.push((user.clone(), t));
            t += match rng.next(10) < 7 {
                true => 100 + rng.next(1_400),
                false => GAP + 1_000 + rng.next(8_000),
            };
        }
    }
    events.sort_by_key(|(u, t)| (*t, u.clone()));
    let views: Vec<(String, Vec<u8>, i64)> = events
        .iter()
        .map(|(user, t)| {
            let v = PageView {
                url: "/".into(),
                user: user.clone(),
                ts: *t,
            };
            (user.clone(), serde_json::to_vec(&v).unwrap(), *t)
        })
        .collect();
    kafka.produce_timed(
        views
            .iter()
            .map(|(u, b, t)| (u.as_str(), b.as_slice(), Some(*t))),
    );
    events
}

/// The sessions of `events`: a user's views less than or exactly `GAP` apart are one session.
fn truth(events: &[(String, i64)]) -> Truth {
    let mut by_user: HashMap<&str, Vec<i64>> = HashMap::new();
    for (u, t) in events {
        by_user.entry(u).or_default().push(*t);
    }
    let mut out = Truth::new();
    for (user, mut times) in by_user {
        times.sort();
        let (mut start, mut last, mut n) = (times[0], times[0], 0);
        for t in times {
            if t - last > GAP {
                out.insert((user.to_owned(), start), (last + 1, n));
                (start, n) = (t, 0);
            }
            (last, n) = (t, n + 1);
        }
        out.insert((user.to_owned(), start), (last + 1, n));
    }
    out
}

/// Views of 40 `flush-*` users at `ts`: every partition's stream time moves there, closing
/// every earlier session. Their own sessions stay open, and are left out of the comparison.
fn flush(kafka: &Kafka, ts: i64) {
    let events: Vec<(String, i64)> = (0..40).map(|i| (format!("flush-{i}"), ts)).collect();
    let views: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|(u, t)| {
            let v = PageView {
                url: "/".into(),
                user: u.clone(),
                ts: *t,
            };
            (u.clone(), serde_json::to_vec(&v).unwrap())
        })
        .collect();
    kafka.produce_timed(
        views
            .iter()
            .map(|(u, b)| (u.as_str(), b.as_slice(), Some(ts))),
    );
}

/// Every close on the close topic: (user, start) -> the (end, value) pairs sent.
fn closes(kafka: &Kafka) -> HashMap<(String, i64), Vec<(i64, u64)>> {
    let mut out: HashMap<_, Vec<_>> = HashMap::new();
    kafka.read_to_end(&kafka.out, |msg| {
        let user = String::from_utf8_lossy(msg.key().unwrap()).into_owned();
        let r: WindowResult<u64> = serde_json::from_slice(msg.payload().unwrap()).unwrap();
        out.entry((user, r.start))
            .or_default()
            .push((r.end, r.value));
    });
    out
}

#[test]
fn every_session_closes_once_with_its_exact_count_start_and_end() {
    logs();
    let kafka = Kafka::new("sessions");
    let app = unique("sessions");
    let dir = tempfile::tempdir().unwrap();
    let events = produce(&kafka, 30, 0, 120_000, 11);
    let truth = truth(&events);
    flush(&kafka, 200_000);
    let total: i64 = kafka.ends(&kafka.topic).values().sum();

    let cfg = config(&kafka, &dir.path().join("store"), &app);
    let mut node = App::new()
        .agent(sessions(&kafka.topic, &kafka.out))
        .spawn(cfg)
        .unwrap();
    node.wait_ready(WAIT).unwrap();
    wait_for("every event committed", WAIT, || {
        kafka.committed(&app).values().sum::<i64>() == total
    });
    node.stop().unwrap();

    let got = closes(&kafka);
    let mut wrong: Vec<_> = truth
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(&vec![**v]))
        .map(|(k, v)| (k.clone(), *v, got.get(k).cloned()))
        .collect();
    wrong.sort();
    eprintln!(
        "sessions: {} events, {} sessions, {} closes",
        events.len(),
        truth.len(),
        got.values().map(Vec::len).sum::<usize>()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} sessions not closed exactly once with the true count and end: {:?}",
        wrong.len(),
        truth.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(got.len(), truth.len(), "no other session closed");
}

/// The node process of the kill test: this test binary run again with this test's name and
/// `--ignored`, its config in [`NODE_CONFIG_VAR`], until it is killed.
#[test]
#[ignore = "a node process started by sessions_survive_a_killed_node"]
fn session_node() {
    let Ok(config) = std::env::var(NODE_CONFIG_VAR) else {
        return;
    };
    let topics: Vec<String> = std::env::var("FAUST_TEST_SESSION_TOPICS")
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    let args = ["session-node", "worker", "--config", config.as_str()];
    let app = App::new().agent(sessions(&topics[0], &topics[1]));
    assert_eq!(app.main_from(args), std::process::ExitCode::SUCCESS);
}

#[test]
fn sessions_survive_a_killed_node() {
    logs();
    let Some(kafka) = Kafka::real("session-kill") else {
        return;
    };
    let app = unique("session-kill");
    let mut cfg = config(&kafka, Path::new("set-per-node"), &app);
    cfg.store.path = None;
    cfg.processing.commit_interval = Duration::from_millis(200);
    std::env::set_var(
        "FAUST_TEST_SESSION_TOPICS",
        format!("{},{}", kafka.topic, kafka.out),
    );
    let exe = std::env::current_exe().unwrap();
    let args = ["session_node", "--exact", "--ignored", "--nocapture"];
    let mut nodes = Nodes::with_program(&cfg, exe, &args);
    // Node b dies once it has committed in every partition, with sessions open.
    let events = std::cell::RefCell::new(Vec::new());
    let plan = KillPlan {
        before: Box::new(|| *events.borrow_mut() = produce(&kafka, 100, 0, 300_000, 21)),
        after: Box::new(|| {
            let more = produce(&kafka, 100, 300_000, 600_000, 22);
            events.borrow_mut().extend(more);
        }),
        last: Box::new(|| flush(&kafka, 1_000_000)),
    };
    let a = kill_one_of_two(&mut nodes, &kafka, &app, plan);
    let events = events.into_inner();

    let truth = truth(&events);
    let got = closes(&kafka);
    let (mut missing, mut below, mut repeated) = (Vec::new(), Vec::new(), 0);
    for (session, (end, count)) in &truth {
        match got.get(session) {
            None => missing.push(session.clone()),
            Some(values) => {
                repeated += values.len() - 1;
                below.extend(
                    values
                        .iter()
                        .filter(|(e, v)| v < count || e != end)
                        .map(|v| (session, *v, (*end, *count))),
                );
            }
        }
    }
    eprintln!(
        "SIGKILL with sessions open: {} events, {} sessions, {} closes ({repeated} repeated)",
        events.len(),
        truth.len(),
        got.values().map(Vec::len).sum::<usize>()
    );
    let mut by_partition: HashMap<i32, (usize, usize)> = HashMap::new();
    for (user, start) in truth.keys() {
        let p = faust::Partitioner::Murmur2.partition(user.as_bytes(), PARTITIONS);
        let e = by_partition.entry(p).or_default();
        e.0 += 1;
        e.1 += usize::from(missing.contains(&(user.clone(), *start)));
    }
    eprintln!("(sessions, never closed) by partition: {by_partition:?}");
    if !missing.is_empty() {
        let log = nodes.log(a);
        let odd: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        eprintln!(
            "node a's warnings and errors:\n{}",
            odd[odd.len().saturating_sub(40)..].join("\n")
        );
    }
    assert!(
        missing.is_empty(),
        "{} sessions never closed: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(below.is_empty(), "closes below the truth: {below:?}");
    assert_eq!(
        got.len(),
        truth.len(),
        "no session closed that had no event"
    );
    assert_eq!(nodes.terminate(a, Duration::from_secs(30)).code(), Some(0));
}
