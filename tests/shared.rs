//! State shared across agents: a table two agents of one topic write together, and a global
//! table one agent fills that another agent (of another topic) and a timer read.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::agents::GlobalCounter;
use common::{logs, unique, wait_for, Kafka};
use faust::demo::PageView;
use faust::{Agent, AgentError, App, Event, GlobalTable, Store, Table, TableSpec, Timer};
use rdkafka::Message;

const WAIT: Duration = Duration::from_secs(120);

/// Counts views per URL into `counts`; two of them (named apart) share the table.
struct UrlCounter {
    name: &'static str,
    topic: String,
    counts: Table<String, u64>,
}

impl Agent for UrlCounter {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        self.name
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        let mut counts = event.table(&self.counts)?;
        let n = counts.get(&url)?.unwrap_or(0);
        counts.insert(url, n + 1)?;
        Ok(())
    }
}

#[test]
fn two_agents_of_one_topic_write_one_shared_table() {
    logs();
    let kafka = Kafka::new("shared");
    let truth = kafka.produce_page_views(2_000, 7);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("shared");
    kafka.prepare_changelog(&group, "shared_counts");
    let counts = Table::<String, u64>::new("shared_counts");
    let agent = |name| UrlCounter {
        name,
        topic: kafka.topic.clone(),
        counts: counts.clone(),
    };
    let mut config = kafka.config(dir.path(), &group);
    config.agents.clear();
    let mut node = App::new()
        .agent(agent("views_by_url"))
        .agent(agent("views_again"))
        .spawn(config)
        .unwrap();
    let metrics = node.wait_ready(WAIT).unwrap().metrics;
    wait_for("both agents to see every event", WAIT, || {
        metrics.agent_events("views_by_url") == 2_000
            && metrics.agent_events("views_again") == 2_000
    });
    wait_for("every event committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == 2_000
    });
    node.stop().unwrap();
    let stored = Store::open_existing(dir.path())
        .unwrap()
        .table_contents(&counts)
        .unwrap();
    let doubled: HashMap<String, u64> = truth.iter().map(|(k, v)| (k.clone(), 2 * v)).collect();
    assert_eq!(
        stored, doubled,
        "each agent counted every view into the one table"
    );
    let changelog = faust_actors::names::changelog_topic(&group, "shared_counts");
    let mut latest: HashMap<String, u64> = HashMap::new();
    kafka.read_to_end(&changelog, |m| {
        let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
        let value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        latest.insert(key.trim_matches('"').to_owned(), value);
    });
    assert_eq!(latest, doubled, "one changelog holds both agents' writes");
}

/// On another topic: looks each URL up in the global table it does not declare, and tries to
/// write it (which must be refused).
struct Lookup {
    topic: String,
    views: GlobalTable<String, u64>,
    seen: Arc<Mutex<HashMap<String, Option<u64>>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl Agent for Lookup {
    type Key = String;
    type Value = serde_json::Value;

    fn name(&self) -> &str {
        "lookup"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    async fn handle(&self, event: &mut Event<'_, String, Self::Value>) -> Result<(), AgentError> {
        let url = event.key().cloned().unwrap_or_default();
        let mut views = event.global(&self.views)?;
        let found = views.get(&url)?;
        if let Err(e) = views.insert(url.clone(), 0) {
            self.refused.lock().unwrap().push(e.to_string());
        }
        self.seen.lock().unwrap().insert(url, found);
        Ok(())
    }
}

#[test]
fn a_global_table_one_agent_fills_is_read_by_another_agent_and_by_a_timer() {
    logs();
    let kafka = Kafka::new("globals");
    let truth = kafka.produce_page_views(1_500, 13);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("globals");
    kafka.prepare_changelog(&group, "url_views");
    let views = GlobalTable::<String, u64>::new("url_views");
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let timer_saw = Arc::new(Mutex::new(HashMap::new()));
    let timer = {
        let (views, timer_saw) = (views.clone(), timer_saw.clone());
        Timer::every("read_views", Duration::from_millis(100), move |ctx| {
            let contents = ctx.global_contents(&views);
            let timer_saw = timer_saw.clone();
            async move {
                *timer_saw.lock().unwrap() = contents?;
                Ok(())
            }
        })
    };
    let mut config = kafka.config(dir.path(), &group);
    config.agents.clear();
    let mut node = App::new()
        .agent(GlobalCounter {
            topic: kafka.topic.clone(),
            views: views.clone(),
        })
        .agent(Lookup {
            topic: kafka.out.clone(),
            views: views.clone(),
            seen: seen.clone(),
            refused: refused.clone(),
        })
        .timer(timer)
        .spawn(config)
        .unwrap();
    let metrics = node.wait_ready(WAIT).unwrap().metrics;
    wait_for("the page views committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == 1_500
    });
    wait_for("the timer to read the whole table", WAIT, || {
        *timer_saw.lock().unwrap() == truth
    });
    // The table is complete in this node's copy: every lookup must find the true count.
    let mut urls: Vec<&String> = truth.keys().collect();
    urls.sort();
    let missing = "no-such-url".to_owned();
    urls.push(&missing);
    let lookups: Vec<(&str, &[u8], Option<i64>)> = urls
        .iter()
        .map(|u| (u.as_str(), &b"{}"[..], None))
        .collect();
    kafka.produce_to(&kafka.out, lookups.into_iter());
    wait_for("every lookup handled", WAIT, || {
        metrics.agent_events("lookup") == urls.len() as u64
    });
    node.stop().unwrap();
    let seen = seen.lock().unwrap().clone();
    let mut want: HashMap<String, Option<u64>> =
        truth.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
    want.insert(missing.clone(), None);
    assert_eq!(seen, want, "the other topic's agent read the node's copy");
    let refused = refused.lock().unwrap().clone();
    assert_eq!(
        refused.len(),
        urls.len(),
        "every write by the reader refused"
    );
    assert!(
        refused[0].contains("global table `url_views` is written by the agents that declare it"),
        "{}",
        refused[0]
    );
}
