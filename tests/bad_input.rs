//! The bad-input policies, end to end: malformed JSON, values of the wrong type, an agent that
//! always fails and one that always panics, under `dead-letter`, `skip` and `stop`. Each test
//! checks the table after a clean stop against the records themselves, so a good event lost or
//! counted twice fails it, and checks the dead letters byte for byte.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{http_get, logs, wait_for, Kafka};
use faust::config::Config;
use faust::demo::PageView;
use faust::{Agent, AgentError, App, DeadLetter, Event, OnError, Store, Table, TableSpec};
use rdkafka::message::{Headers, Message};

const WAIT: Duration = Duration::from_secs(60);

/// Counts page views per URL; fails for good on `/error` and panics on `/panic`.
struct Picky {
    topic: String,
    counts: Table<String, u64>,
}

fn counts() -> Table<String, u64> {
    Table::new("picky_counts").key_codec(faust::Codec::String)
}

impl Agent for Picky {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "picky"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        // Written before failing: the failure must roll it back.
        event
            .table(&self.counts)?
            .update(url.clone(), |n| n.unwrap_or(0) + 1)?;
        match url.as_str() {
            "/panic" => panic!("cannot handle {url}"),
            "/error" => Err(AgentError::msg(format!("refusing {url}"))),
            _ => Ok(()),
        }
    }
}

/// The bad records, keyed so that they spread over partitions: (key, value, reason).
const BAD: &[(&str, &[u8], &str)] = &[
    ("/bad/1", b"{\"url\": \"/page/1\", \"user\": ", "value"),
    ("/bad/2", b"not json at all", "value"),
    (
        "/bad/3",
        b"{\"url\": 3, \"user\": \"u\", \"ts\": 1}",
        "value",
    ),
    (
        "/error",
        b"{\"url\": \"/error\", \"user\": \"u\", \"ts\": 2}",
        "agent_error",
    ),
    (
        "/panic",
        b"{\"url\": \"/panic\", \"user\": \"u\", \"ts\": 3}",
        "panic",
    ),
];

/// 400 good page views, the bad records, 400 more good ones.
fn produce(kafka: &Kafka) {
    kafka.produce_page_views(400, 5);
    kafka.produce(BAD.iter().map(|(k, v, _)| (*k, *v)));
    kafka.produce_page_views(400, 6);
}

/// Per URL, the good records of the input topic for which `keep(partition, offset)` holds.
fn truth(kafka: &Kafka, keep: impl Fn(i32, i64) -> bool) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    kafka.read_to_end(&kafka.topic, |m| {
        let Ok(view) = serde_json::from_slice::<PageView>(m.payload().unwrap()) else {
            return;
        };
        if view.url.starts_with("/page/") && keep(m.partition(), m.offset()) {
            *counts.entry(view.url).or_insert(0) += 1;
        }
    });
    counts
}

fn config(kafka: &Kafka, store: &std::path::Path, app: &str, on_error: OnError) -> Config {
    kafka.prepare_changelog(app, "picky_counts");
    let mut cfg = kafka.config(store, app);
    cfg.agents.clear();
    let agent = cfg.agents.entry("picky".into()).or_default();
    agent.on_error = on_error;
    agent.retries = 2;
    cfg
}

fn app(kafka: &Kafka) -> App {
    App::new().agent(Picky {
        topic: kafka.topic.clone(),
        counts: counts(),
    })
}

fn stored(store: &std::path::Path) -> HashMap<String, u64> {
    Store::open_existing(store)
        .unwrap()
        .table_contents(&counts())
        .unwrap()
}

fn invalid(metrics: &faust::Metrics, reason: &str) -> u64 {
    metrics
        .invalid_records_total
        .with_label_values(&["picky", reason])
        .get()
}

const TOTAL: i64 = 805;

