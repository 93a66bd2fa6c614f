//! Production faults on the processing path (issue "nothing stalls silently, nothing loops,
//! nothing is lost"): records whose bytes cannot be read, outputs and dead letters the broker
//! refuses for good, sinks that do not exist, and a failed attempt's output under both
//! guarantees. Each test checks the table against the input itself, every offset committed,
//! the dead letters byte for byte, and a bound on commit failures (no loop).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{http_get, logs, unique, wait_for, Kafka, Read};
use faust::config::{Config, Guarantee};
use faust::demo::{page_counts, PageView, PageViews};
use faust::{Agent, AgentError, App, Event, Store};
use faust_actors::api::policy::{ORIGINAL_SIZE_HEADER, REASON_HEADER, SOURCE_TIMESTAMP_HEADER};
use faust_actors::names::dead_letter_topic;

const WAIT: Duration = Duration::from_secs(60);

fn view(url: &str, ts: i64) -> Vec<u8> {
    serde_json::to_vec(&PageView {
        url: url.into(),
        user: "u".into(),
        ts,
    })
    .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Produces `n` page views twice around `between` (which produces the odd record); returns
/// the true counts of the page views.
fn around(kafka: &Kafka, n: usize, between: impl FnOnce()) -> HashMap<String, u64> {
    let mut truth = kafka.produce_page_views(n, 21);
    between();
    for (url, k) in kafka.produce_page_views(n, 22) {
        *truth.entry(url).or_default() += k;
    }
    truth
}

fn total(kafka: &Kafka) -> i64 {
    kafka.ends(&kafka.topic).values().sum()
}

/// Runs the page-view agent until every input offset is committed; returns the metrics text
/// and `/healthz` as they were then, and the node's table.
struct Run {
    invalid: HashMap<String, u64>,
    commit_failures: u64,
    aborted: u64,
    health: String,
    table: HashMap<String, u64>,
}

fn run(kafka: &Kafka, cfg: Config) -> Run {
    let store = cfg.store.path.clone().unwrap();
    let group = cfg.app.id.clone();
    let mut node = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(cfg)
        .unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    let end = total(kafka);
    wait_for("every offset committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == end
    });
    let m = &info.metrics;
    let invalid = [
        "header",
        "value",
        "output_timestamp",
        "output_too_large",
        "output_unknown_topic",
    ]
    .into_iter()
    .map(|r| {
        let n = m
            .invalid_records_total
            .with_label_values(&["page_views", r])
            .get();
        (r.to_owned(), n)
    })
    .filter(|(_, n)| *n > 0)
    .collect();
    let commit_failures = m.commit_failures_total.get();
    let aborted = m.transactions_total.with_label_values(&["aborted"]).get();
    let health = http_get(info.web_addr.unwrap(), "/healthz").unwrap();
    node.stop().unwrap();
    let table = Store::open_existing(&store)
        .unwrap()
        .table_contents(&page_counts())
        .unwrap();
    Run {
        invalid,
        commit_failures,
        aborted,
        health,
        table,
    }
}

fn dead_letters(kafka: &Kafka, group: &str) -> Vec<Read> {
    kafka.records(&dead_letter_topic(group, "page_views"))
}

/// Every input but those keyed `key` has an output naming it.
fn assert_every_input_emitted_but(kafka: &Kafka, key: &[u8]) {
    let odd: HashSet<(i32, i64)> = kafka
        .records(&kafka.topic)
        .iter()
        .filter(|r| r.key.as_deref() == Some(key))
        .map(|r| (r.partition, r.offset))
        .collect();
    assert_eq!(odd.len(), 1);
    let expected: HashSet<_> = kafka.all_inputs().difference(&odd).copied().collect();
    assert_eq!(
        kafka.emitted_sources(),
        expected,
        "every other view emitted"
    );
}

