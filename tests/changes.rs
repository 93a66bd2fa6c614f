//! A table's coalesced change stream (`[tables.<name>] sinks`): at each commit, every key
//! changed since the last one goes to the sinks once, with its latest value, exactly the
//! records the table's changelog gets (Kafka Streams' `KTable.toStream().to()` with its record
//! cache). The demo agent counts page views with no per-event output; its table streams.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{committed, logs, unique, wait_for, Kafka};
use faust::config::{Guarantee, TableConfig};
use faust::demo::PageViews;
use faust::App;
use faust_actors::names::changelog_topic;

const WAIT: Duration = Duration::from_secs(120);

fn streams_each_changed_key_once_per_commit(kafka: Kafka, guarantee: Guarantee) {
    let group = unique("changes");
    let dir = tempfile::tempdir().unwrap();
    let mut config = kafka.config(dir.path(), &group);
    config.processing.guarantee = guarantee;
    // No per-event output: the table's change stream is the output.
    config.agents.get_mut("page_views").unwrap().sinks.clear();
    config.tables.insert(
        "page_counts".into(),
        TableConfig {
            sinks: vec![kafka.out.clone()],
            ..TableConfig::default()
        },
    );
    let mut truth = kafka.produce_page_views(1_500, 5);
    let agent = PageViews::on_topic(&kafka.topic);
    let mut node = App::new().agent(agent).spawn(config).unwrap();
    node.wait_ready(WAIT).unwrap();
    let total = || -> i64 {
        committed(&kafka.bootstrap(), &group, &kafka.topic)
            .values()
            .sum()
    };
    wait_for("the first page views committed", WAIT, || total() == 1_500);
    for (url, n) in kafka.produce_page_views(1_500, 6) {
        *truth.entry(url).or_insert(0) += n;
    }
    wait_for("every page view committed", WAIT, || total() == 3_000);
    node.stop().unwrap();

    let mut latest: HashMap<String, u64> = HashMap::new();
    let out = kafka.records(&kafka.out);
    for r in &out {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let count: u64 = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
        let before = latest.insert(key.clone(), count).unwrap_or(0);
        assert!(
            count > before,
            "{key}: {count} after {before}: counts only grow"
        );
    }
    assert_eq!(latest, truth, "each key's last record is its count");
    let mut changelog = 0;
    kafka.read_to_end(&changelog_topic(&group, "page_counts"), |_| changelog += 1);
    assert_eq!(
        out.len(),
        changelog,
        "one record per changed key and commit, as the changelog has"
    );
    assert!(
        out.len() < 3_000 && out.len() > latest.len(),
        "coalesced over several commits: {} records for 3,000 events of {} keys",
        out.len(),
        latest.len()
    );
    eprintln!("{guarantee:?}: 3,000 events, {} change records", out.len());
}

#[test]
fn a_table_streams_each_changed_key_once_per_commit() {
    logs();
    streams_each_changed_key_once_per_commit(Kafka::new("changes"), Guarantee::AtLeastOnce);
}

#[test]
fn a_table_streams_its_changes_exactly_once() {
    logs();
    let Some(kafka) = Kafka::real("changes-eos") else {
        return;
    };
    streams_each_changed_key_once_per_commit(kafka, Guarantee::ExactlyOnce);
}