#[test]
fn dead_letter_sends_each_bad_record_unchanged_with_its_error_and_loses_no_good_one() {
    logs();
    let kafka = Kafka::new("dlq");
    produce(&kafka);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let group = common::unique("dlq");
    let cfg = config(&kafka, &store, &group, OnError::DeadLetter);

    let mut node = app(&kafka).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every offset committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == TOTAL
    });
    let m = &info.metrics;
    let (values, errors, panics) = (
        invalid(m, "value"),
        invalid(m, "agent_error"),
        invalid(m, "panic"),
    );
    let restarts = m.agent_restarts_total.with_label_values(&["picky"]).get();
    let agent_errors = m.agent_errors_total.with_label_values(&["picky"]).get();
    node.stop().unwrap();

    assert_eq!((values, errors, panics), (3, 1, 1));
    assert_eq!(restarts, 3, "the panic: first try and 2 retries");
    assert_eq!(agent_errors, 3, "the error: first try and 2 retries");
    assert_eq!(stored(&store), truth(&kafka, |_, _| true));

    let mut letters = Vec::new();
    let sources: HashMap<String, (i32, i64)> = {
        let mut s = HashMap::new();
        kafka.read_to_end(&kafka.topic, |m| {
            let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
            s.insert(key, (m.partition(), m.offset()));
        });
        s
    };
    let dlq = faust_actors::names::dead_letter_topic(&group, "picky");
    kafka.read_to_end(&dlq, |m| {
        let headers: Vec<faust::Header> = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| faust::Header {
                        key: h.key.into(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let letter = DeadLetter::parse(&headers).expect("dead-letter headers");
        letters.push((
            m.key().unwrap().to_vec(),
            m.payload().unwrap().to_vec(),
            m.partition(),
            letter,
        ));
    });
    assert_eq!(letters.len(), BAD.len(), "one dead letter per bad record");
    for (key, value, reason) in BAD {
        let (partition, offset) = sources[*key];
        let (_, payload, dlq_partition, letter) = letters
            .iter()
            .find(|(k, ..)| k == key.as_bytes())
            .unwrap_or_else(|| panic!("no dead letter for {key}"));
        assert_eq!(payload, value, "{key}: the raw bytes, unchanged");
        assert_eq!(*dlq_partition, partition, "{key}: same partition number");
        assert_eq!(letter.agent, "picky");
        assert_eq!(letter.reason, *reason, "{key}");
        assert_eq!((letter.partition, letter.offset), (partition, offset));
        assert_eq!(letter.topic, kafka.topic);
        assert!(!letter.error.is_empty());
    }
    let panic = letters.iter().find(|l| l.0 == b"/panic").unwrap();
    assert_eq!(panic.3.error, "cannot handle /panic");
    let bad = letters.iter().find(|l| l.0 == b"/bad/3").unwrap();
    assert!(bad.3.error.contains("invalid type"), "{}", bad.3.error);
}

#[test]
fn skip_counts_and_moves_on_without_dead_letters() {
    logs();
    let kafka = Kafka::new("skip");
    produce(&kafka);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let group = common::unique("skip");
    let cfg = config(&kafka, &store, &group, OnError::Skip);

    let mut node = app(&kafka).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every offset committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == TOTAL
    });
    let m = &info.metrics;
    let counted = (
        invalid(m, "value"),
        invalid(m, "agent_error"),
        invalid(m, "panic"),
    );
    node.stop().unwrap();

    assert_eq!(counted, (3, 1, 1));
    assert_eq!(stored(&store), truth(&kafka, |_, _| true));
    if !kafka.is_real() {
        // The mock cluster has the topic (made by the test); nothing went to it.
        let dlq = faust_actors::names::dead_letter_topic(&group, "picky");
        assert_eq!(kafka.ends(&dlq).values().sum::<i64>(), 0);
    }
}

#[test]
fn stop_halts_the_partition_at_the_bad_record_and_a_restart_resumes_there() {
    logs();
    let kafka = Kafka::new("stop");
    produce(&kafka);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let group = common::unique("stop");
    // The first bad record of each partition that has one: where that partition halts.
    let mut first_bad: HashMap<i32, i64> = HashMap::new();
    kafka.read_to_end(&kafka.topic, |m| {
        if m.key().unwrap().starts_with(b"/page/") {
            return;
        }
        first_bad.entry(m.partition()).or_insert(m.offset());
    });
    let ends = kafka.ends(&kafka.topic);

    let cfg = config(&kafka, &store, &group, OnError::Stop);
    let mut node = app(&kafka).spawn(cfg.clone()).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    let expected: HashMap<i32, i64> = (0..common::PARTITIONS)
        .map(|p| (p, first_bad.get(&p).copied().unwrap_or(ends[&p])))
        .collect();
    wait_for(
        "each partition committed up to its first bad record",
        WAIT,
        || kafka.committed(&group) == expected,
    );
    let halted: i64 = first_bad
        .keys()
        .map(|p| {
            info.metrics
                .partition_halted
                .with_label_values(&[&kafka.topic, &p.to_string()])
                .get()
        })
        .sum();
    let health = http_get(info.web_addr.unwrap(), "/healthz").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        kafka.committed(&group),
        expected,
        "nothing committed past a halt"
    );
    node.stop().unwrap();

    assert_eq!(halted, first_bad.len() as i64);
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains("halted_partitions"), "{health}");
    let before_bad = |p: i32, o: i64| first_bad.get(&p).is_none_or(|&bad| o < bad);
    assert_eq!(stored(&store), truth(&kafka, before_bad));

    // Switching the policy to skip, the same store and group resume at the bad records.
    let mut cfg = cfg;
    cfg.agents.get_mut("picky").unwrap().on_error = OnError::Skip;
    let mut node = app(&kafka).spawn(cfg).unwrap();
    node.wait_ready(WAIT).unwrap();
    wait_for("every offset committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == TOTAL
    });
    node.stop().unwrap();
    assert_eq!(stored(&store), truth(&kafka, |_, _| true));
}