#[test]
fn a_header_name_that_is_not_utf8_goes_to_the_policy_and_nothing_is_lost() {
    logs();
    let kafka = Kafka::new("hdr");
    let bad = view("/bad-header", 1);
    let truth = around(&kafka, 300, || {
        kafka.produce_with_header_name("/bad-header", &bad, b"\xff\xfe")
    });
    let dir = tempfile::tempdir().unwrap();
    let group = unique("hdr");
    let cfg = kafka.config(&dir.path().join("store"), &group);

    let run = run(&kafka, cfg);

    assert_eq!(
        run.table, truth,
        "every good view counted once, the bad one not"
    );
    assert_eq!(run.invalid, HashMap::from([("header".into(), 1)]));
    assert!(run.health.starts_with("HTTP/1.1 200"), "{}", run.health);
    let letters = dead_letters(&kafka, &group);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.key.as_deref(), Some(&b"/bad-header"[..]));
    assert_eq!(
        letter.payload.as_deref(),
        Some(&bad[..]),
        "payload unchanged"
    );
    assert_eq!(letter.header(REASON_HEADER).as_deref(), Some("header"));
    let error = letter.header("faust-error").unwrap();
    assert!(
        error.contains("not UTF-8") && error.contains("ff fe"),
        "{error}"
    );
    assert!(
        letter.headers.iter().any(|(k, _)| k == "\u{fffd}\u{fffd}"),
        "the bad name kept, its bytes replaced: {:?}",
        letter.headers
    );
}

