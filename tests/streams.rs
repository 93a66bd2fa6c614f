//! The streams toolkit end to end: `group_by` re-keying through the repartition topic,
//! batching, and timers.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{logs, wait_for, Kafka};
use faust::demo::PageView;
use faust::generator::PageViewSource;
use faust::{Agent, AgentError, App, Batch, BatchAgent, Codec, Event, Store, Table, TableSpec};
use faust_actors::names::changelog_topic;
use faust_actors::names::repartition_topic;
use rdkafka::message::Message;

const WAIT: Duration = Duration::from_secs(60);

/// Counts page views per user; run through `group_by(user)`, so its table is keyed by user.
struct ByUser {
    counts: Table<String, u64>,
}

fn user_counts() -> Table<String, u64> {
    Table::new("user_counts").key_codec(Codec::String)
}

impl Agent for ByUser {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "by_user"
    }

    fn topics(&self) -> Vec<String> {
        vec!["page_views".into()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let user = event
            .key()
            .cloned()
            .ok_or_else(|| AgentError::msg("no key"))?;
        if user != event.value().user {
            return Err(AgentError::msg(format!(
                "keyed {user}, value of {}",
                event.value().user
            )));
        }
        event
            .table(&self.counts)?
            .update(user, |n| n.unwrap_or(0) + 1)?;
        Ok(())
    }
}

/// (key, partition) of every record of `topic`: each key must sit in exactly one partition.
fn partition_of_keys(kafka: &Kafka, topic: &str) -> (HashMap<String, i32>, usize) {
    let mut where_ = HashMap::new();
    let mut records = 0;
    kafka.read_to_end(topic, |m| {
        records += 1;
        let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
        let p = *where_.entry(key.clone()).or_insert(m.partition());
        assert_eq!(
            p,
            m.partition(),
            "{topic}: key {key} in partitions {p} and {}",
            m.partition()
        );
    });
    (where_, records)
}

#[test]
fn group_by_rekeys_through_the_repartition_topic_and_the_table_is_keyed_by_the_new_key() {
    logs();
    let kafka = Kafka::new("group-by");
    let n = 3_000;
    let mut source = PageViewSource::new(11, 50, 40);
    let views: Vec<PageView> = (0..n).map(|i| source.next_view(i + 1)).collect();
    let payloads: Vec<(String, Vec<u8>)> = views
        .iter()
        .map(|v| (v.url.clone(), serde_json::to_vec(v).unwrap()))
        .collect();
    kafka.produce(payloads.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    let mut truth: HashMap<String, u64> = HashMap::new();
    for v in &views {
        *truth.entry(v.user.clone()).or_insert(0) += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let app = common::unique("group-by");
    let repartition = repartition_topic(&app, "by_user");
    if !kafka.is_real() {
        kafka.create_topic(&repartition, common::PARTITIONS);
    }
    kafka.prepare_changelog(&app, "user_counts");
    let mut cfg = kafka.config(&store, &app);
    cfg.agents.clear();
    cfg.agents.entry("by_user".into()).or_default().topics = Some(vec![kafka.topic.clone()]);

    let agent = ByUser {
        counts: user_counts(),
    };
    let mut node = App::new()
        .group_by(agent, |v: &PageView| v.user.clone())
        .spawn(cfg)
        .unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every re-keyed event", WAIT, || {
        info.metrics.agent_events("by_user") >= n as u64
    });
    let rekeyed = info.metrics.agent_events("by_user-group_by");
    let report = node.stop().unwrap();

    assert_eq!(rekeyed, n as u64);
    assert_eq!(report.events, 2 * n as u64, "each event once per stage");
    let stored = Store::open_existing(&store)
        .unwrap()
        .table_contents(&user_counts())
        .unwrap();
    assert_eq!(stored, truth, "counted per user, exactly");
    let (users_at, records) = partition_of_keys(&kafka, &repartition);
    assert_eq!(records, n as usize, "one repartitioned record per event");
    assert_eq!(users_at.len(), truth.len());
    let (changelog_at, _) = partition_of_keys(&kafka, &changelog_topic(&app, "user_counts"));
    assert_eq!(
        changelog_at, users_at,
        "each user's table entry lives in the partition its events were re-keyed to"
    );
    for (user, p) in &users_at {
        assert_eq!(
            *p,
            faust::Partitioner::Murmur2.partition(user.as_bytes(), common::PARTITIONS),
            "{user} re-keyed to the partition Java's murmur2 gives (Kafka Streams, Faust agree)"
        );
    }
    assert!(
        users_at
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "users spread over partitions"
    );
}