#[test]
fn a_dead_letter_too_large_for_its_topic_is_truncated_not_retried_for_ever() {
    logs();
    let Some(kafka) = Kafka::real("dlq-size") else {
        return;
    };
    let group = unique("dlq-size");
    let dlq = dead_letter_topic(&group, "page_views");
    kafka.create_topic(&dlq, common::PARTITIONS);
    kafka.set_topic_config(&dlq, &[("max.message.bytes", "65536")]);
    let huge = vec![b'x'; 100_000]; // not JSON: the value does not decode
    let truth = around(&kafka, 200, || {
        kafka.produce([("/huge", huge.as_slice())].into_iter())
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = kafka.config(&dir.path().join("store"), &group);

    let run = run(&kafka, cfg);

    assert_eq!(run.table, truth);
    assert_eq!(run.invalid, HashMap::from([("value".into(), 1)]));
    assert_eq!(
        run.commit_failures, 0,
        "no rewind: the letter is written once"
    );
    let letters = dead_letters(&kafka, &group);
    assert_eq!(letters.len(), 1, "one letter, truncated");
    let letter = &letters[0];
    assert_eq!(letter.payload.as_deref(), Some(&huge[..16 * 1024]));
    assert_eq!(
        letter.header(ORIGINAL_SIZE_HEADER).as_deref(),
        Some("100000")
    );
    assert_eq!(letter.header(REASON_HEADER).as_deref(), Some("value"));
    assert_eq!(letter.key.as_deref(), Some(&b"/huge"[..]));
}

#[test]
fn an_output_the_sink_refuses_for_its_timestamp_goes_to_the_policy_once() {
    logs();
    let Some(kafka) = Kafka::real("future") else {
        return;
    };
    // The source accepts a record 2 h ahead (as a 3.x cluster does); the sink and the
    // dead-letter topic keep Kafka 4's default limit of 1 h.
    kafka.set_topic_config(
        &kafka.topic,
        &[("message.timestamp.after.max.ms", "86400000")],
    );
    let ahead = now_ms() + 2 * 3600 * 1000;
    let future = view("/future", ahead);
    let truth = around(&kafka, 200, || {
        kafka.produce_timed([("/future", future.as_slice(), Some(ahead))].into_iter())
    });
    let dir = tempfile::tempdir().unwrap();
    let group = unique("future");
    let cfg = kafka.config(&dir.path().join("store"), &group);

    let run = run(&kafka, cfg);

    assert_eq!(
        run.table, truth,
        "the refused event's write rolled back, no other lost"
    );
    assert_eq!(run.invalid, HashMap::from([("output_timestamp".into(), 1)]));
    assert_eq!(
        run.commit_failures, 0,
        "refused before the broker: no rewind"
    );
    let letters = dead_letters(&kafka, &group);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.payload.as_deref(), Some(&future[..]));
    assert_eq!(
        letter.header(SOURCE_TIMESTAMP_HEADER),
        Some(ahead.to_string()),
        "stamped with the time of sending, the original kept"
    );
    assert!(letter.timestamp.unwrap() < ahead - 3600 * 1000);
    assert_every_input_emitted_but(&kafka, b"/future");
}

/// A page view whose output its sink refuses, among 600 others, run under `guarantee`: the
/// page-view agent emits {url, count}, so a 100 kB URL makes a 100 kB output, which the sink
/// (`max.message.bytes` 64 KiB) refuses, and with it the produce batch it is in. Returns the
/// run, the true counts, the huge view's URL and bytes, and the group.
fn too_large_run(
    kafka: &Kafka,
    guarantee: Guarantee,
) -> (Run, HashMap<String, u64>, String, Vec<u8>, String) {
    kafka.set_topic_config(&kafka.out, &[("max.message.bytes", "65536")]);
    let url = format!("/{}", "u".repeat(100_000));
    let huge = view(&url, 1);
    let truth = around(kafka, 300, || {
        kafka.produce([(url.as_str(), huge.as_slice())].into_iter())
    });
    let dir = tempfile::tempdir().unwrap();
    let group = unique("too-large");
    let mut cfg = kafka.config(&dir.path().join("store"), &group);
    cfg.processing.guarantee = guarantee;
    (run(kafka, cfg), truth, url, huge, group)
}

#[test]
fn an_output_too_large_for_its_sink_sends_its_source_to_the_policy_and_spares_its_batch() {
    logs();
    let Some(kafka) = Kafka::real("too-large") else {
        return;
    };
    let (run, truth, url, huge, group) = too_large_run(&kafka, Guarantee::AtLeastOnce);

    assert_eq!(
        run.table, truth,
        "its neighbours in the batch counted, it not"
    );
    assert_eq!(run.invalid, HashMap::from([("output_too_large".into(), 1)]));
    assert!(
        (1..=4).contains(&run.commit_failures),
        "a rewind or two, not a loop: {}",
        run.commit_failures
    );
    let letters = dead_letters(&kafka, &group);
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_eq!(letters[0].payload.as_deref(), Some(&huge[..]));
    assert_every_input_emitted_but(&kafka, url.as_bytes());
}

/// Exactly once, a refused output leaves the whole transaction able only to abort: every
/// partition stops at its next failed send and waits for the round (no retry, no policy), the
/// round aborts, the suspects come again alone, and the one refused again is condemned: after
/// the next abort it goes to the policy without being handled, in a healthy transaction. The
/// metric counts each dead letter written, also in a transaction that aborted later; what a
/// `read_committed` reader sees is exact.
#[test]
fn exactly_once_an_output_too_large_for_its_sink_aborts_and_sends_its_source_to_the_policy() {
    logs();
    let Some(kafka) = Kafka::real("too-large-eos") else {
        return;
    };
    let (run, truth, url, huge, group) = too_large_run(&kafka, Guarantee::ExactlyOnce);

    assert_eq!(run.table, truth, "its neighbours counted once, it not");
    let settled = run.invalid.get("output_too_large").copied().unwrap_or(0);
    assert!(
        run.invalid.len() == 1 && (1..=run.aborted.max(1)).contains(&settled),
        "{:?} after {} aborts",
        run.invalid,
        run.aborted
    );
    assert!(
        (1..=4).contains(&run.aborted),
        "a transaction or two aborted, not a loop: {}",
        run.aborted
    );
    // Read committed: each other view's output exactly once, the dead letter once.
    let letters = dead_letters(&kafka, &group);
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_eq!(letters[0].payload.as_deref(), Some(&huge[..]));
    assert_eq!(
        kafka.records(&kafka.out).len() as i64,
        total(&kafka) - 1,
        "no output twice"
    );
    assert_every_input_emitted_but(&kafka, url.as_bytes());
}

#[test]
fn a_sink_that_does_not_exist_is_created_at_start() {
    logs();
    let Some(kafka) = Kafka::real("sink") else {
        return;
    };
    let n = 400;
    kafka.produce_page_views(n, 3);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("sink");
    let sink = unique("missing-sink");
    let mut cfg = kafka.config(&dir.path().join("store"), &group);
    cfg.agents.get_mut("page_views").unwrap().sinks = vec![sink.clone()];

    let run = run(&kafka, cfg);

    assert!(run.invalid.is_empty(), "{:?}", run.invalid);
    assert_eq!(run.commit_failures, 0);
    let ends = kafka.ends(&sink);
    assert_eq!(ends.len(), common::PARTITIONS as usize, "like the source");
    assert_eq!(
        ends.values().sum::<i64>(),
        n as i64,
        "every event emitted once"
    );
}

/// Emits each event's view to the sinks, then fails the first attempt at every 100th offset.
#[derive(Clone)]
struct EmitThenFail {
    topic: String,
    tried: Arc<Mutex<HashSet<(i32, i64)>>>,
}

impl Agent for EmitThenFail {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "emit_then_fail"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let view = event.value().clone();
        event.emit(Some(&view.url), &view).await?;
        let at = (event.partition(), event.offset());
        if at.1 % 100 == 0 && self.tried.lock().unwrap().insert(at) {
            return Err(AgentError::msg(format!("first attempt at {at:?}")));
        }
        Ok(())
    }
}