/// Counts page views in batches of at most 64, recording each batch's size; the first batch
/// that reaches offset 300 of a partition panics once (the whole batch must be retried, its
/// writes undone, nothing counted twice).
struct Batcher {
    topic: String,
    counts: Table<String, u64>,
    sizes: Arc<Mutex<Vec<usize>>>,
    panicked: Arc<Mutex<HashSet<i32>>>,
}

impl BatchAgent for Batcher {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "batcher"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    fn take(&self) -> (usize, Duration) {
        (64, Duration::from_millis(200))
    }

    async fn handle_batch(
        &self,
        batch: &mut Batch<'_, String, PageView>,
    ) -> Result<(), AgentError> {
        let urls: Vec<String> = batch.events().iter().map(|e| e.value.url.clone()).collect();
        let last = batch.events().last().unwrap().record;
        let (partition, crosses) = (
            last.partition,
            batch.events().iter().any(|e| e.record.offset == 300),
        );
        let mut table = batch.table(&self.counts)?;
        for url in urls.iter() {
            table.update(url.clone(), |n| n.unwrap_or(0) + 1)?;
        }
        if crosses && self.panicked.lock().unwrap().insert(partition) {
            panic!("injected panic in the batch holding offset 300 of partition {partition}");
        }
        self.sizes.lock().unwrap().push(urls.len());
        Ok(())
    }
}

#[test]
fn batches_hold_at_most_n_events_and_a_failed_batch_is_retried_whole() {
    logs();
    let kafka = Kafka::new("batch");
    let n = 2_000;
    let truth = kafka.produce_page_views(n, 21);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let app = common::unique("batch");
    kafka.prepare_changelog(&app, "batch_counts");
    let mut cfg = kafka.config(&store, &app);
    cfg.agents.clear();
    let counts = Table::<String, u64>::new("batch_counts").key_codec(Codec::String);
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let panicked = Arc::new(Mutex::new(HashSet::new()));
    let agent = Batcher {
        topic: kafka.topic.clone(),
        counts: counts.clone(),
        sizes: sizes.clone(),
        panicked: panicked.clone(),
    };
    let mut node = App::new().batch_agent(agent).spawn(cfg).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every event", WAIT, || {
        info.metrics.agent_events("batcher") >= n as u64
    });
    let restarts = info
        .metrics
        .agent_restarts_total
        .with_label_values(&["batcher"])
        .get();
    node.stop().unwrap();

    let sizes = sizes.lock().unwrap().clone();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        n,
        "each event in one successful batch"
    );
    assert!(sizes.iter().all(|&s| (1..=64).contains(&s)), "{sizes:?}");
    assert!(
        sizes.iter().filter(|&&s| s == 64).count() >= 20,
        "mostly full batches: {sizes:?}"
    );
    let stored = Store::open_existing(&store)
        .unwrap()
        .table_contents(&counts)
        .unwrap();
    assert_eq!(stored, truth, "nothing lost or counted twice");
    assert_eq!(restarts, panicked.lock().unwrap().len() as u64);
    // Where the keys land is the partitioner's business: count the partitions that reach
    // offset 300.
    let crossing = kafka
        .ends(&kafka.topic)
        .values()
        .filter(|&&end| end > 300)
        .count();
    assert!(
        crossing >= 2,
        "the data reaches offset 300 in several partitions"
    );
    assert_eq!(
        restarts, crossing as u64,
        "one injected panic per partition that reaches offset 300"
    );
}

#[test]
fn a_leader_only_timer_runs_on_the_one_node_and_sends() {
    logs();
    let kafka = Kafka::new("timer");
    let dir = tempfile::tempdir().unwrap();
    let app = common::unique("timer");
    let cfg = kafka.config(&dir.path().join("s"), &app);
    let out = kafka.out.clone();
    let timer = faust::Timer::every("beat", Duration::from_millis(100), move |ctx| {
        let out = out.clone();
        async move {
            ctx.send(&out, Some("beat"), &serde_json::json!({"beat": true}))
                .await
        }
    })
    .on_leader();
    let mut node = App::new()
        .agent(faust::demo::PageViews::on_topic(&kafka.topic))
        .timer(timer)
        .spawn(cfg)
        .unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    let runs = info.metrics.timer_runs_total.clone();
    wait_for("five timer runs", WAIT, || {
        runs.with_label_values(&["beat", "ok"]).get() >= 5
    });
    node.stop().unwrap();
    let ok = runs.with_label_values(&["beat", "ok"]).get();
    let mut beats = 0;
    kafka.read_to_end(&kafka.out, |m| {
        assert_eq!(m.key(), Some(&b"beat"[..]));
        beats += 1;
    });
    // A run cut short by the stop may have sent without being counted.
    assert!(
        beats == ok || beats == ok + 1,
        "{beats} records for {ok} runs"
    );
}