#[test]
fn a_failed_attempt_leaves_no_output_behind_under_either_guarantee() {
    logs();
    for guarantee in [Guarantee::AtLeastOnce, Guarantee::ExactlyOnce] {
        let Some(kafka) = Kafka::real("attempt") else {
            return;
        };
        let n = 2_000;
        kafka.produce_page_views(n, 4);
        let dir = tempfile::tempdir().unwrap();
        let group = unique("attempt");
        let mut cfg = kafka.config(&dir.path().join("store"), &group);
        cfg.processing.guarantee = guarantee;
        let page_views = cfg.agents.remove("page_views").unwrap();
        cfg.agents.insert("emit_then_fail".into(), page_views);
        let agent = EmitThenFail {
            topic: kafka.topic.clone(),
            tried: Arc::default(),
        };
        let mut node = App::new().agent(agent.clone()).spawn(cfg).unwrap();
        let info = node.wait_ready(WAIT).unwrap();
        wait_for("every offset committed", WAIT, || {
            kafka.committed(&group).values().sum::<i64>() == n as i64
        });
        let errors = info
            .metrics
            .agent_errors_total
            .with_label_values(&["emit_then_fail"])
            .get();
        node.stop().unwrap();

        let failed = agent.tried.lock().unwrap().len() as u64;
        assert!(
            failed >= 16,
            "{guarantee:?}: {failed} first attempts failed"
        );
        assert_eq!(errors, failed, "{guarantee:?}");
        // Read committed: what a downstream reader sees.
        let out = kafka.records(&kafka.out);
        assert_eq!(
            out.len(),
            n,
            "{guarantee:?}: one output per input, none twice"
        );
        assert_eq!(kafka.emitted_sources(), kafka.all_inputs(), "{guarantee:?}");
    }
}

/// A store ahead of the group's commit (a crash between the store write and the offset commit,
/// made here by committing older offsets while the node is down): the node starts from the
/// store, so nothing is counted twice, and commits the store's offset at once, even with no
/// new input (before, the group stayed behind until something new arrived). Real Kafka: the
/// mock cluster refuses a commit from outside the group.
#[test]
fn a_store_ahead_of_the_group_is_committed_even_when_idle() {
    logs();
    let Some(kafka) = Kafka::real("ahead") else {
        return;
    };
    let truth = kafka.produce_page_views(400, 5);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let group = unique("ahead");
    let cfg = kafka.config(&store, &group);
    let ends = kafka.ends(&kafka.topic);
    let start = |cfg: &Config| {
        let mut node = App::new()
            .agent(PageViews::on_topic(&kafka.topic))
            .spawn(cfg.clone())
            .unwrap();
        node.wait_ready(WAIT).unwrap();
        node
    };
    let node = start(&cfg);
    wait_for("every offset committed", WAIT, || {
        kafka.committed(&group) == ends
    });
    node.stop().unwrap();
    let behind: HashMap<i32, i64> = ends.iter().map(|(p, o)| (*p, o / 2)).collect();
    kafka.commit_offsets(&group, &behind);
    assert_eq!(kafka.committed(&group), behind);

    let node = start(&cfg);
    wait_for(
        "the store's offsets committed with no new input",
        WAIT,
        || kafka.committed(&group) == ends,
    );
    node.stop().unwrap();
    let table = Store::open_existing(&store)
        .unwrap()
        .table_contents(&page_counts())
        .unwrap();
    assert_eq!(table, truth, "nothing counted twice");
}
